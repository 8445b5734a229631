use std::fs::File;
use std::io::Read;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use strata_runtime::compression::Compression;
use strata_runtime::image::{History, ImageConfig, Platform, RootFs};
use strata_runtime::{Reference, Store};

use crate::progress::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    message: Option<String>,
    /// Set platform if server is multi-platform capable (e.g. linux/amd64, wasi/wasm)
    #[arg(long)]
    platform: Option<String>,
    /// Compression of the stored layer: gzip, zstd or none
    #[arg(long = "compression-format", default_value = "gzip")]
    compression: String,
    /// Rootfs tarball (plain, gzip or zstd), or - for STDIN
    file: String,
    /// Name the image: REPOSITORY[:TAG]
    reference: Option<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let compression = Compression::parse(&self.compression)?;
        let platform = match &self.platform {
            Some(p) => Platform::parse(p)?,
            None => Platform::host(),
        };
        let reference = self
            .reference
            .as_deref()
            .map(Reference::parse)
            .transpose()?;
        if reference.as_ref().is_some_and(|r| r.digest().is_some()) {
            bail!("refusing to create a tag with a digest reference");
        }
        let mut config = ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![],
            },
            ..Default::default()
        };
        strata_builder::engine::config::apply_changes(&mut config, &self.changes)?;
        if self.file.contains("://") {
            bail!("importing from a URL is not supported; download it and import the file");
        }
        let (input, size): (Box<dyn Read>, Option<u64>) = if self.file == "-" {
            (Box::new(std::io::stdin().lock()), None)
        } else {
            let f = File::open(&self.file).with_context(|| format!("open {}", self.file))?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f), size)
        };

        let _writer = store.writer_lock()?;
        let bars = Bars::new(false);
        if let Some(b) = &bars {
            strata_runtime::progress::Progress::start(b, "Importing", size);
        }
        let progress = bars
            .as_ref()
            .map(|b| b as &dyn strata_runtime::progress::Progress);
        let layer = store
            .import_layer(input, compression, progress)
            .with_context(|| format!("import {}", self.file))?;
        if let Some(p) = progress {
            p.finish();
        }

        // SOURCE_DATE_EPOCH, as builds and layer tars honour it, makes the id reproducible.
        let epoch = strata_runtime::layer::WriteOptions::from_env()
            .source_date_epoch
            .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0))
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
        let now = epoch.unwrap_or_else(|| Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true));
        let comment = self
            .message
            .clone()
            .unwrap_or_else(|| "Imported from -".into());
        config.created = Some(now.clone());
        config.rootfs.diff_ids.push(layer.diff_id.clone());
        config.history.push(History {
            created: Some(now),
            comment: Some(comment),
            ..Default::default()
        });
        if let Some(m) = &self.message {
            config
                .extra
                .insert("comment".into(), serde_json::Value::String(m.clone()));
        }
        let manifest = store.put_image(&config, vec![layer.descriptor])?;
        store.add_image(reference.as_ref(), &manifest)?;
        println!("{}", store.manifest(&manifest)?.config.digest);
        Ok(())
    }
}
