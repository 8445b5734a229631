//! What `strata` and its two forked processes (see `child`) say to each other, over a
//! SOCK_SEQPACKET socket pair: one typed [`Message`] per packet, encoded and decoded only
//! here. youki's `channel`/`message` split, without serde: a frame is a tag byte and a
//! fixed-layout body, built in a stack buffer, because the children run after a fork of a
//! multi-threaded process and must not depend on the allocator to report (decoding a
//! `Failed` allocates its text, which only the parent ever receives).
//!
//! The conversation: the intermediate sends `Ready` (in its user namespace) and waits for
//! `Go` (id maps written, cgroup joined) when the plan says so, then `Pid` of the init; the
//! init sends `Tty` with the pty master and waits for `Go`; either sends `Failed` when set-up
//! fails. The socket is close-on-exec, so the parent reads end-of-file once the program runs.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

use crate::failure::{Failure, FailureKind};

/// The largest frame; a longer failure text is cut (at a character) to fit.
const MAX: usize = 8192;

const READY: u8 = b'R';
const GO: u8 = b'G';
const PID: u8 = b'P';
const TTY: u8 = b'T';
const FAILED: u8 = b'E';

#[derive(Debug)]
pub(crate) enum Message {
    /// intermediate → parent: in its own user namespace, waiting for id maps and cgroup.
    Ready,
    /// parent → a child: go on.
    Go,
    /// intermediate → parent: the container's init, as the host sees it.
    Pid(i32),
    /// init → parent: the pty master (passed as SCM_RIGHTS); the init waits for `Go`.
    Tty(OwnedFd),
    /// a child → parent: set-up failed; the child exits.
    Failed(Failure),
}

impl Message {
    fn name(&self) -> &'static str {
        match self {
            Message::Ready => "ready",
            Message::Go => "go",
            Message::Pid(_) => "pid",
            Message::Tty(_) => "terminal",
            Message::Failed(_) => "failure",
        }
    }

    /// Writes the frame into `buf` and returns its length; allocates nothing.
    fn encode(&self, buf: &mut [u8; MAX]) -> usize {
        match self {
            Message::Ready => {
                buf[0] = READY;
                1
            }
            Message::Go => {
                buf[0] = GO;
                1
            }
            Message::Pid(pid) => {
                buf[0] = PID;
                buf[1..5].copy_from_slice(&pid.to_le_bytes());
                5
            }
            Message::Tty(_) => {
                buf[0] = TTY;
                1
            }
            Message::Failed(f) => {
                buf[0] = FAILED;
                buf[1] = f.kind as u8;
                let text = prefix(&f.message, MAX - 2).as_bytes();
                buf[2..2 + text.len()].copy_from_slice(text);
                2 + text.len()
            }
        }
    }

    fn decode(frame: &[u8], fd: Option<OwnedFd>) -> Result<Message, &'static str> {
        let (&tag, body) = frame.split_first().ok_or("an empty message")?;
        let msg = match (tag, body) {
            (READY, []) => Message::Ready,
            (GO, []) => Message::Go,
            (PID, &[a, b, c, d]) => Message::Pid(i32::from_le_bytes([a, b, c, d])),
            (TTY, []) => {
                return fd
                    .map(Message::Tty)
                    .ok_or("a terminal message without its descriptor")
            }
            (FAILED, [kind, text @ ..]) => Message::Failed(Failure {
                kind: FailureKind::from_u8(*kind).ok_or("a failure of an unknown kind")?,
                message: String::from_utf8_lossy(text).into_owned(),
            }),
            _ => return Err("an unknown or malformed message"),
        };
        match fd {
            // Dropping it closes it.
            Some(_) => Err("a descriptor on a message that carries none"),
            None => Ok(msg),
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends at a character.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Sends one message (and the fd a `Tty` carries). No allocation: safe after fork.
pub(crate) fn send(sock: BorrowedFd<'_>, msg: &Message) -> io::Result<()> {
    let fd = match msg {
        Message::Tty(fd) => Some(fd.as_fd()),
        _ => None,
    };
    let fds = fd.as_slice();
    let mut buf = [0u8; MAX];
    let len = msg.encode(&mut buf);
    let iov = [IoSlice::new(&buf[..len])];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::from(io::ErrorKind::OutOfMemory));
    }
    loop {
        match sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL) {
            // A packet socket sends a message whole or not at all.
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The next message; `None` once the other end has closed (or exec'd).
pub(crate) fn recv(sock: BorrowedFd<'_>) -> io::Result<Option<Message>> {
    let mut buf = [0u8; MAX];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    loop {
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let got = match recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(got) => got,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fd = None;
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                // Any beyond the first are closed as they drop.
                for f in fds {
                    fd.get_or_insert(f);
                }
            }
        }
        let invalid = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the container's set-up sent {why}"),
            )
        };
        if got
            .flags
            .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
        {
            return Err(invalid("a message too long"));
        }
        if got.bytes == 0 {
            return Ok(None);
        }
        return Message::decode(&buf[..got.bytes], fd)
            .map(Some)
            .map_err(invalid);
    }
}

/// A child's wait for the parent's `Go`.
pub(crate) fn wait_for_go(sock: BorrowedFd<'_>) -> Result<(), Failure> {
    match recv(sock) {
        Ok(Some(Message::Go)) => Ok(()),
        _ => Err(Failure::other("strata went away during set-up".into())),
    }
}

/// A message the parent did not expect at this point of the conversation.
pub(crate) fn unexpected(msg: Option<&Message>, expected: &str) -> strata_runtime::Error {
    strata_runtime::Error::Unsupported(match msg {
        None => "container set-up: the process went away".into(),
        Some(m) => format!(
            "container set-up: expected a {expected} message, got a {} message",
            m.name()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    use std::io::{Read, Write};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap()
    }

    fn raw(sock: &OwnedFd, bytes: &[u8], fd: Option<BorrowedFd<'_>>) {
        let fds = fd.as_slice();
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() {
            assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
        }
        sendmsg(
            sock,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap();
    }

    #[test]
    fn every_message_round_trips_over_a_socket() {
        let (a, b) = pair();
        send(a.as_fd(), &Message::Ready).unwrap();
        send(a.as_fd(), &Message::Go).unwrap();
        send(a.as_fd(), &Message::Pid(-2_000_000_001)).unwrap();
        send(
            a.as_fd(),
            &Message::Failed(Failure {
                kind: FailureKind::NotFound,
                message: "exec: \"x\": executable file not found in $PATH".into(),
            }),
        )
        .unwrap();
        assert!(matches!(recv(b.as_fd()).unwrap(), Some(Message::Ready)));
        assert!(matches!(recv(b.as_fd()).unwrap(), Some(Message::Go)));
        assert!(matches!(
            recv(b.as_fd()).unwrap(),
            Some(Message::Pid(-2_000_000_001))
        ));
        match recv(b.as_fd()).unwrap() {
            Some(Message::Failed(f)) => {
                assert_eq!(f.kind, FailureKind::NotFound);
                assert_eq!(f.message, "exec: \"x\": executable file not found in $PATH");
            }
            other => panic!("{other:?}"),
        }
        drop(a);
        assert!(recv(b.as_fd()).unwrap().is_none());
    }

    #[test]
    fn a_terminal_message_carries_its_descriptor() {
        let (a, b) = pair();
        let (mut reader, writer) = std::io::pipe().unwrap();
        send(a.as_fd(), &Message::Tty(OwnedFd::from(writer))).unwrap();
        let Some(Message::Tty(fd)) = recv(b.as_fd()).unwrap() else {
            panic!("no terminal message");
        };
        let flags = rustix::io::fcntl_getfd(&fd).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        std::fs::File::from(fd).write_all(b"hi").unwrap();
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hi");
    }

    #[test]
    fn a_long_failure_is_cut_at_a_character() {
        let (a, b) = pair();
        let message = "é".repeat(MAX);
        send(a.as_fd(), &Message::Failed(Failure::other(message))).unwrap();
        let Some(Message::Failed(f)) = recv(b.as_fd()).unwrap() else {
            panic!("no failure");
        };
        assert_eq!(f.kind, FailureKind::Other);
        assert!(f.message.len() <= MAX - 2 && f.message.len() >= MAX - 4);
        assert!(f.message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn malformed_frames_are_refused() {
        let (a, b) = pair();
        let (_r, w) = std::io::pipe().unwrap();
        let w = OwnedFd::from(w);
        for (bytes, fd) in [
            (&b"X"[..], None),
            (b"P\x01\x02", None),
            (b"P\x01\x02\x03\x04\x05", None),
            (b"G!", None),
            (b"E", None),
            (b"E\x07oops", None),
            (b"T", None),
            (b"G", Some(w.as_fd())),
        ] {
            raw(&a, bytes, fd);
            let err = recv(b.as_fd()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bytes:?}");
        }
        let too_long = vec![FAILED; MAX + 1];
        raw(&a, &too_long, None);
        assert!(recv(b.as_fd())
            .unwrap_err()
            .to_string()
            .contains("too long"));
    }

    #[test]
    fn the_parent_names_what_it_did_not_expect() {
        assert_eq!(
            unexpected(None, "ready").to_string(),
            strata_runtime::Error::Unsupported("container set-up: the process went away".into())
                .to_string()
        );
        assert!(unexpected(Some(&Message::Pid(3)), "ready")
            .to_string()
            .contains("expected a ready message, got a pid message"));
    }
}
