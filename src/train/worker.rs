//! One worker process of a run: its rank, device and process group (from the
//! torchrun-style environment the launcher sets), and the stop flag that
//! SIGINT / SIGTERM raise so the run checkpoints at the next step.

use crate::config::run::Backend;
use crate::dist::rendezvous::{self, Party, Stopped};
use crate::dist::{ProcessGroup, ReduceOp, Store};
use crate::task::evaluate::{Gather, Share};
use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

pub struct Worker {
    pub rank: usize,
    pub local_rank: usize,
    pub world: usize,
    pub device: Device,
    /// The data group: gradients, parameters and optimizer shards, all on
    /// `device` (NCCL on a GPU, Gloo on CPU). Present whenever the launcher
    /// started this worker, one worker included, as under torchrun.
    pub group: Option<ProcessGroup>,
    /// The control group: the stop flag, counts and losses as CPU `f64`
    /// (Gloo on every host), so that the data group only ever carries device
    /// tensors, as PyTorch users keep a Gloo group beside NCCL for the same.
    control: Option<ProcessGroup>,
    /// The rendezvous store, for waits without a timeout ([`Gather::gather`]).
    store: Option<Store>,
    /// The ranks their launchers saw stop: an untimed wait ends with the
    /// cause instead of waiting on a rank that is gone.
    peers: Option<Arc<Stopped>>,
    pub stop: Arc<AtomicBool>,
    /// How many times the launcher restarted the workers (torchrun's
    /// `TORCHELASTIC_RESTART_COUNT`); 0 on the first start.
    pub restart: usize,
    /// This machine as the others reach it (for messages about ranks).
    pub host: String,
    /// Exchanges through the store so far: each gets keys of its own, as
    /// every rank makes the same exchanges in the same order.
    exchanges: AtomicUsize,
}

fn env_usize(name: &str) -> Result<Option<usize>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v.parse().with_context(|| format!("{name}={v:?} is not a number"))?)),
        Err(_) => Ok(None),
    }
}

/// Whether the data group checks its collectives as NCCL would
/// (`UORCH_NCCL_RULES`, on unless `0`): see [`ProcessGroup::enforce_nccl_rules`].
fn nccl_rules() -> bool {
    std::env::var("UORCH_NCCL_RULES").map(|v| v != "0").unwrap_or(true)
}

impl Worker {
    /// From RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT. Without
    /// MASTER_PORT and with one worker (not under the launcher), no groups.
    /// Local rank r uses GPU r (of those visible; r modulo their count when
    /// Gloo lets workers share them).
    pub fn from_env(timeout: Duration, backend: Backend) -> Result<Self> {
        let world = env_usize("WORLD_SIZE")?.unwrap_or(1);
        let rank = env_usize("RANK")?.unwrap_or(0);
        let local_rank = env_usize("LOCAL_RANK")?.unwrap_or(0);
        let gpus = if tch::Cuda::is_available() { tch::Cuda::device_count() as usize } else { 0 };
        let device = if gpus > 0 { Device::Cuda(local_rank % gpus) } else { Device::Cpu };
        if backend == Backend::Nccl && gpus == 0 {
            bail!("rank {rank}: dist.backend is nccl, and this worker sees no GPU");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let restart = env_usize("TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0);
        let port = std::env::var("MASTER_PORT").ok();
        if world == 1 && port.is_none() {
            return Ok(Self {
                rank,
                local_rank,
                world,
                device,
                group: None,
                control: None,
                store: None,
                peers: None,
                stop,
                restart,
                host: local_hostname(),
                exchanges: AtomicUsize::new(0),
            });
        }
        let addr = std::env::var("MASTER_ADDR").unwrap_or_else(|_| "127.0.0.1".into());
        let port: u16 = port.context("MASTER_PORT is not set")?.parse().context("MASTER_PORT is not a port")?;
        // Under `uorch launch` the launcher serves the store (torchrun's
        // agent store); started otherwise, rank 0 serves it.
        let agent_store = std::env::var("TORCHELASTIC_USE_AGENT_STORE").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        let store = Store::tcp(&addr, port, world, rank == 0 && !agent_store, timeout)
            .with_context(|| format!("rank {rank}: rendezvous at {addr}:{port}"))?;
        // Every rank here before any group forms: one that never comes is
        // named, not left to a process group's timeout.
        let per_node = env_usize("LOCAL_WORLD_SIZE")?.unwrap_or(world).max(1);
        let name = |r: usize| format!("rank {r} (node {})", r / per_node);
        Party { what: "rank", expected: world, name: &name }.arrive(&store, rank, timeout, rank == 0)?;
        let peers = Arc::new(Stopped::new(&store, world)?);
        let host = std::env::var("UORCH_HOST_ADDR").unwrap_or_else(|_| {
            if addr == "127.0.0.1" || addr == "localhost" {
                "127.0.0.1".into()
            } else {
                local_hostname()
            }
        });
        let data_store = store.prefixed("data")?;
        let mut group = match (device, backend) {
            (Device::Cuda(d), Backend::Auto | Backend::Nccl) => {
                ProcessGroup::nccl(data_store, rank, world, timeout, d)?
            }
            _ => {
                let g = ProcessGroup::gloo(data_store, rank, world, timeout, &host)?;
                if nccl_rules() {
                    g.enforce_nccl_rules(device)?;
                }
                g
            }
        };
        let mut control = ProcessGroup::gloo(store.prefixed("control")?, rank, world, timeout, &host)?;
        group.watch(peers.clone());
        control.watch(peers.clone());
        if rank == 0 {
            let rules = if group.backend == "gloo" && nccl_rules() { " (NCCL rules)" } else { "" };
            eprintln!(
                "rank 0 of {world} on {}: data group {}{rules}, control group gloo",
                crate::torch_runtime::device_name(device),
                group.backend
            );
        }
        let store = Some(store.prefixed("untimed")?);
        Ok(Self {
            rank,
            local_rank,
            world,
            device,
            group: Some(group),
            control: Some(control),
            store,
            peers: Some(peers),
            stop,
            restart,
            host,
            exchanges: AtomicUsize::new(0),
        })
    }

    /// This worker's part of an evaluation of the run's ranks.
    pub fn share(&self) -> Share<'_> {
        Share { rank: self.rank, world: self.world, gather: self }
    }

    /// Rank 0 says it is done with `name`; the other ranks wait for that,
    /// with no timeout (as in [`Gather::gather`]), so none waits in a timed
    /// collective while rank 0 evaluates or writes.
    pub fn after_rank0(&self, name: &str) -> Result<()> {
        self.from_rank0(name, Vec::new()).map(drop)
    }

    /// Rank 0's `value` on every rank (the others' `value` is ignored): they
    /// wait for it untimed, as in [`after_rank0`](Self::after_rank0).
    pub fn from_rank0(&self, name: &str, value: Vec<u8>) -> Result<Vec<u8>> {
        let Some(store) = &self.store else { return Ok(value) };
        let (key, done) = (format!("{name}/value"), format!("{name}/done"));
        if self.rank == 0 {
            store.set(&key, &value)?;
            store.add(&done, 1)?;
            Ok(value)
        } else {
            self.wait_count(store, &done, 1)?;
            store.get(&key)
        }
    }

    /// A store name no earlier exchange of this launch used: `what/N`, the
    /// same on every rank when every rank asks in the same order.
    pub fn exchange(&self, what: &str) -> String {
        format!("{what}/{}", self.exchanges.fetch_add(1, Ordering::Relaxed))
    }

    /// Threads for this rank's share of an evaluation: the machine's cores
    /// split among its workers, which all evaluate at once (more would make
    /// their threads wait on each other's cores).
    pub fn eval_threads(&self) -> usize {
        let local = std::env::var("LOCAL_WORLD_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(1usize);
        (crate::torch_runtime::all_cores() / local.max(1)).max(1)
    }

    /// Sum values across ranks (one small collective on the control group).
    pub fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        self.reduce(values, ReduceOp::Sum)
    }

    /// The largest of each value across ranks.
    pub fn max(&self, values: &[f64]) -> Result<Vec<f64>> {
        self.reduce(values, ReduceOp::Max)
    }

    fn reduce(&self, values: &[f64], op: ReduceOp) -> Result<Vec<f64>> {
        let Some(pg) = &self.control else { return Ok(values.to_vec()) };
        let _waiting = super::step_time::phase(super::step_time::Phase::Communication);
        let t = Tensor::from_slice(values).to_kind(Kind::Double);
        pg.all_reduce(&[&t], op)?.wait()?;
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

impl Gather for Worker {
    /// Every rank's `mine` for `name`, on rank 0 in rank order (`None` on the
    /// others, which go on at once). Rank 0 waits for the others through the
    /// store with no timeout: a rank may work (evaluate) for longer than
    /// `dist.timeout_s`, and a rank that dies stops the whole launch anyway.
    fn gather(&self, name: &str, mine: Vec<u8>) -> Result<Option<Vec<Vec<u8>>>> {
        let Some(store) = &self.store else { return Ok(Some(vec![mine])) };
        store.set(&format!("{name}/{}", self.rank), &mine)?;
        store.add(&format!("{name}/ready"), 1)?;
        if self.rank != 0 {
            return Ok(None);
        }
        self.wait_count(store, &format!("{name}/ready"), self.world as i64)?;
        (0..self.world).map(|r| store.get(&format!("{name}/{r}"))).collect::<Result<Vec<_>>>().map(Some)
    }
}

impl Worker {
    /// Poll an integer key until it reaches `at_least` (`add(key, 0)` answers
    /// at once; an unreachable store is an error), or until a launcher
    /// records a stopped rank: then the error names it.
    fn wait_count(&self, store: &Store, key: &str, at_least: i64) -> Result<()> {
        let mut polls = 0u64;
        while store.add(key, 0)? < at_least {
            polls += 1;
            if polls % 25 == 0 {
                let stopped = self.peers.as_ref().map(|p| p.reported()).unwrap_or_default();
                if !stopped.is_empty() {
                    bail!("rank {} waiting for {key}: {}", self.rank, rendezvous::describe(&stopped));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}
