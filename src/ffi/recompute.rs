//! Declarations of csrc/recompute.cpp: activation checkpointing as a C++
//! autograd function that calls back into Rust for the segment it recomputes.

use std::ffi::c_void;
use std::os::raw::c_char;
use torch_sys::C_tensor;

/// The segment callback: `(data, hidden, user)` → a new tensor owned by the
/// caller, or null when the segment failed.
pub type SegmentFn = extern "C" fn(*mut c_void, *mut C_tensor, *mut C_tensor) -> *mut C_tensor;

extern "C" {
    pub fn uorch_recompute_last_error() -> *const c_char;
    pub fn uorch_checkpoint(h: *mut C_tensor, u: *mut C_tensor, f: SegmentFn, data: *mut c_void) -> *mut C_tensor;
}

/// The recomputation library's last error message on this thread.
pub fn last_error() -> String {
    // SAFETY: the library returns a pointer to a thread-local NUL-terminated string.
    unsafe { super::message(uorch_recompute_last_error()) }
}
