//! A Wasm container on a network (root; design §6, namespace mode). wasmtime-wasi makes a
//! guest's sockets on the thread that asks, and resolves names with getaddrinfo on that
//! thread's runtime, so the guest runs on a thread of its own that owns two namespaces: a
//! network namespace made for it and attached to the network (its sockets are endpoints on
//! the bridge, reached by peers and through published ports like a native container's),
//! and a private mount namespace where the container's own `hosts` and `resolv.conf` are
//! bound over /etc's (its lookups see its peers' names). The threads its runtime starts
//! inherit both; the rest of the process keeps the host's.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;

use rustix::mount::{mount_bind, mount_change, MountPropagationFlags};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use crate::backend::NetAttach;
use crate::error::{Error, Result};

/// The namespaces a guest on a network runs in (kept for `exec`).
#[derive(Debug)]
pub struct GuestNamespaces {
    net: OwnedFd,
    mnt: OwnedFd,
}

fn own(kind: &str) -> Result<OwnedFd> {
    let path = format!("/proc/thread-self/ns/{kind}");
    File::open(&path)
        .map(OwnedFd::from)
        .map_err(|e| Error::io(format!("open {path}"), e))
}

fn errno(what: &str) -> impl FnOnce(rustix::io::Errno) -> Error + '_ {
    move |e| Error::io(what.to_string(), e.into())
}

/// unshare(2) of the calling thread.
#[allow(unsafe_code)]
fn unshare(flags: libc::c_int, what: &str) -> Result<()> {
    // SAFETY: a plain syscall; without CLONE_FILES no descriptor table is split.
    if unsafe { libc::unshare(flags) } == 0 {
        Ok(())
    } else {
        Err(Error::io(what.to_string(), std::io::Error::last_os_error()))
    }
}

impl GuestNamespaces {
    /// Moves the calling thread into new network and mount namespaces, attaches the former
    /// with `attach` (from the host's, where the bridge is) and binds `files` (source,
    /// target under /etc) in the latter. The thread must be one of its own: it stays there.
    pub fn enter_new(attach: &dyn NetAttach, files: &[(PathBuf, String)]) -> Result<Self> {
        let host = own("net")?;
        unshare(
            libc::CLONE_FS | libc::CLONE_NEWNS | libc::CLONE_NEWNET,
            "create the guest's namespaces",
        )?;
        // Nothing mounted here may reach the host's mount table; the host's unmounts still
        // reach this copy (a private one would keep them busy for the guest's life).
        mount_change(
            "/",
            MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
        )
        .map_err(errno("make the guest's mounts private"))?;
        for (source, target) in files {
            if std::path::Path::new(target).exists() {
                mount_bind(source, target.as_str())
                    .map_err(|e| Error::io(format!("bind {target}"), e.into()))?;
            }
        }
        let ns = GuestNamespaces {
            net: own("net")?,
            mnt: own("mnt")?,
        };
        move_into_link_name_space(host.as_fd(), Some(LinkNameSpaceType::Network))
            .map_err(errno("return to the host's network namespace"))?;
        attach.attach(ns.net.as_fd())?;
        move_into_link_name_space(ns.net.as_fd(), Some(LinkNameSpaceType::Network))
            .map_err(errno("enter the guest's network namespace"))?;
        Ok(ns)
    }

    /// Moves the calling thread (one of its own) into these namespaces: an `exec`'s guest.
    pub fn enter(&self) -> Result<()> {
        unshare(libc::CLONE_FS, "unshare the filesystem attributes")?;
        move_into_link_name_space(self.mnt.as_fd(), Some(LinkNameSpaceType::Mount))
            .map_err(errno("enter the guest's mount namespace"))?;
        move_into_link_name_space(self.net.as_fd(), Some(LinkNameSpaceType::Network))
            .map_err(errno("enter the guest's network namespace"))
    }
}

/// Runs `run` on a thread of its own that first calls `enter`, and hands each call of the
/// callback `run` is given to `started` on the calling thread (which need not be `Send`),
/// returning its answer.
pub fn on_own_thread<S: Send, R: Send>(
    enter: impl FnOnce() -> Result<()> + Send,
    run: impl FnOnce(&mut dyn FnMut(S) -> Result<()>) -> Result<R> + Send,
    started: &mut dyn FnMut(S) -> Result<()>,
) -> Result<R> {
    enum Message<S, R> {
        Started(S),
        Done(Result<R>),
    }
    let gone = || {
        Error::io(
            "the guest's thread",
            std::io::Error::other("it ended early"),
        )
    };
    std::thread::scope(|scope| {
        let (tell, heard) = mpsc::channel();
        let (answer, answered) = mpsc::channel::<Result<()>>();
        scope.spawn(move || {
            let done = enter().and_then(|()| {
                run(&mut |s| {
                    tell.send(Message::Started(s)).map_err(|_| gone())?;
                    answered.recv().unwrap_or_else(|_| Err(gone()))
                })
            });
            let _ = tell.send(Message::Done(done));
        });
        loop {
            match heard.recv() {
                Ok(Message::Started(s)) => {
                    let _ = answer.send(started(s));
                }
                Ok(Message::Done(outcome)) => return outcome,
                // It panicked: the scope's end re-raises that.
                Err(_) => return Err(gone()),
            }
        }
    })
}
