//! Declarations of csrc/grad_hooks.cpp: a callback after autograd has
//! accumulated a parameter's gradient.

use std::ffi::c_void;
use std::os::raw::{c_char, c_int};
use torch_sys::C_tensor;

/// `(data, index)`: the gradient of the parameter registered with `index`
/// has been accumulated.
pub type ReadyFn = extern "C" fn(*mut c_void, i64);

extern "C" {
    pub fn uorch_grad_hooks_last_error() -> *const c_char;
    pub fn uorch_grad_hook_set(t: *mut C_tensor, f: Option<ReadyFn>, data: *mut c_void, index: i64) -> c_int;
    pub fn uorch_grad_reset(t: *mut C_tensor) -> c_int;
}

/// The hook library's last error message on this thread.
pub fn last_error() -> String {
    // SAFETY: the library returns a pointer to a thread-local NUL-terminated string.
    unsafe { super::message(uorch_grad_hooks_last_error()) }
}
