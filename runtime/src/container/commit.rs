//! `commit`: a container's changes as a new image.

use super::{now, Container, Containers};
use crate::error::Result;
use crate::image::ImageConfig;

impl Containers<'_> {
    /// Turn the container's changes into a new image (not yet tagged): the container's image
    /// config with `changes` applied, plus one layer made from the upper directory.
    pub fn commit(
        &self,
        c: &Container,
        message: Option<&str>,
        author: Option<&str>,
        changes: impl FnOnce(&mut ImageConfig) -> Result<()>,
    ) -> Result<crate::image::Descriptor> {
        let _writer = self.store.writer_lock()?;
        let base_manifest = self.store.manifest(&c.manifest)?;
        let mut config = self.store.config(&base_manifest.config)?;
        let layer = self.store.layer_from_dir(
            &self.upper(c)?,
            crate::compression::Compression::Gzip,
            &crate::layer::WriteOptions::from_env(),
        )?;
        self.store
            .unpack_layer(&layer.descriptor, &layer.diff_id, None)?;
        changes(&mut config)?;
        let created = now();
        let command = self
            .spec(c)
            .ok()
            .and_then(|s| s.process().as_ref().and_then(|p| p.args().clone()))
            .unwrap_or_default()
            .join(" ");
        if let Some(a) = author {
            config.author = Some(a.to_string());
        }
        // Images without history get one entry per layer, so history and layers stay aligned.
        let described = config.history.iter().filter(|h| !h.empty_layer).count();
        for _ in described..config.rootfs.diff_ids.len() {
            config.history.push(crate::image::History {
                created: config.created.clone(),
                ..Default::default()
            });
        }
        config.created = Some(created.clone());
        config.rootfs.diff_ids.push(layer.diff_id.clone());
        config.history.push(crate::image::History {
            created: Some(created),
            created_by: Some(command),
            author: author.map(String::from),
            comment: message.map(String::from),
            empty_layer: false,
        });
        let mut layers = base_manifest.layers.clone();
        layers.push(layer.descriptor);
        self.store.put_image(&config, layers)
    }
}
