//! Whether this process has root's power over the host: the one decision behind the store's
//! mode (see `layer`), layer unpacking (owners, device nodes), copy-up owners, the native
//! backend's id mapping and overlay options, and the default store root.
//!
//! uid 0 alone does not say it: root inside a user namespace (`unshare -r`, a rootless
//! container, a CI sandbox) has every capability, but only over its own namespace. The
//! kernel checks `trusted.*` xattrs, device nodes and mounts of the host's filesystems
//! against the initial user namespace, so such a process must work as a rootless one does.

use std::sync::OnceLock;

use rustix::thread::CapabilitySet;

/// What privileged mode uses: chown to any owner (and chmod what we chowned), write where
/// the layer's modes say no, mknod, trusted.* xattrs and mounts.
const NEEDED: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::MKNOD)
    .union(CapabilitySet::SYS_ADMIN);

/// True when the process is root in the initial user namespace with the capabilities a
/// root store needs. Decided once per process: a store's on-disk form (which xattr marks an
/// opaque directory) must not change under a running command.
pub fn privileged() -> bool {
    static DECIDED: OnceLock<bool> = OnceLock::new();
    *DECIDED.get_or_init(|| {
        rustix::process::geteuid().is_root()
            && in_initial_user_namespace()
            && rustix::thread::capabilities(None).is_ok_and(|c| c.effective.contains(NEEDED))
    })
}

/// The initial user namespace maps every id to itself; any other namespace maps a part
/// (runc's RunningInUserNS makes the same test). Without /proc, assume the host, as before.
fn in_initial_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => is_identity_map(&map),
        Err(_) => true,
    }
}

fn is_identity_map(map: &str) -> bool {
    let fields: Vec<&str> = map.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_full_identity_map_is_the_host() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("         0       1001          1\n"));
        assert!(!is_identity_map("0 0 65536\n"));
        assert!(!is_identity_map("0 0 4294967295\n1 1 1\n"));
        assert!(!is_identity_map(""));
    }

    #[test]
    fn root_on_this_host_is_privileged_as_before() {
        let host = std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| is_identity_map(&m));
        if rustix::process::geteuid().is_root() && host {
            let caps = rustix::thread::capabilities(None).unwrap();
            assert_eq!(privileged(), caps.effective.contains(NEEDED));
        } else {
            assert!(!privileged());
        }
    }
}
