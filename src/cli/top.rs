use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use strata_runtime::container::{Container, Containers};
use strata_runtime::Store;

/// `top`: the processes a running container has, as the host's `ps` shows them (as
/// docker does it: `ps` with the options given, its rows kept for the container's pids).
#[derive(clap::Args)]
pub struct Args {
    container: String,
    /// Options for ps (default -ef)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ps OPTIONS"
    )]
    ps_options: Vec<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<ExitCode> {
        let containers = Containers::open(store)?;
        let c = containers.get(&self.container)?;
        let (titles, rows) = top(&containers, &c, &self.ps_options)?;
        let titles: Vec<&str> = titles.iter().map(String::as_str).collect();
        print!("{}", crate::format::table_min(20, &titles, &rows));
        Ok(ExitCode::SUCCESS)
    }
}

/// The host pids of a running container's processes.
/// `ps OPTIONS` (`-ef` when none) of the host, the titles and the rows of container `c`'s
/// processes (`top`, the API's `GET /containers/{id}/top`).
pub(crate) fn top(
    containers: &Containers<'_>,
    c: &Container,
    ps_options: &[String],
) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let pids = pids(containers, c)?;
    let options = if ps_options.is_empty() {
        vec!["-ef".to_string()]
    } else {
        ps_options.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&options)
        .output()
        .context("run ps")?;
    if !out.status.success() {
        bail!("ps: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    processes(&String::from_utf8_lossy(&out.stdout), &pids)
}

fn pids(containers: &Containers<'_>, c: &Container) -> Result<Vec<u32>> {
    let not_running = || anyhow!("container {} is not running", c.id);
    if !c.running() {
        return Err(not_running());
    }
    match containers.usage(c)? {
        Some(usage) => Ok(usage.pids),
        // Run in the foreground of another strata: its init is all we know.
        None => c
            .live_pid()
            .map(|p| vec![p.as_raw_nonzero().get() as u32])
            .ok_or_else(not_running),
    }
}

/// `ps` output's titles and the rows of `pids`, as moby's `parsePSOutput`: the PID column
/// found by its title; the last column (the command) keeps its spaces; thread lines (`-`
/// for a PID, with `ps m`) follow the process they belong to.
fn processes(output: &str, pids: &[u32]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let pid_column = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| anyhow!("couldn't find PID field in ps output"))?;
    let mut rows = Vec::new();
    let mut after_ours = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(&pid) = fields.get(pid_column) else {
            continue;
        };
        let ours = if pid == "-" {
            after_ours
        } else {
            let ours = pid.parse::<u32>().is_ok_and(|p| pids.contains(&p));
            after_ours = ours;
            ours
        };
        if ours {
            let last = titles.len().saturating_sub(1).min(fields.len());
            let mut row: Vec<String> = fields[..last].iter().map(|f| f.to_string()).collect();
            row.push(fields[last..].join(" "));
            rows.push(row);
        }
    }
    Ok((titles, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_rows_of_the_containers_pids() {
        let ps = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                  root           1       0  0 10:00 ?        00:00:01 /sbin/init\n\
                  root         700       1  0 10:01 ?        00:00:00 sh -c sleep 100\n\
                  root         701     700  0 10:01 ?        00:00:00 sleep 100\n";
        let (titles, rows) = processes(ps, &[700, 701]).unwrap();
        assert_eq!(titles.len(), 8);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][1], "700");
        assert_eq!(rows[0][7], "sh -c sleep 100");
        assert!(processes("USER COMMAND\n", &[1]).is_err());
    }

    #[test]
    fn thread_lines_follow_their_process() {
        let ps =
            "PID TTY STAT TIME COMMAND\n5 ? - 0:00 a\n- - Ss 0:00 -\n6 ? - 0:00 b\n- - S 0:00 -\n";
        let (_, rows) = processes(ps, &[5]).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1][0], "-");
    }
}
