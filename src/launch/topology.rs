//! Where this launcher sits among several machines: torchrun's flags
//! (`--nproc`, `--nnodes`, `--node-rank`, `--master-addr`, `--master-port`),
//! completed from Slurm's variables under Slurm.

use anyhow::{bail, Context, Result};
use std::process::Command;

/// Where this launcher sits among several machines (torchrun's flags).
#[derive(Debug, Clone)]
pub struct Topology {
    pub nproc: usize,
    pub nnodes: usize,
    pub node_rank: usize,
    pub master_addr: String,
    /// 0: pick a free port (single machine only).
    pub master_port: u16,
}

impl Topology {
    /// Fill what the flags left open from SLURM_* variables when under Slurm.
    pub fn resolve(mut self) -> Result<Self> {
        if let (Ok(n), Ok(id)) = (std::env::var("SLURM_NNODES"), std::env::var("SLURM_NODEID")) {
            if self.nnodes == 1 {
                self.nnodes = n.parse().context("SLURM_NNODES is not a number")?;
                self.node_rank = id.parse().context("SLURM_NODEID is not a number")?;
            }
            if self.master_addr == "127.0.0.1" && self.nnodes > 1 {
                let list = std::env::var("SLURM_JOB_NODELIST").context("SLURM_JOB_NODELIST is not set")?;
                let out = Command::new("scontrol")
                    .args(["show", "hostnames", &list])
                    .output()
                    .context("running scontrol show hostnames")?;
                self.master_addr =
                    String::from_utf8_lossy(&out.stdout).lines().next().context("empty SLURM node list")?.to_string();
            }
            if self.master_port == 0 {
                let job: u64 = std::env::var("SLURM_JOB_ID").ok().and_then(|j| j.parse().ok()).unwrap_or(0);
                self.master_port = super::gpus::stage_port(None, Some(job), "", 0);
            }
        }
        if self.node_rank >= self.nnodes {
            bail!("--node-rank {} must be below --nnodes {}", self.node_rank, self.nnodes);
        }
        if self.master_port == 0 {
            if self.nnodes > 1 {
                bail!("with --nnodes {} every launcher needs the same --master-port", self.nnodes);
            }
            self.master_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        }
        Ok(self)
    }

    /// The machines as the flags (or MASTER_ADDR, MASTER_PORT, NNODES,
    /// NODE_RANK) give them, before Slurm's variables fill the rest.
    pub fn describe(&self) -> String {
        let port = if self.master_port == 0 { "a free port".to_string() } else { self.master_port.to_string() };
        format!(
            "machines: {} (this one node rank {}), rendezvous at {}:{port}",
            self.nnodes, self.node_rank, self.master_addr
        )
    }

    pub fn world(&self) -> usize {
        self.nproc * self.nnodes
    }
}
