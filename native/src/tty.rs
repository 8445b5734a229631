//! `-t`: the container's terminal is a pty made in its own devpts; strata holds the master,
//! puts its own terminal in raw mode, and copies both ways until the container's side closes.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

/// Give the container's terminal the size of ours (at start and on SIGWINCH).
pub(crate) fn copy_window_size(master: &OwnedFd) {
    let ours = [std::io::stdin().as_fd(), std::io::stdout().as_fd()]
        .into_iter()
        .find_map(|fd| rustix::termios::tcgetwinsize(fd).ok());
    if let Some(size) = ours {
        let _ = rustix::termios::tcsetwinsize(master, size);
    }
}

/// Give the container's terminal this size (a resize request: `attach`, the API's).
pub(crate) fn set_window_size(
    master: &OwnedFd,
    rows: u16,
    cols: u16,
) -> strata_runtime::Result<()> {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(master, size)
        .map_err(|e| strata_runtime::Error::io("resize the container's terminal", e.into()))
}

/// Restores the caller's terminal mode when dropped.
struct RawMode(Option<rustix::termios::Termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ =
            rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin().as_fd(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

/// What a terminal's input comes from (`-i`).
pub(crate) enum Input<'a> {
    /// Our own stdin, a terminal put in raw mode meanwhile.
    Ours,
    Given(std::os::fd::BorrowedFd<'a>),
}

/// Copy the terminal's output to `out` (our stdout when none: a detached container's
/// monitor gives its log's pipe) and, with `-i`, its `input` to it, until every process of
/// the container has closed it.
pub(crate) fn relay(
    master: OwnedFd,
    input: Option<Input<'_>>,
    out: Option<std::os::fd::BorrowedFd<'_>>,
) {
    let _raw = matches!(input, Some(Input::Ours)).then(RawMode::enter);
    let mut output = std::fs::File::from(master);
    let source: Option<Box<dyn Read + Send>> = match input {
        None => None,
        Some(Input::Ours) => Some(Box::new(std::io::stdin())),
        Some(Input::Given(fd)) => fd
            .try_clone_to_owned()
            .ok()
            .map(|fd| Box::new(std::fs::File::from(fd)) as Box<dyn Read + Send>),
    };
    if let (Some(mut source), Ok(mut terminal)) = (source, output.try_clone()) {
        // Ends with the process: a read of a stdin cannot be interrupted portably.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = source.read(&mut buf) {
                if n == 0 || terminal.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    let mut stdout: Box<dyn Write> = match out {
        Some(fd) => match fd.try_clone_to_owned() {
            Ok(fd) => Box::new(std::fs::File::from(fd)),
            Err(_) => return,
        },
        None => Box::new(std::io::stdout().lock()),
    };
    let mut buf = [0u8; 8192];
    loop {
        match output.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO: the container's side is closed.
            Err(_) => break,
        }
    }
}
