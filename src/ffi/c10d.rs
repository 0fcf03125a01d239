//! Declarations of csrc/c10d_shim.cpp: the TCPStore, process groups and
//! collectives, with their thread-local error message.

use std::os::raw::{c_char, c_int, c_void};

/// Opaque C++ objects.
#[repr(C)]
pub struct CStore {
    _p: [u8; 0],
}
#[repr(C)]
pub struct CGroup {
    _p: [u8; 0],
}
#[repr(C)]
pub struct CWork {
    _p: [u8; 0],
}

/// `torch::Tensor*`, as tch's `Tensor::as_mut_ptr` gives it.
pub type CTensor = *mut torch_sys::C_tensor;

extern "C" {
    pub fn uorch_last_error() -> *const c_char;
    pub fn uorch_init_logging();
    pub fn uorch_tcpstore_new(
        host: *const c_char,
        port: c_int,
        world: c_int,
        is_server: c_int,
        timeout_ms: i64,
        listen_fd: c_int,
    ) -> *mut CStore;
    pub fn uorch_prefixstore_new(prefix: *const c_char, base: *mut CStore) -> *mut CStore;
    pub fn uorch_store_free(s: *mut CStore);
    pub fn uorch_store_set(s: *mut CStore, key: *const c_char, data: *const u8, len: usize) -> c_int;
    pub fn uorch_store_get(s: *mut CStore, key: *const c_char, out: *mut *mut u8, len: *mut usize) -> c_int;
    pub fn uorch_store_add(s: *mut CStore, key: *const c_char, delta: i64, out: *mut i64) -> c_int;
    pub fn uorch_store_check(s: *mut CStore, keys: *const *const c_char, n: c_int, present: *mut c_int) -> c_int;
    pub fn uorch_store_wait(s: *mut CStore, keys: *const *const c_char, n: c_int, timeout_ms: i64) -> c_int;
    pub fn uorch_free(p: *mut c_void);
    pub fn uorch_pg_gloo_new(
        s: *mut CStore,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        hostname: *const c_char,
        interfaces: *const c_char,
    ) -> *mut CGroup;
    pub fn uorch_pg_free(pg: *mut CGroup);
    pub fn uorch_pg_nccl_rules(pg: *mut CGroup, device_type: c_int, device_index: c_int) -> c_int;
    pub fn uorch_pg_allreduce(pg: *mut CGroup, ts: *const CTensor, n: c_int, op: c_int) -> *mut CWork;
    pub fn uorch_pg_broadcast(pg: *mut CGroup, ts: *const CTensor, n: c_int, root: c_int) -> *mut CWork;
    pub fn uorch_pg_allgather(pg: *mut CGroup, output: CTensor, input: CTensor) -> *mut CWork;
    pub fn uorch_pg_reduce_scatter(pg: *mut CGroup, output: CTensor, input: CTensor, op: c_int) -> *mut CWork;
    pub fn uorch_pg_barrier(pg: *mut CGroup) -> *mut CWork;
    pub fn uorch_work_wait(w: *mut CWork, timeout_ms: i64) -> c_int;
    pub fn uorch_work_free(w: *mut CWork);
}

/// The shim's last error message on this thread, without the C++ backtrace
/// that c10 appends.
pub fn last_error() -> String {
    // SAFETY: the shim returns a pointer to a thread-local NUL-terminated string.
    unsafe { super::message(uorch_last_error()) }
}
