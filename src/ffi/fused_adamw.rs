//! Declarations of csrc/fused_adamw.cpp: ATen's fused AdamW kernel.

use std::os::raw::{c_char, c_int};
use torch_sys::C_tensor;

extern "C" {
    pub fn uorch_fused_adamw_last_error() -> *const c_char;
    #[allow(clippy::too_many_arguments)]
    pub fn uorch_fused_adamw(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        n: i64,
        step: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> c_int;
}

/// The fused AdamW library's last error message on this thread.
pub fn last_error() -> String {
    // SAFETY: the library returns a pointer to a thread-local NUL-terminated string.
    unsafe { super::message(uorch_fused_adamw_last_error()) }
}
