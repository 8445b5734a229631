//! The seam between a container's life and the networks it is on (`strata_net::Networks`):
//! the runner of a container connects it before each run and the connection, dropped when
//! the run ends, detaches it; `rm` releases what it kept between runs.

use super::Container;
use crate::backend::NetAttach;
use crate::error::Result;

/// The container's own `/etc/hosts`, in its directory: its network writes it, and rewrites it
/// in place as containers join and leave the network.
pub const HOSTS_FILE: &str = "hosts";
/// The container's own `/etc/resolv.conf`, in its directory.
pub const RESOLV_FILE: &str = "resolv.conf";

/// Puts containers on networks (`bridge`, user networks).
pub trait Networking: Sync {
    /// Prepares `c` for one run on its network: its address (kept over restarts), its
    /// published ports reserved, its `hosts` (naming it `hostname`) and `resolv.conf`
    /// written. The connection attaches the namespace the backend makes; dropping it
    /// detaches it (and, for `--rm`, releases the container).
    fn connect<'a>(&'a self, c: &Container, hostname: &str) -> Result<Box<dyn NetAttach + 'a>>;

    /// `rm`: gives up what container `id` keeps between runs (its addresses).
    fn release(&self, id: &str) -> Result<()>;
}
