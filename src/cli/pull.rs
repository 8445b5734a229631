use anyhow::Result;
use strata_runtime::image::Platform;
use strata_runtime::registry::{RegistryOptions, Session};
use strata_runtime::{Reference, Store};

use crate::progress::Bars;

// The registry flags shared by pull, push, login, run and build. (A plain comment: a doc
// comment would become the about text of every command that flattens it.)
#[derive(clap::Args, Clone)]
pub struct RegistryFlags {
    /// Require HTTPS and verify certificates (false also allows plain HTTP)
    #[arg(long = "tls-verify", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// A directory of CA certificates (*.crt) to trust for the registry
    #[arg(long = "cert-dir", value_name = "DIR")]
    pub cert_dir: Option<std::path::PathBuf>,
}

impl RegistryFlags {
    pub fn options(&self, platform: Option<&str>) -> Result<RegistryOptions> {
        Ok(RegistryOptions {
            tls_verify: self.tls_verify,
            cert_dir: self.cert_dir.clone(),
            platform: platform.map(Platform::parse).transpose()?,
        })
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Set platform if server is multi-platform capable (e.g. linux/amd64, wasi/wasm)
    #[arg(long)]
    platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryFlags,
    /// NAME[:TAG|@DIGEST]
    reference: String,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let reference = Reference::parse(&self.reference)?;
        let opts = self.registry.options(self.platform.as_deref())?;
        let image = pull(store, &reference, &opts, self.quiet)?;
        if self.quiet {
            println!("{}", reference.familiar());
        } else {
            println!("Digest: {}", image.digest());
            println!(
                "Status: Downloaded newer image for {}",
                reference.familiar()
            );
            println!("{}", reference);
        }
        Ok(())
    }
}

/// Pull with progress bars (when on a terminal).
pub fn pull(
    store: &Store,
    reference: &Reference,
    opts: &RegistryOptions,
    quiet: bool,
) -> Result<strata_runtime::store::Image> {
    let session = Session::open(reference.domain(), opts)?;
    let bars = Bars::new(quiet);
    let progress = bars
        .as_ref()
        .map(|b| b as &dyn strata_runtime::progress::Progress);
    Ok(session.pull(store, reference, opts, progress)?)
}
