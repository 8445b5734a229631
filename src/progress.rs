//! Progress bars on stderr when it is a terminal, nothing otherwise; and docker's pull and
//! push lines (`Lines`).

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata_runtime::progress::Progress;
use strata_runtime::registry::{Event, Status};
use strata_runtime::Digest;

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

/// Where docker prints a pull's or push's lines: stdout for `pull` and `push`, stderr for
/// `run`'s implicit pull (stdout is the container's).
#[derive(Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where a pull's or push's messages (`Digest: …`) and layer events go: the terminal
/// ([`Lines`]) or the Engine API's JSON progress stream.
pub trait Report: Sync {
    fn line(&self, text: &str);
    /// A layer's event. `Resolved` is the caller's to word (it knows the reference).
    fn event(&self, event: &Event);
}

impl Report for Lines {
    fn line(&self, text: &str) {
        Lines::line(self, text)
    }

    fn event(&self, event: &Event) {
        Lines::event(self, event)
    }
}

/// Docker's pull and push output: message lines, and a line per layer status change
/// (`59bf1c3509f3: Pull complete`). On a terminal each layer keeps one line, redrawn in
/// place with a bar while its bytes move, as docker's does.
pub struct Lines {
    to: Stream,
    live: Option<Live>,
}

struct Live {
    multi: MultiProgress,
    /// One bar per layer, in the order the layers were first reported.
    bars: Mutex<Vec<(Digest, ProgressBar)>>,
}

impl Lines {
    pub fn new(to: Stream) -> Lines {
        let (tty, target) = match to {
            Stream::Stdout => (
                std::io::stdout().is_terminal(),
                ProgressDrawTarget::stdout(),
            ),
            Stream::Stderr => (
                std::io::stderr().is_terminal(),
                ProgressDrawTarget::stderr(),
            ),
        };
        Lines {
            to,
            live: tty.then(|| Live {
                multi: MultiProgress::with_draw_target(target),
                bars: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A message line (`Digest: …`), below every layer's line.
    pub fn line(&self, text: &str) {
        let mut text = text.to_string();
        if let Some(live) = &self.live {
            let mut bars = live.bars.lock().expect("lock");
            if !bars.is_empty() {
                // The layers' lines stay as drawn last and are never redrawn, so what
                // follows goes under them; the cursor is still on the last one.
                for (_, bar) in bars.drain(..) {
                    if !bar.is_finished() {
                        bar.abandon();
                    }
                }
                live.multi.set_draw_target(ProgressDrawTarget::hidden());
                text.insert(0, '\n');
            }
        }
        match self.to {
            Stream::Stdout => println!("{text}"),
            Stream::Stderr => eprintln!("{text}"),
        }
    }

    /// A layer's event. `Resolved` is the caller's to word (it knows the reference).
    pub fn event(&self, event: &Event) {
        let Some(live) = &self.live else {
            if let Event::Layer { id, status } = event {
                self.line(&format!("{}: {status}", id.short()));
            }
            return;
        };
        match event {
            Event::Resolved(_) => {}
            Event::Layer { id, status } => {
                let bar = live.bar(id);
                bar.set_message(status.to_string());
                bar.set_style(plain());
                if matches!(
                    status,
                    Status::AlreadyExists
                        | Status::PullComplete
                        | Status::Pushed
                        | Status::LayerAlreadyExists
                        | Status::MountedFrom(_)
                ) {
                    bar.finish();
                }
            }
            Event::Bytes {
                id,
                status,
                done,
                total,
            } => {
                let bar = live.bar(id);
                if bar.length() != Some(*total) {
                    bar.set_message(status.to_string());
                    bar.set_length(*total);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix}: {msg} [{bar:50}] {bytes}/{total_bytes}",
                        )
                        .expect("template")
                        .progress_chars("=> "),
                    );
                }
                bar.set_position(*done);
            }
        }
    }
}

impl Live {
    fn bar(&self, id: &Digest) -> ProgressBar {
        let mut bars = self.bars.lock().expect("lock");
        if let Some((_, bar)) = bars.iter().find(|(d, _)| d == id) {
            return bar.clone();
        }
        let bar = self.multi.add(
            ProgressBar::new(0)
                .with_style(plain())
                .with_prefix(id.short().to_string()),
        );
        bars.push((id.clone(), bar.clone()));
        bar
    }
}

/// A layer's line without a bar: `59bf1c3509f3: Pull complete`.
fn plain() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").expect("template")
}
