//! Process groups over c10d (Gloo here; NCCL through the plugin) with
//! in-place collectives on tch tensors. Each collective returns a [`Work`]
//! handle; waiting on it fails with an error naming the operation and the
//! rank, and the cause: the peer that stopped, as its launcher recorded it,
//! or the timeout when a peer never arrives.

use super::rendezvous::{self, Stopped};
use super::store::Store;
use crate::ffi::c10d as ffi;
use anyhow::{bail, Result};
use std::sync::Arc;
use std::time::Duration;
use tch::{Device, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    /// Sum, then divided by the group size (Gloo has no native average).
    Avg,
    Max,
    Min,
}

impl ReduceOp {
    fn code(self) -> i32 {
        match self {
            ReduceOp::Sum | ReduceOp::Avg => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
        }
    }
}

pub struct ProcessGroup {
    ptr: *mut ffi::CGroup,
    pub rank: usize,
    pub size: usize,
    pub timeout: Duration,
    pub backend: &'static str,
    /// Where the launchers record stopped ranks (see [`ProcessGroup::watch`]).
    peers: Option<Arc<Stopped>>,
    /// Keeps the store alive as long as the group that uses it.
    _store: Store,
}

// SAFETY: c10d backends are used from one thread at a time here; handles are
// freed only on drop.
unsafe impl Send for ProcessGroup {}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: freed once.
        unsafe { ffi::uorch_pg_free(self.ptr) }
    }
}

/// A pending collective.
#[must_use = "a collective must be waited on"]
pub struct Work {
    ptr: *mut ffi::CWork,
    op: &'static str,
    rank: usize,
    timeout: Duration,
    peers: Option<Arc<Stopped>>,
    /// For averages: the tensors to divide by `divisor` once complete.
    scale: Option<(Vec<Tensor>, f64)>,
}

impl Drop for Work {
    fn drop(&mut self) {
        // SAFETY: freed once.
        unsafe { ffi::uorch_work_free(self.ptr) }
    }
}

impl Work {
    /// Block until the collective completes; an error after the group's timeout.
    pub fn wait(mut self) -> Result<()> {
        // SAFETY: ptr is live until drop.
        let code = unsafe { ffi::uorch_work_wait(self.ptr, self.timeout.as_millis() as i64) };
        if code != 0 {
            let (op, rank, error) = (self.op, self.rank, ffi::last_error());
            // A peer that died is the cause, whatever the socket said.
            let stopped = self.peers.as_ref().map(|p| p.awaited(Duration::from_secs(2))).unwrap_or_default();
            if !stopped.is_empty() {
                bail!("{op} on rank {rank} failed: {} ({error})", rendezvous::describe(&stopped));
            }
            if code == 2 || error.to_lowercase().contains("timed out") {
                bail!("{op} on rank {rank} did not complete within the {:?} collective timeout: {error}", self.timeout);
            }
            bail!("{op} on rank {rank} failed: {error}");
        }
        if let Some((ts, divisor)) = self.scale.take() {
            tch::no_grad(|| {
                for mut t in ts {
                    let _ = t.g_div_scalar_(divisor);
                }
            });
        }
        Ok(())
    }
}

fn ptrs(ts: &[&Tensor]) -> Vec<ffi::CTensor> {
    // The shim copies the tensor handles (sharing storage), so in-place results land in ours.
    ts.iter().map(|t| t.as_ptr() as ffi::CTensor).collect()
}

impl ProcessGroup {
    /// A Gloo group of `size` ranks rendezvousing through `store`; this process
    /// is `rank` and is reachable at `hostname`, or, when `GLOO_SOCKET_IFNAME`
    /// names network interfaces (comma-separated, as PyTorch reads it), on
    /// those.
    pub fn gloo(store: Store, rank: usize, size: usize, timeout: Duration, hostname: &str) -> Result<Self> {
        let host = std::ffi::CString::new(hostname)?;
        let ifname = std::env::var("GLOO_SOCKET_IFNAME").unwrap_or_default();
        let interfaces = std::ffi::CString::new(ifname.as_str())?;
        // SAFETY: store.ptr is live; the shim catches C++ exceptions.
        let ptr = unsafe {
            ffi::uorch_pg_gloo_new(
                store.ptr,
                rank as i32,
                size as i32,
                timeout.as_millis() as i64,
                host.as_ptr(),
                interfaces.as_ptr(),
            )
        };
        if ptr.is_null() {
            let on = if ifname.is_empty() { hostname.to_string() } else { format!("GLOO_SOCKET_IFNAME={ifname}") };
            bail!("creating the Gloo group (rank {rank} of {size}, {on}): {}", ffi::last_error());
        }
        Ok(Self { ptr, rank, size, timeout, backend: "gloo", peers: None, _store: store })
    }

    /// A NCCL group (through the plugin); this rank uses CUDA device `device`.
    pub fn nccl(store: Store, rank: usize, size: usize, timeout: Duration, device: usize) -> Result<Self> {
        let ptr = super::nccl::plugin()?.new_group(store.ptr, rank, size, timeout.as_millis() as i64, device)?;
        Ok(Self { ptr, rank, size, timeout, backend: "nccl", peers: None, _store: store })
    }

    /// Name a stopped peer, as its launcher recorded it in `peers`, when a
    /// collective fails.
    pub fn watch(&mut self, peers: Arc<Stopped>) {
        self.peers = Some(peers);
    }

    /// From now on, refuse every collective that ProcessGroupNCCL would
    /// refuse on `device` (another device, sparse, non-contiguous, a dtype
    /// NCCL lacks, more than one tensor, mismatched all-gather or
    /// reduce-scatter shapes), with NCCL's message. On a Gloo group this
    /// makes a machine without a GPU catch what would fail on one.
    pub fn enforce_nccl_rules(&self, device: Device) -> Result<()> {
        let (kind, index) = match device {
            Device::Cuda(i) => (1, i as i32),
            _ => (0, 0),
        };
        // SAFETY: group is live.
        if unsafe { ffi::uorch_pg_nccl_rules(self.ptr, kind, index) } != 0 {
            bail!("enabling the NCCL rules on rank {}: {}", self.rank, ffi::last_error());
        }
        Ok(())
    }

    fn work(&self, ptr: *mut ffi::CWork, op: &'static str) -> Result<Work> {
        if ptr.is_null() {
            bail!("{op} on rank {}: {}", self.rank, ffi::last_error());
        }
        Ok(Work { ptr, op, rank: self.rank, timeout: self.timeout, peers: self.peers.clone(), scale: None })
    }

    /// Reduce `tensors` across ranks, in place.
    pub fn all_reduce(&self, tensors: &[&Tensor], op: ReduceOp) -> Result<Work> {
        let p = ptrs(tensors);
        // SAFETY: p holds live tensor pointers for the call.
        let w = unsafe { ffi::uorch_pg_allreduce(self.ptr, p.as_ptr(), p.len() as i32, op.code()) };
        let mut work = self.work(w, "all_reduce")?;
        if op == ReduceOp::Avg {
            work.scale = Some((tensors.iter().map(|t| t.shallow_clone()).collect(), self.size as f64));
        }
        Ok(work)
    }

    /// Copy `root`'s tensors to every rank, in place.
    pub fn broadcast(&self, tensors: &[&Tensor], root: usize) -> Result<Work> {
        let p = ptrs(tensors);
        // SAFETY: as above.
        let w = unsafe { ffi::uorch_pg_broadcast(self.ptr, p.as_ptr(), p.len() as i32, root as i32) };
        self.work(w, "broadcast")
    }

    /// `output` (size × input's elements) receives every rank's `input`, in rank order.
    pub fn all_gather(&self, output: &Tensor, input: &Tensor) -> Result<Work> {
        // SAFETY: both tensors are live for the call.
        let w = unsafe {
            ffi::uorch_pg_allgather(self.ptr, output.as_ptr() as ffi::CTensor, input.as_ptr() as ffi::CTensor)
        };
        self.work(w, "all_gather")
    }

    /// `input` (size × output's elements) is reduced across ranks; rank r gets chunk r.
    pub fn reduce_scatter(&self, output: &Tensor, input: &Tensor, op: ReduceOp) -> Result<Work> {
        // SAFETY: both tensors are live for the call.
        let w = unsafe {
            ffi::uorch_pg_reduce_scatter(
                self.ptr,
                output.as_ptr() as ffi::CTensor,
                input.as_ptr() as ffi::CTensor,
                op.code(),
            )
        };
        let mut work = self.work(w, "reduce_scatter")?;
        if op == ReduceOp::Avg {
            work.scale = Some((vec![output.shallow_clone()], self.size as f64));
        }
        Ok(work)
    }

    pub fn barrier(&self) -> Result<Work> {
        // SAFETY: group is live.
        let w = unsafe { ffi::uorch_pg_barrier(self.ptr) };
        self.work(w, "barrier")
    }
}
