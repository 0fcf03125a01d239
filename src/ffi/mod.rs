//! Every `extern "C"` declaration of uorch, one file per C++ file in `csrc/`:
//! [`c10d`] for `csrc/c10d_shim.cpp`, [`recompute`] for `csrc/recompute.cpp`,
//! [`grad_hooks`] for `csrc/grad_hooks.cpp`, [`fused_adamw`] for `csrc/fused_adamw.cpp`,
//! [`nccl_plugin`] for the symbols of `csrc/nccl_plugin.cpp` (a library loaded
//! at run time). C++ exceptions never cross into Rust: each function catches
//! them and leaves a message that the module's `last_error` reads.

pub mod c10d;
pub mod fused_adamw;
pub mod grad_hooks;
pub mod nccl_plugin;
pub mod recompute;

/// A C++ error message as Rust text, without the C++ backtrace that c10
/// appends to its exceptions.
///
/// # Safety
/// `ptr` is a NUL-terminated string that stays valid for this call.
pub(crate) unsafe fn message(ptr: *const std::os::raw::c_char) -> String {
    let full = std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned();
    if debug_logs() {
        eprintln!("debug: C++ error in full: {full}");
    }
    full.split("\nException raised from").next().unwrap_or("").trim().to_string()
}

/// `UORCH_LOG=debug`: C++ errors in full, with their stack traces, and
/// libtorch's own log lines.
pub fn debug_logs() -> bool {
    std::env::var("UORCH_LOG").is_ok_and(|v| v.eq_ignore_ascii_case("debug"))
}

/// libtorch's C++ log lines are for debugging (c10d's connection retries
/// print warnings with a C++ stack trace, which uorch's own messages say
/// better): shown at the level `TORCH_CPP_LOG_LEVEL` names, all of them with
/// `UORCH_LOG=debug`, otherwise only fatal ones. Call before any thread
/// starts (it sets an environment variable, which the workers inherit).
pub fn quiet_cpp_logs() {
    if std::env::var_os("TORCH_CPP_LOG_LEVEL").is_none() {
        std::env::set_var("TORCH_CPP_LOG_LEVEL", if debug_logs() { "INFO" } else { "FATAL" });
    }
    // SAFETY: reads the environment and sets c10's log level.
    unsafe { c10d::uorch_init_logging() }
}
