//! Linux capability names, as OCI specs spell them, and their numbers.

/// `CAP_CHOWN` → 0, …, in linux/capability.h's order.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The bit number of a capability named `CAP_X`, `X` or `"CAP_X"` (serde's spelling).
pub(crate) fn number(name: &str) -> strata_runtime::Result<u32> {
    let bare = name.trim_matches('"').trim_start_matches("CAP_");
    NAMES
        .iter()
        .position(|n| *n == bare)
        .map(|n| n as u32)
        .ok_or_else(|| strata_runtime::Error::InvalidArgument(format!("unknown capability {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_numbers() {
        assert_eq!(number("\"CAP_CHOWN\"").unwrap(), 0);
        assert_eq!(number("CAP_AUDIT_WRITE").unwrap(), 29);
        assert_eq!(number("CAP_SYS_ADMIN").unwrap(), 21);
        assert_eq!(number("CHECKPOINT_RESTORE").unwrap(), 40);
        assert!(number("CAP_NOPE").is_err());
    }
}
