//! The NCCL plugin (`csrc/nccl_plugin.cpp`, built on GPU hosts by
//! `scripts/build_nccl_plugin.sh`), loaded at run time: a CPU build of uorch
//! carries no CUDA code, and the plugin brings c10d's ProcessGroupNCCL.

use crate::ffi::c10d as ffi;
use crate::ffi::nccl_plugin::{LastError, MaxAllocated, NewGroup, ABI};
use anyhow::{bail, Context, Result};
use std::os::raw::c_int;
use std::path::Path;
use std::sync::OnceLock;

pub struct Plugin {
    new_group: NewGroup,
    last_error: LastError,
    max_allocated: MaxAllocated,
}

static PLUGIN: OnceLock<std::result::Result<Plugin, String>> = OnceLock::new();

fn open(path: &Path) -> Result<Plugin> {
    if !path.exists() {
        bail!("no NCCL plugin at {} (build it on this GPU host with scripts/build_nccl_plugin.sh)", path.display());
    }
    // SAFETY: loading our own plugin; its initialisers only register with libtorch.
    let lib = unsafe { libloading::Library::new(path) }.with_context(|| format!("loading {}", path.display()))?;
    // SAFETY: symbols with the signatures csrc/nccl_plugin.cpp defines.
    let plugin = unsafe {
        let abi: libloading::Symbol<unsafe extern "C" fn() -> c_int> = lib.get(crate::ffi::nccl_plugin::ABI_SYMBOL)?;
        if abi() != ABI {
            bail!("{}: plugin ABI {} but this uorch expects {ABI}: rebuild it", path.display(), abi());
        }
        Plugin {
            new_group: *lib.get::<NewGroup>(crate::ffi::nccl_plugin::NEW_GROUP_SYMBOL)?,
            last_error: *lib.get::<LastError>(crate::ffi::nccl_plugin::LAST_ERROR_SYMBOL)?,
            max_allocated: *lib.get::<MaxAllocated>(crate::ffi::nccl_plugin::MAX_ALLOCATED_SYMBOL)?,
        }
    };
    std::mem::forget(lib); // used for the life of the process
    Ok(plugin)
}

/// The plugin, loaded once (from `paths::nccl_plugin()`).
pub fn plugin() -> Result<&'static Plugin> {
    PLUGIN
        .get_or_init(|| open(&crate::paths::nccl_plugin()).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The peak bytes the CUDA caching allocator handed out on `device` since
/// the last reset (`torch.cuda.max_memory_allocated`), then, with `reset`, a
/// new peak from now; `None` without the plugin (a CPU host) or on failure.
/// Reads host-side counters: no device synchronisation.
pub fn cuda_max_allocated(device: usize, reset: bool) -> Option<i64> {
    let p = plugin().ok()?;
    // SAFETY: the plugin catches C++ exceptions and returns -1 for them.
    let bytes = unsafe { (p.max_allocated)(device as c_int, c_int::from(reset)) };
    (bytes >= 0).then_some(bytes)
}

impl Plugin {
    pub(super) fn new_group(
        &self,
        store: *mut ffi::CStore,
        rank: usize,
        size: usize,
        timeout_ms: i64,
        device: usize,
    ) -> Result<*mut ffi::CGroup> {
        // SAFETY: store is live; the plugin catches C++ exceptions.
        let ptr = unsafe { (self.new_group)(store, rank as c_int, size as c_int, timeout_ms, device as c_int) };
        if ptr.is_null() {
            // SAFETY: thread-local NUL-terminated string from the plugin.
            let msg = unsafe { std::ffi::CStr::from_ptr((self.last_error)()).to_string_lossy().into_owned() };
            bail!(
                "creating the NCCL group (rank {rank} of {size}, cuda:{device}): {}",
                msg.split("\nException raised from").next().unwrap_or("")
            );
        }
        Ok(ptr)
    }
}
