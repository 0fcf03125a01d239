//! `uorch env`: the facts a bug report needs, like `torch.utils.collect_env`.

use crate::{gpu_info, paths, torch_runtime};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Mangled name of `c10d::ProcessGroupGloo::createDefaultDevice(bool)`: present
/// in `libtorch_cpu.so` exactly when libtorch was built with Gloo.
const GLOO_SYMBOL: &str = "_ZN4c10d16ProcessGroupGloo19createDefaultDeviceEb";

#[derive(Debug, Serialize)]
pub struct EnvReport {
    pub uorch_version: String,
    pub git_commit: String,
    pub libtorch: Libtorch,
    pub cuda: Cuda,
    pub cpu: Cpu,
    pub collectives: Vec<Backend>,
    pub paths: Paths,
}

#[derive(Debug, Serialize)]
pub struct Libtorch {
    pub version: Option<String>,
    pub lib_dir: Option<PathBuf>,
    pub cuda_library: torch_runtime::CudaLibrary,
}

#[derive(Debug, Serialize)]
pub struct Cuda {
    /// As libtorch sees it (`torch.cuda.is_available()`).
    pub available: bool,
    pub device_count: i64,
    pub devices: Vec<gpu_info::GpuDevice>,
    pub driver_version: Option<String>,
    pub cudnn_available: bool,
    pub cudnn_version: Option<String>,
    /// Why the driver could not be asked, when it could not.
    pub driver_note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Cpu {
    pub model: Option<String>,
    pub logical_cores: usize,
    pub torch_threads: i32,
    /// ISA extensions that matter for CPU training speed.
    pub features: Vec<String>,
    /// bf16 compute on CPU: always possible in libtorch, native only with these ISAs.
    pub bf16_native: bool,
    pub mkldnn: bool,
    pub openmp: bool,
}

#[derive(Debug, Serialize)]
pub struct Backend {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Paths {
    pub project_root: PathBuf,
    pub assets: PathBuf,
    pub movielens_100k: Asset,
    pub smollm2_gguf: Asset,
    pub output_root: PathBuf,
    pub tensorboard_python: Asset,
}

#[derive(Debug, Serialize)]
pub struct Asset {
    pub path: PathBuf,
    pub present: bool,
}

impl Asset {
    fn at(path: PathBuf) -> Self {
        let present = path.exists();
        Self { path, present }
    }
}

pub fn collect() -> EnvReport {
    let cuda_library = torch_runtime::init().clone();
    let available = tch::Cuda::is_available();
    let (devices, driver_version, driver_note) = match gpu_info::query() {
        Ok(d) => {
            let v = format!("{}.{}", d.cuda_driver_version / 1000, (d.cuda_driver_version % 1000) / 10);
            (d.devices, Some(v), None)
        }
        Err(e) => (Vec::new(), None, Some(e)),
    };
    let cudnn_available = available && tch::Cuda::cudnn_is_available();
    let cudnn_version = cudnn_available.then(|| {
        let v = tch::utils::version_cudnn();
        format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
    });
    let features = cpu_features();
    let bf16_native = features.iter().any(|f| f == "avx512_bf16" || f == "amx_bf16");
    let nccl_plugin = paths::nccl_plugin();
    let cuda_loaded = matches!(cuda_library, torch_runtime::CudaLibrary::Loaded { .. });
    EnvReport {
        uorch_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: env!("UORCH_GIT_COMMIT").to_string(),
        libtorch: Libtorch { version: torch_runtime::version(), lib_dir: torch_runtime::lib_dir(), cuda_library },
        cuda: Cuda {
            available,
            device_count: if available { tch::Cuda::device_count() } else { 0 },
            devices,
            driver_version,
            cudnn_available,
            cudnn_version,
            driver_note,
        },
        cpu: Cpu {
            model: cpu_model(),
            logical_cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            torch_threads: tch::get_num_threads(),
            features,
            bf16_native,
            mkldnn: tch::utils::has_mkldnn(),
            openmp: tch::utils::has_openmp(),
        },
        collectives: vec![
            {
                let ok = torch_runtime::has_symbol("libtorch_cpu.so", GLOO_SYMBOL);
                Backend {
                    name: "gloo",
                    available: ok,
                    detail: if ok {
                        "built into libtorch_cpu; CPU tensors".into()
                    } else {
                        "libtorch was built without Gloo".into()
                    },
                }
            },
            Backend {
                name: "nccl",
                available: cuda_loaded && available && crate::dist::nccl::plugin().is_ok(),
                detail: match (cuda_loaded && available, nccl_plugin.exists()) {
                    (true, true) => match crate::dist::nccl::plugin() {
                        Ok(_) => format!("plugin {}", nccl_plugin.display()),
                        Err(e) => format!("plugin {} does not load: {e}", nccl_plugin.display()),
                    },
                    (false, _) => "needs CUDA: libtorch_cuda and a GPU".into(),
                    (true, false) => format!(
                        "plugin not built: run scripts/build_nccl_plugin.sh (looked for {})",
                        nccl_plugin.display()
                    ),
                },
            },
        ],
        paths: Paths {
            project_root: paths::project_root(),
            assets: paths::assets_dir(),
            movielens_100k: Asset::at(paths::movielens_100k_dir()),
            smollm2_gguf: Asset::at(paths::smollm2_gguf()),
            output_root: std::env::current_dir().unwrap_or_default().join(crate::config::DEFAULT_OUTPUT_ROOT),
            tensorboard_python: Asset::at(paths::venv_python()),
        },
    }
}

fn cpuinfo_field(name: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.split(':').next().map(str::trim) == Some(name))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn cpu_model() -> Option<String> {
    cpuinfo_field("model name")
}

fn cpu_features() -> Vec<String> {
    const INTERESTING: &[&str] = &["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"];
    let flags = cpuinfo_field("flags").unwrap_or_default();
    let have: std::collections::HashSet<&str> = flags.split_whitespace().collect();
    INTERESTING.iter().filter(|f| have.contains(*f)).map(|f| f.to_string()).collect()
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The human-readable form: aligned `key: value` lines in sections.
pub fn render(r: &EnvReport) -> String {
    let mut s = String::new();
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "unknown".into());
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "unknown".into());
    let asset =
        |a: &Asset| format!("{}{}", a.path.display(), if a.present { "" } else { "  (missing: run make setup)" });
    let mut line = |k: &str, v: String| {
        let _ = writeln!(s, "  {k:<22} {v}");
    };
    line("uorch", format!("{} (commit {})", r.uorch_version, r.git_commit));
    line("libtorch", opt(&r.libtorch.version));
    line("libtorch lib dir", path(&r.libtorch.lib_dir));
    line(
        "libtorch_cuda",
        match &r.libtorch.cuda_library {
            torch_runtime::CudaLibrary::Absent => "not in this libtorch (CPU-only)".into(),
            torch_runtime::CudaLibrary::Loaded { path } => format!("loaded from {}", path.display()),
            torch_runtime::CudaLibrary::Failed { path, error } => format!("{} failed to load: {error}", path.display()),
        },
    );
    line("CUDA available", yes_no(r.cuda.available).into());
    if let Some(v) = &r.cuda.driver_version {
        line("CUDA driver", v.clone());
    }
    for d in &r.cuda.devices {
        line(
            &format!("GPU {}", d.index),
            format!(
                "{} (sm_{}{}, {:.1} GiB, {} SMs, bf16 {})",
                d.name,
                d.compute_capability.0,
                d.compute_capability.1,
                d.memory_bytes as f64 / (1u64 << 30) as f64,
                d.multiprocessors,
                yes_no(d.bf16)
            ),
        );
    }
    if r.cuda.devices.is_empty() {
        line("GPUs", format!("none ({})", r.cuda.driver_note.clone().unwrap_or_else(|| "driver reports 0".into())));
    }
    line("cuDNN", r.cuda.cudnn_version.clone().map(|v| format!("yes ({v})")).unwrap_or_else(|| "no".into()));
    line("CPU", opt(&r.cpu.model));
    line("CPU threads", format!("{} logical cores, torch uses {}", r.cpu.logical_cores, r.cpu.torch_threads));
    line("CPU features", if r.cpu.features.is_empty() { "none of note".into() } else { r.cpu.features.join(" ") });
    line(
        "bf16",
        format!(
            "CPU {}{}",
            if r.cpu.bf16_native { "native" } else { "emulated (no avx512_bf16/amx)" },
            if r.cuda.devices.iter().any(|d| d.bf16) { ", GPU native" } else { "" }
        ),
    );
    line("MKL-DNN / OpenMP", format!("{} / {}", yes_no(r.cpu.mkldnn), yes_no(r.cpu.openmp)));
    for b in &r.collectives {
        line(
            &format!("collective {}", b.name),
            format!("{} ({})", if b.available { "available" } else { "unavailable" }, b.detail),
        );
    }
    line("project root", r.paths.project_root.display().to_string());
    line("MovieLens-100K", asset(&r.paths.movielens_100k));
    line("SmolLM2 GGUF", asset(&r.paths.smollm2_gguf));
    line("TensorBoard python", asset(&r.paths.tensorboard_python));
    line("default output root", r.paths.output_root.display().to_string());
    s
}
