//! The libtorch this process actually runs with, and its CUDA half.
//!
//! The Rust linker drops `libtorch_cuda.so` (nothing references its symbols
//! directly), so a tch binary never sees a GPU unless it loads that library
//! itself. [`init`] does so, once, before any tensor work: it finds the folder of
//! the `libtorch_cpu.so` that the dynamic loader picked (rpath or
//! LD_LIBRARY_PATH) and `dlopen`s the `libtorch_cuda.so` beside it, if present.
//! CUDA's static initialisers then register with libtorch as they do in Python.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What happened to `libtorch_cuda.so` at start-up.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CudaLibrary {
    /// The libtorch in use has no CUDA half (a CPU-only extraction).
    Absent,
    Loaded {
        path: PathBuf,
    },
    /// Present but could not be loaded (e.g. no NVIDIA driver on this host).
    Failed {
        path: PathBuf,
        error: String,
    },
}

static CUDA: OnceLock<CudaLibrary> = OnceLock::new();

/// Load libtorch's CUDA library when the libtorch in use has one. Idempotent;
/// call before the first tch call that may touch a device.
pub fn init() -> &'static CudaLibrary {
    CUDA.get_or_init(|| match lib_dir() {
        None => CudaLibrary::Absent,
        Some(dir) => load_cuda_from(&dir),
    })
}

fn load_cuda_from(dir: &Path) -> CudaLibrary {
    let path = dir.join("libtorch_cuda.so");
    if !path.exists() {
        return CudaLibrary::Absent;
    }
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
    // SAFETY: loading a shared library runs its initialisers; libtorch_cuda's only
    // register CUDA hooks with the libtorch_cpu already loaded in this process.
    match unsafe { libloading::os::unix::Library::open(Some(&path), flags) } {
        Ok(lib) => {
            // Never unloaded: torch keeps pointers into it for the process lifetime.
            std::mem::forget(lib);
            CudaLibrary::Loaded { path }
        }
        Err(e) => CudaLibrary::Failed { path, error: e.to_string() },
    }
}

extern "C" {
    fn uorch_autocast_cuda_bf16() -> std::os::raw::c_int;
}

/// Make CUDA autocast compute in bf16 (libtorch's default is fp16). Call once
/// before the first `tch::autocast` on a GPU.
pub fn autocast_bf16() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: sets a global in libtorch; the shim catches C++ exceptions.
        unsafe { uorch_autocast_cuda_bf16() };
    });
}

/// Run `f` under bf16 autocast on CUDA devices; as is elsewhere.
pub fn with_autocast<T>(device: tch::Device, f: impl FnOnce() -> T) -> T {
    if device.is_cuda() {
        autocast_bf16();
        tch::autocast(true, f)
    } else {
        f()
    }
}

/// A device as PyTorch writes it (`cpu`, `cuda:0`).
pub fn device_name(d: tch::Device) -> String {
    match d {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The machine's logical cores.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Run `f` with libtorch's intra-op thread count at `n`, then set it back.
pub fn with_threads<T>(n: usize, f: impl FnOnce() -> T) -> T {
    let before = tch::get_num_threads();
    tch::set_num_threads(n as i32);
    let out = f();
    tch::set_num_threads(before);
    out
}

/// Folder of the `libtorch_cpu.so` mapped into this process.
pub fn lib_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// Version of the libtorch in use, read from the `torch/version.py` that sits
/// one folder above its `lib/` in both a wheel install and our extraction.
pub fn version() -> Option<String> {
    let dir = lib_dir()?;
    let text = std::fs::read_to_string(dir.parent()?.join("version.py")).ok()?;
    parse_version_py(&text)
}

fn parse_version_py(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.trim_start().starts_with("__version__"))?;
    let value = line.split_once('=')?.1.trim();
    Some(value.trim_matches(|c| c == '\'' || c == '"').to_string())
}

/// Whether a C++ symbol is exported by the loaded libtorch (used to tell which
/// c10d backends were compiled into it).
pub fn has_symbol(library: &str, symbol: &str) -> bool {
    let Some(dir) = lib_dir() else { return false };
    // glibc's RTLD_NOLOAD (not exported by libloading).
    const RTLD_NOLOAD: std::os::raw::c_int = 0x4;
    let flags = libloading::os::unix::RTLD_NOW | RTLD_NOLOAD;
    // SAFETY: RTLD_NOLOAD only returns a handle to an already-loaded library and
    // runs no code; we look a symbol up without calling it.
    unsafe {
        match libloading::os::unix::Library::open(Some(dir.join(library)), flags) {
            Ok(lib) => lib.get::<*const ()>(symbol.as_bytes()).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_py_parses_wheel_format() {
        let text =
            "from typing import Optional\n__all__ = ['__version__']\n__version__ = '2.11.0+cu130'\ncuda = '13.0'\n";
        assert_eq!(parse_version_py(text).as_deref(), Some("2.11.0+cu130"));
        assert_eq!(parse_version_py("x = 1\n"), None);
    }

    #[test]
    fn libtorch_in_use_is_found_and_is_the_pinned_version() {
        // A tch call makes the linker keep libtorch in this test binary.
        assert!(tch::get_num_threads() >= 1);
        init();
        let dir = lib_dir().expect("libtorch_cpu.so is mapped into every uorch process");
        assert!(dir.join("libtorch_cpu.so").exists());
        assert!(version().unwrap().starts_with("2.11.0"), "{:?}", version());
    }
}
