//! How long operations report progress. The CLI draws bars; libraries and tests pass `None`.

pub trait Progress: Sync {
    /// A unit of work of `total` bytes (if known) starts, named `what`.
    fn start(&self, what: &str, total: Option<u64>);
    /// `n` more bytes are done.
    fn advance(&self, n: u64);
    /// The unit of work ended.
    fn finish(&self);
}

/// Reports bytes read through it to a `Progress`.
pub struct ProgressReader<'a, R> {
    pub inner: R,
    pub progress: Option<&'a dyn Progress>,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = self.progress {
            p.advance(n as u64);
        }
        Ok(n)
    }
}
