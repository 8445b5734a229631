use anyhow::{bail, Result};
use strata_runtime::container::{parse_publish, Containers};
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
        // PRIVATE_PORT[/PROTO] is read by the one `-p` parser.
        let wanted = match self
            .port
            .as_deref()
            .map(parse_publish)
            .transpose()?
            .as_deref()
        {
            None => None,
            Some([p]) if p.host_port == 0 && p.host_ip.is_none() => {
                Some((p.container_port, p.proto))
            }
            Some(_) => bail!(
                "invalid port {:?}: expected PRIVATE_PORT[/PROTO]",
                self.port.unwrap_or_default()
            ),
        };
        let mut ports = Vec::new();
        if c.running() && c.host.network.attaches() {
            ports = strata_net::Networks::open(store)
                .ports()?
                .remove(&c.id)
                .unwrap_or_default();
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
