//! Which GPUs this process was given, how many workers a launch starts on
//! them, how a sweep splits them into trial slots, and which rendezvous ports
//! its stages use: pure functions of the environment's values, so each rule
//! has a table test ([`detected`] alone reads the machine).
//!
//! - `CUDA_VISIBLE_DEVICES`, when set, is the list (indices, `GPU-…` UUIDs or
//!   `MIG-…` ids, as CUDA reads them); a trial gets a sub-list of those very
//!   names, so under `CUDA_VISIBLE_DEVICES=4,5` trials run on GPUs 4 and 5.
//! - Else, under Slurm, the job's GPUs (`SLURM_STEP_GPUS`, else
//!   `SLURM_JOB_GPUS`): a node that Slurm does not confine still gives the
//!   job only its own GPUs.
//! - Else every device CUDA reports, `0..count`.

use crate::config::run::{Backend, Nproc};

/// What [`visible`] reads, as the environment holds it.
#[derive(Debug, Default, Clone)]
pub struct GpuEnv {
    pub cuda_visible_devices: Option<String>,
    pub slurm_step_gpus: Option<String>,
    pub slurm_job_gpus: Option<String>,
    /// The devices CUDA reports to this process (0 without a GPU).
    pub device_count: usize,
}

impl GpuEnv {
    /// The values of this process's environment, with `device_count` devices.
    pub fn read(device_count: usize) -> GpuEnv {
        let var = |name: &str| std::env::var(name).ok();
        GpuEnv {
            cuda_visible_devices: var("CUDA_VISIBLE_DEVICES"),
            slurm_step_gpus: var("SLURM_STEP_GPUS"),
            slurm_job_gpus: var("SLURM_JOB_GPUS"),
            device_count,
        }
    }
}

/// The GPUs this process was given ([`visible`] over this environment and
/// the devices CUDA reports). `UORCH_GPU_COUNT` pretends that many devices,
/// for tests of planning on machines without GPUs.
pub fn detected() -> Vec<String> {
    let count = std::env::var("UORCH_GPU_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        if tch::Cuda::is_available() {
            tch::Cuda::device_count() as usize
        } else {
            0
        }
    });
    visible(&GpuEnv::read(count))
}

/// The workers one machine starts: `dist.nproc` resolved against `gpus`
/// visible GPUs, and checked against the backend (NCCL needs a GPU per rank).
pub fn workers(nproc: &Nproc, backend: Backend, gpus: usize) -> Result<usize, String> {
    let n = nproc.resolve(gpus).map_err(|e| format!("dist.nproc: {e}"))?;
    match backend {
        Backend::Nccl if gpus == 0 => {
            Err("dist.backend: nccl needs a GPU, and this machine has none (use auto or gloo)".into())
        }
        Backend::Nccl | Backend::Auto if gpus > 0 && n > gpus => Err(format!(
            "dist.nproc: {n} workers on {gpus} GPU(s), and NCCL refuses two ranks on one GPU \
             (set dist.backend: gloo to share GPUs, or at most {gpus} workers)"
        )),
        _ => Ok(n),
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
}

/// The GPUs this process may use, by the names a child's
/// `CUDA_VISIBLE_DEVICES` takes; at most `device_count` of them (CUDA
/// ignores the rest).
pub fn visible(env: &GpuEnv) -> Vec<String> {
    if env.device_count == 0 {
        return Vec::new();
    }
    let slurm = env.slurm_step_gpus.as_deref().or(env.slurm_job_gpus.as_deref());
    let mut names = match (env.cuda_visible_devices.as_deref(), slurm) {
        (Some(cvd), _) => list(cvd),
        (None, Some(slurm)) => list(slurm),
        (None, None) => (0..env.device_count).map(|i| i.to_string()).collect(),
    };
    names.truncate(env.device_count);
    names
}

/// Trial slots over `gpus`: `per_trial` each, as many as fit (at least one,
/// which then gets what there is); one slot across machines, where every
/// stage spans them all.
pub fn slots(gpus: &[String], per_trial: usize, nnodes: usize) -> Vec<Vec<String>> {
    let per_trial = per_trial.max(1);
    let k = if nnodes > 1 { 1 } else { (gpus.len() / per_trial).max(1) };
    (0..k).map(|i| gpus.iter().skip(i * per_trial).take(per_trial).cloned().collect()).collect()
}

/// Rendezvous ports of multi-machine stages lie in `FIRST_PORT..FIRST_PORT +
/// PORTS`: below Linux's ephemeral range (32768 and up), so no connection
/// takes one by chance.
pub const FIRST_PORT: u16 = 20000;
pub const PORTS: u16 = 12000;

/// The rendezvous port of stage `index` of a multi-machine sweep: `given`
/// plus the index when the user named a port, else one derived from the
/// Slurm job (every machine of the job derives the same one, and two jobs
/// on one node get different ones), else from the experiment folder.
pub fn stage_port(given: Option<u16>, slurm_job: Option<u64>, experiment: &str, index: usize) -> u16 {
    if let Some(p) = given {
        return p.wrapping_add(index as u16);
    }
    let seed = match slurm_job {
        Some(job) => job,
        // FNV-1a of the folder's path: stable across machines and runs.
        None => experiment.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)),
    };
    FIRST_PORT + ((seed.wrapping_add(index as u64)) % PORTS as u64) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn visible_gpus_table() {
        let s = |v: Option<&str>| v.map(str::to_string);
        let env = |cvd, step, job, n| GpuEnv {
            cuda_visible_devices: s(cvd),
            slurm_step_gpus: s(step),
            slurm_job_gpus: s(job),
            device_count: n,
        };
        let rows: Vec<(GpuEnv, Vec<String>, &str)> = vec![
            (env(None, None, None, 0), names(&[]), "no GPU"),
            (env(None, None, None, 4), names(&["0", "1", "2", "3"]), "every device"),
            (env(Some("4,5"), None, None, 2), names(&["4", "5"]), "the inherited list, not 0 and 1"),
            (env(Some(" 4, 5 "), None, None, 2), names(&["4", "5"]), "spaces"),
            (env(Some(""), None, None, 0), names(&[]), "an empty list hides every GPU"),
            (env(Some("GPU-8f1c,GPU-77aa"), None, None, 2), names(&["GPU-8f1c", "GPU-77aa"]), "UUIDs"),
            (env(Some("MIG-0a1b"), None, None, 1), names(&["MIG-0a1b"]), "a MIG instance"),
            (env(Some("0,1,2,3"), None, None, 2), names(&["0", "1"]), "more names than devices"),
            (env(Some("6,7"), Some("2,3"), None, 2), names(&["6", "7"]), "CUDA_VISIBLE_DEVICES wins"),
            (env(None, Some("2,3"), Some("1,2,3"), 8), names(&["2", "3"]), "an unconfined node: the step's"),
            (env(None, None, Some("1,3"), 8), names(&["1", "3"]), "an unconfined node: the job's"),
        ];
        for (e, want, why) in rows {
            assert_eq!(visible(&e), want, "{why}");
        }
    }

    #[test]
    fn workers_table() {
        let (auto, gpu, n) = (Nproc::Named("auto".into()), Nproc::Named("gpu".into()), Nproc::Count);
        // (dist.nproc, dist.backend, visible GPUs, workers or the error's words, why)
        type Row = (Nproc, Backend, usize, Result<usize, &'static str>, &'static str);
        let rows: Vec<Row> = vec![
            (auto.clone(), Backend::Auto, 8, Ok(8), "auto: one per GPU"),
            (auto.clone(), Backend::Auto, 0, Ok(1), "auto without GPUs: the CPU plan, one worker"),
            (gpu.clone(), Backend::Auto, 2, Ok(2), "gpu: one per GPU"),
            (gpu.clone(), Backend::Auto, 0, Err("`gpu` needs a visible GPU"), "gpu without GPUs"),
            (n(2), Backend::Auto, 0, Ok(2), "a count on CPU"),
            (n(4), Backend::Auto, 8, Ok(4), "fewer workers than GPUs"),
            (n(2), Backend::Auto, 1, Err("NCCL refuses two ranks on one GPU"), "auto is NCCL on GPUs"),
            (n(2), Backend::Nccl, 1, Err("NCCL refuses two ranks on one GPU"), "nccl, two on one"),
            (n(2), Backend::Gloo, 1, Ok(2), "Gloo shares one GPU"),
            (n(1), Backend::Nccl, 0, Err("nccl needs a GPU"), "nccl without GPUs"),
            (Nproc::Named("many".into()), Backend::Auto, 0, Err("a worker count, auto or gpu"), "a typo"),
        ];
        for (nproc, backend, gpus, want, why) in rows {
            match (workers(&nproc, backend, gpus), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{why}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{why}: {e}"),
                (got, w) => panic!("{why}: got {got:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn trial_slots_table() {
        let g = names(&["4", "5", "6", "7"]);
        let rows: Vec<(usize, usize, Vec<Vec<String>>, &str)> = vec![
            (1, 1, vec![names(&["4"]), names(&["5"]), names(&["6"]), names(&["7"])], "one GPU per trial"),
            (2, 1, vec![names(&["4", "5"]), names(&["6", "7"])], "pairs, in order"),
            (3, 1, vec![names(&["4", "5", "6"])], "what does not fill a slot stays idle"),
            (8, 1, vec![names(&["4", "5", "6", "7"])], "more than there are: one slot with all"),
            (1, 2, vec![names(&["4"])], "across machines: one slot"),
        ];
        for (per, nnodes, want, why) in rows {
            assert_eq!(slots(&g, per, nnodes), want, "{why}");
        }
    }

    #[test]
    fn stage_ports_table() {
        let a = stage_port(None, None, "/exp/a", 0);
        let rows: Vec<(u16, u16, &str)> = vec![
            (stage_port(Some(29400), Some(7), "/exp/a", 3), 29403, "a given port wins, plus the index"),
            (stage_port(None, Some(123), "/exp/a", 0), FIRST_PORT + 123, "from the Slurm job"),
            (stage_port(None, Some(123), "/exp/b", 2), FIRST_PORT + 125, "same job, any folder, next stages"),
            (stage_port(None, Some(PORTS as u64), "/exp/a", 0), FIRST_PORT, "wraps within the range"),
            (stage_port(None, None, "/exp/a", 0), a, "the folder's port is stable"),
            (stage_port(None, None, "/exp/a", 1), FIRST_PORT + (a - FIRST_PORT + 1) % PORTS, "then the next"),
        ];
        for (got, want, why) in rows {
            assert_eq!(got, want, "{why}");
        }
        assert_ne!(stage_port(None, Some(1), "/x", 0), stage_port(None, Some(2), "/x", 0), "two jobs differ");
        assert_ne!(a, stage_port(None, None, "/exp/b", 0), "two folders differ");
        for i in 0..100 {
            let p = stage_port(None, None, "/exp/a", i);
            assert!((FIRST_PORT..FIRST_PORT + PORTS).contains(&p));
        }
    }
}
