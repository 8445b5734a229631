use anyhow::Result;
use strata_runtime::image::Platform;
use strata_runtime::registry::{Event, RegistryOptions, Session};
use strata_runtime::{Reference, Store};

use crate::progress::{Lines, Report, Stream};

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
        // As docker: `-q` leaves only the last line, the reference pulled.
        let lines = (!self.quiet).then(|| Lines::new(Stream::Stdout));
        if let Some(lines) = &lines {
            if names_no_tag(&self.reference) {
                lines.line("Using default tag: latest");
            }
        }
        pull(
            store,
            &reference,
            &opts,
            lines.as_ref().map(|l| l as &dyn Report),
        )?;
        println!("{reference}");
        Ok(())
    }
}

/// Whether the user's reference names neither a tag nor a digest (`busybox`, `host:5000/a`).
pub(super) fn names_no_tag(input: &str) -> bool {
    let last = input.rsplit('/').next().unwrap_or(input);
    !input.contains('@') && !last.contains(':')
}

/// Pull, printing on `lines` (none: silently) what docker's daemon reports: `TAG: Pulling
/// from REPO`, each layer's status, `Digest: …`, `Status: …`.
pub fn pull(
    store: &Store,
    reference: &Reference,
    opts: &RegistryOptions,
    lines: Option<&dyn Report>,
) -> Result<strata_runtime::store::Image> {
    let session = Session::open(reference.domain(), opts)?;
    let report = |event: Event| {
        let Some(lines) = lines else { return };
        match event {
            // By tag or digest, then the repository's path: `latest: Pulling from library/alpine`.
            Event::Resolved(_) => lines.line(&format!(
                "{}: Pulling from {}",
                reference.manifest_name(),
                reference.path()
            )),
            event => lines.event(&event),
        }
    };
    let pulled = session.pull(store, reference, opts, &report)?;
    if let Some(lines) = lines {
        lines.line(&format!("Digest: {}", pulled.digest));
        let status = if pulled.updated {
            "Downloaded newer image for"
        } else {
            "Image is up to date for"
        };
        lines.line(&format!("Status: {status} {}", reference.familiar()));
    }
    Ok(pulled.image)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_no_tag() {
        for (input, none) in [
            ("busybox", true),
            ("localhost:5000/a/b", true),
            ("busybox:1", false),
            ("localhost:5000/a:1", false),
            (
                "a@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                false,
            ),
        ] {
            assert_eq!(super::names_no_tag(input), none, "{input}");
        }
    }
}
