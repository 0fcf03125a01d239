//! The symbols of csrc/nccl_plugin.cpp, a shared library built on GPU hosts
//! (scripts/build_nccl_plugin.sh) and loaded at run time by [`crate::dist::nccl`]:
//! their names and signatures, and the ABI version both sides agree on.

use super::c10d::{CGroup, CStore};
use std::os::raw::{c_char, c_int};

/// `uorch_pg_nccl_new(store, rank, size, timeout_ms, device)`.
pub type NewGroup = unsafe extern "C" fn(*mut CStore, c_int, c_int, i64, c_int) -> *mut CGroup;
/// `uorch_nccl_last_error()`: the plugin's thread-local error message.
pub type LastError = unsafe extern "C" fn() -> *const c_char;

/// `uorch_cuda_max_allocated(device, reset)`: the CUDA caching allocator's
/// peak allocated bytes since the last reset (-1 on failure), resetting it
/// when `reset` is not 0.
pub type MaxAllocated = unsafe extern "C" fn(c_int, c_int) -> i64;

/// The plugin's `uorch_nccl_plugin_abi()` must return this (2: with
/// `uorch_cuda_max_allocated`).
pub const ABI: c_int = 2;
pub const ABI_SYMBOL: &[u8] = b"uorch_nccl_plugin_abi";
pub const NEW_GROUP_SYMBOL: &[u8] = b"uorch_pg_nccl_new";
pub const LAST_ERROR_SYMBOL: &[u8] = b"uorch_nccl_last_error";
pub const MAX_ALLOCATED_SYMBOL: &[u8] = b"uorch_cuda_max_allocated";
