//! Progress bars on stderr when it is a terminal; nothing otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use strata_runtime::progress::Progress;

pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    /// Bars for this process, or `None` when stderr is not a terminal or `quiet`.
    pub fn new(quiet: bool) -> Option<Bars> {
        (!quiet && std::io::stderr().is_terminal()).then(|| Bars {
            bar: Mutex::new(None),
        })
    }
}

impl Progress for Bars {
    fn start(&self, what: &str, total: Option<u64>) {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{msg:30} {spinner} {bytes} {bytes_per_sec}")
                    .expect("template"),
            ),
        };
        bar.set_message(what.to_string());
        if let Some(old) = self.bar.lock().expect("lock").replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.bar.lock().expect("lock").as_ref() {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("lock").take() {
            bar.finish_and_clear();
        }
    }
}
