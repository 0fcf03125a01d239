//! One worker process of a run: its rank, device and process group (from the
//! torchrun-style environment the launcher sets), and the stop flag that
//! SIGINT / SIGTERM raise so the run checkpoints at the next step.

use crate::dist::{ProcessGroup, ReduceOp, Store};
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

pub struct Worker {
    pub rank: usize,
    pub local_rank: usize,
    pub world: usize,
    pub device: Device,
    /// None for a single worker.
    pub group: Option<ProcessGroup>,
    pub stop: Arc<AtomicBool>,
}

fn env_usize(name: &str) -> Result<Option<usize>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v.parse().with_context(|| format!("{name}={v:?} is not a number"))?)),
        Err(_) => Ok(None),
    }
}

impl Worker {
    /// From RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (all absent: a single worker).
    pub fn from_env(timeout: Duration) -> Result<Self> {
        let world = env_usize("WORLD_SIZE")?.unwrap_or(1);
        let rank = env_usize("RANK")?.unwrap_or(0);
        let local_rank = env_usize("LOCAL_RANK")?.unwrap_or(0);
        let device = if tch::Cuda::is_available() { Device::Cuda(local_rank) } else { Device::Cpu };
        let group = if world > 1 {
            let addr = std::env::var("MASTER_ADDR").unwrap_or_else(|_| "127.0.0.1".into());
            let port: u16 = std::env::var("MASTER_PORT")
                .context("MASTER_PORT is not set")?
                .parse()
                .context("MASTER_PORT is not a port")?;
            let store = Store::tcp(&addr, port, world, rank == 0, timeout)
                .with_context(|| format!("rank {rank}: rendezvous at {addr}:{port}"))?;
            let host = std::env::var("UORCH_HOST_ADDR").unwrap_or_else(|_| {
                if addr == "127.0.0.1" || addr == "localhost" {
                    "127.0.0.1".into()
                } else {
                    local_hostname()
                }
            });
            Some(match device {
                Device::Cuda(d) => ProcessGroup::nccl(store, rank, world, timeout, d)?,
                _ => ProcessGroup::gloo(store, rank, world, timeout, &host)?,
            })
        } else {
            None
        };
        Ok(Self { rank, local_rank, world, device, group, stop: Arc::new(AtomicBool::new(false)) })
    }

    /// Sum values across ranks (one small collective).
    pub fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        let Some(pg) = &self.group else { return Ok(values.to_vec()) };
        let t = Tensor::from_slice(values).to_kind(Kind::Double);
        pg.all_reduce(&[&t], ReduceOp::Sum)?.wait()?;
        Ok(Vec::<f64>::try_from(&t)?)
    }

    /// Sum `values` across ranks in the same collective that tells whether
    /// any rank was asked to stop (all ranks agree, so they stop at the same
    /// step): one small all-reduce per step instead of two.
    pub fn stop_and_sum(&self, values: &[f64]) -> Result<(bool, Vec<f64>)> {
        let mine = self.stop.load(Ordering::Relaxed) as i32 as f64;
        let mut all = self.sum(&[&[mine], values].concat())?;
        let stop = all.remove(0) > 0.0;
        Ok((stop, all))
    }
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}
