//! How fast a training stage goes, measured at each logging step over the
//! steps since the last one: examples and tokens per second, the step time
//! and its split ([`super::step_time`]), peak memory, and MFU on a GPU.
//!
//! Everything is counted on the host: examples and tokens from the batches
//! as they are built, FLOPs from the model's cost formula, memory from the
//! kernel's and the CUDA allocator's counters. The ranks combine their
//! figures in two small all-reduces on the control group at the logging
//! step; nothing waits on the device for them.

use super::step_time::{self, Split, PHASES};
use super::worker::Worker;
use anyhow::Result;
use std::sync::OnceLock;
use tch::Device;

/// What one rank's steps processed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Work {
    /// Training examples (pretraining: history windows; finetuning: questions).
    pub examples: f64,
    /// Tokens read: pretraining, the item positions with a target; finetuning,
    /// the prompt and answer tokens of each example (padding not counted).
    pub tokens: f64,
    /// Model FLOPs of forward and backward ([`crate::model::cost`]).
    pub flops: f64,
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, o: Work) {
        self.examples += o.examples;
        self.tokens += o.tokens;
        self.flops += o.flops;
    }
}

/// One logging window's figures, the same on every rank.
#[derive(Debug, Clone, PartialEq)]
pub struct Pace {
    /// All ranks together.
    pub examples_per_s: f64,
    pub tokens_per_s: f64,
    /// Mean wall time of a step (every step of the window).
    pub step_ms: f64,
    /// Mean time per phase of the measured steps (on a GPU, the synchronised
    /// one), averaged over the ranks.
    pub split: Split,
    /// The largest resident-set high-water mark of any rank since the step loop began.
    pub peak_rss_mib: f64,
    /// The largest CUDA allocator peak of any rank since the step loop began (GPU only).
    pub cuda_max_allocated_mib: Option<f64>,
    /// Model FLOPs per second over the peak of the ranks' GPUs (GPU with a known peak only).
    pub mfu: Option<f64>,
}

const MIB: f64 = (1 << 20) as f64;

/// Start the memory high-water marks (RSS, and the CUDA allocator's on a
/// GPU) from what is in use now; returns the resident bytes now.
pub fn reset_peaks(device: Device) -> i64 {
    if let Device::Cuda(i) = device {
        let _ = crate::dist::nccl::cuda_max_allocated(i, true);
    }
    super::memory::reset_peak().unwrap_or(0)
}

/// The peak FLOP/s of this worker's GPU (None on CPU, or for a GPU whose peak is unknown).
fn peak_flops(device: Device) -> Option<f64> {
    static PEAK: OnceLock<Option<f64>> = OnceLock::new();
    let Device::Cuda(i) = device else { return None };
    *PEAK.get_or_init(|| {
        let info = crate::gpu_info::query().ok()?;
        let name = &info.devices.get(i)?.name;
        crate::gpu_info::peak_tflops(name).map(|t| t * 1e12)
    })
}

impl Pace {
    /// At a logging step, on every rank: `work` is this rank's since the last one.
    pub fn measure(w: &Worker, work: Work) -> Result<Pace> {
        let taken = step_time::take();
        let counts = [work.examples, work.tokens, work.flops, taken.wall, f64::from(taken.steps)];
        let all = w.sum(&[&counts[..], &taken.split.seconds[..]].concat())?;
        // The ranks step together: the window lasts the mean of their clocks,
        // and its phases are the mean of theirs (so they add up to its steps).
        let world = w.world as f64;
        let wall = (all[3] / world).max(1e-9);
        let steps = (all[4] / world).max(1.0);
        let split = Split { seconds: [all[5], all[6], all[7], all[8]].map(|s| s / world), ..taken.split };
        let rss = super::memory::peak_bytes().unwrap_or(0) as f64;
        let cuda = match w.device {
            Device::Cuda(i) => crate::dist::nccl::cuda_max_allocated(i, false).map(|b| b as f64),
            _ => None,
        };
        let peaks = w.max(&[rss, cuda.unwrap_or(-1.0)])?;
        let mfu = peak_flops(w.device).map(|peak| all[2] / wall / (peak * world));
        Ok(Pace {
            examples_per_s: all[0] / wall,
            tokens_per_s: all[1] / wall,
            step_ms: wall * 1000.0 / steps,
            split,
            peak_rss_mib: peaks[0] / MIB,
            cuda_max_allocated_mib: (peaks[1] >= 0.0).then_some(peaks[1] / MIB),
            mfu,
        })
    }

    /// The window's TensorBoard scalars under `stage` (`pretrain`, `finetune`).
    pub fn scalars(&self, stage: &str) -> Vec<(String, f32)> {
        let mut s = vec![
            (format!("{stage}/examples_per_s"), self.examples_per_s),
            (format!("{stage}/tokens_per_s"), self.tokens_per_s),
            (format!("{stage}/step_time/step_ms"), self.step_ms),
            (format!("{stage}/memory/peak_rss_mib"), self.peak_rss_mib),
        ];
        if self.split.steps > 0 {
            for p in PHASES {
                s.push((format!("{stage}/step_time/{}_ms", p.name()), self.split.of(p) * 1000.0));
            }
        }
        if let Some(m) = self.cuda_max_allocated_mib {
            s.push((format!("{stage}/memory/cuda_max_allocated_mib"), m));
        }
        if let Some(m) = self.mfu {
            s.push((format!("{stage}/mfu"), m));
        }
        s.into_iter().map(|(k, v)| (k, v as f32)).collect()
    }

    /// For the step's log line: `12.5 ex/s 3400 tok/s 410 ms/step (data 3% fwd-bwd 81% optim 9% comm 7%) 612 MiB`.
    pub fn line(&self) -> String {
        let mut s =
            format!("{:.1} ex/s {:.0} tok/s {:.0} ms/step", self.examples_per_s, self.tokens_per_s, self.step_ms);
        let total = self.split.total();
        if self.split.steps > 0 && total > 0.0 {
            let short = ["data", "fwd-bwd", "optim", "comm"];
            let parts: Vec<String> = PHASES
                .iter()
                .zip(short)
                .map(|(p, n)| format!("{n} {:.0}%", 100.0 * self.split.of(*p) / total))
                .collect();
            s += &format!(" ({})", parts.join(" "));
        }
        s += &format!(" {:.0} MiB", self.peak_rss_mib);
        if let Some(m) = self.cuda_max_allocated_mib {
            s += &format!(" {m:.0} MiB on the GPU");
        }
        if let Some(m) = self.mfu {
            // Tiny test models reach a tiny fraction: keep two significant digits.
            let pct = 100.0 * m;
            s += &if pct >= 0.1 { format!(" MFU {pct:.1}%") } else { format!(" MFU {pct:.1e}%") };
        }
        s
    }
}
