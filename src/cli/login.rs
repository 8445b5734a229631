use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};
use strata_runtime::reference::DEFAULT_DOMAIN;
use strata_runtime::registry::{self, Session};

use super::pull::RegistryFlags;

#[derive(clap::Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    registry: RegistryFlags,
    /// Registry host (default: Docker Hub)
    server: Option<String>,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    server: Option<String>,
}

/// `https://host/v2/` and `host` name the same registry.
fn host_of(server: Option<&str>) -> String {
    let s = server.unwrap_or(DEFAULT_DOMAIN);
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or(s);
    if s == "index.docker.io" || s == "registry-1.docker.io" {
        DEFAULT_DOMAIN.to_string()
    } else {
        s.to_string()
    }
}

impl LoginArgs {
    pub fn run(self) -> Result<()> {
        let host = host_of(self.server.as_deref());
        let stdin = std::io::stdin();
        let username = match self.username {
            Some(u) => u,
            None => {
                print!("Username: ");
                std::io::stdout().flush()?;
                let mut u = String::new();
                stdin.lock().read_line(&mut u)?;
                u.trim().to_string()
            }
        };
        let password = match (self.password, self.password_stdin) {
            (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
            (Some(p), false) => p,
            (None, _) => {
                if !self.password_stdin && stdin.is_terminal() {
                    print!("Password: ");
                    std::io::stdout().flush()?;
                }
                let mut p = String::new();
                stdin.lock().read_line(&mut p)?;
                p.trim_end_matches(['\n', '\r']).to_string()
            }
        };
        if username.is_empty() || password.is_empty() {
            bail!("username and password are required");
        }
        let session =
            Session::open(&host, &self.registry.options(None)?)?.with_auth(&username, &password);
        session.check_login()?;
        registry::store_credentials(&host, Some((&username, &password)))
            .context("save credentials")?;
        println!("Login Succeeded");
        Ok(())
    }
}

impl LogoutArgs {
    pub fn run(self) -> Result<()> {
        let host = host_of(self.server.as_deref());
        if registry::store_credentials(&host, None)? {
            println!("Removing login credentials for {host}");
        } else {
            println!("Not logged in to {host}");
        }
        Ok(())
    }
}
