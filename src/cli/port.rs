use anyhow::{anyhow, bail, Result};
use strata_runtime::container::{Containers, Proto};
use strata_runtime::Store;

/// `port`: a running container's published ports, as docker prints them.
#[derive(clap::Args)]
pub struct Args {
    container: String,
    /// Only this container port: PRIVATE_PORT[/PROTO]
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    port: Option<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let containers = Containers::open(store)?;
        let c = containers.get(&self.container)?;
        let wanted = self
            .port
            .as_deref()
            .map(|p| {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                let proto = match proto {
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    _ => bail!("invalid protocol {proto:?} (tcp, udp)"),
                };
                let port: u16 = port.parse().map_err(|_| anyhow!("invalid port {port:?}"))?;
                Ok((port, proto))
            })
            .transpose()?;
        let mut ports = Vec::new();
        if c.running() && c.host.network.attaches() {
            for lease in strata_net::Networks::open(store).leases_of(&c.id)? {
                ports.extend(lease.ports);
            }
        }
        ports.sort_by_key(|p| (p.container_port, p.proto, p.host_port));
        let mut shown = 0;
        for p in &ports {
            let ip = p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            match wanted {
                Some(w) if w != (p.container_port, p.proto) => continue,
                Some(_) => println!("{ip}:{}", p.host_port),
                None => println!("{}/{} -> {ip}:{}", p.container_port, p.proto, p.host_port),
            }
            shown += 1;
        }
        if let (Some((port, proto)), 0) = (wanted, shown) {
            bail!(
                "No public port '{port}/{proto}' published for {}",
                self.container
            );
        }
        Ok(())
    }
}
