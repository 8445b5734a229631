//! strata-net: container networking without a daemon. The runner of a container (a
//! foreground `run`, or its monitor) attaches it to a network once its backend has made its
//! network namespace, before its program starts, and detaches it when the run ends; every
//! host resource (bridges, the nftables table) is reconciled from the state on disk.
//! `docs/design/networking.md` is the design.

pub mod etc;
pub mod ipam;
pub mod netlink;
pub mod networks;
pub mod nft;
pub mod pasta;
pub mod slirp;

pub use networks::{Lease, Network, Networks};

#[cfg(test)]
mod testns;
