//! Every `extern "C"` declaration of uorch, one file per C++ file in `csrc/`:
//! [`c10d`] for `csrc/c10d_shim.cpp`, [`recompute`] for `csrc/recompute.cpp`,
//! [`grad_hooks`] for `csrc/grad_hooks.cpp`,
//! [`nccl_plugin`] for the symbols of `csrc/nccl_plugin.cpp` (a library loaded
//! at run time). C++ exceptions never cross into Rust: each function catches
//! them and leaves a message that the module's `last_error` reads.

pub mod c10d;
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
    full.split("\nException raised from").next().unwrap_or("").trim().to_string()
}
