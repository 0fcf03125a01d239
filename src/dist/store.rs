//! c10d's TCPStore: the key-value rendezvous every rank connects to (rank 0
//! serves it), and prefixed views of it.

use crate::ffi::c10d as ffi;
use anyhow::{bail, Result};
use std::ffi::CString;
use std::time::Duration;

pub struct Store {
    pub(super) ptr: *mut ffi::CStore,
    pub timeout: Duration,
}

// SAFETY: c10d stores are thread-safe; the handle is only freed on drop.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: ptr came from the shim and is freed once.
        unsafe { ffi::uorch_store_free(self.ptr) }
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in store keys")
}

impl Store {
    /// Connect to (or, with `is_server`, serve) a TCPStore at `host:port`.
    /// Every operation, and connecting, gives up after `timeout`. A server
    /// made here listens on every interface, as TCPStore does; [`Store::serve`]
    /// listens on one address.
    pub fn tcp(host: &str, port: u16, world_size: usize, is_server: bool, timeout: Duration) -> Result<Self> {
        Self::open(host, port, world_size, is_server, timeout, -1)
    }

    /// Serve a TCPStore on `listener`'s address only (c10d's TCPStore binds
    /// every interface unless handed a socket).
    pub fn serve(listener: std::net::TcpListener, world_size: usize, timeout: Duration) -> Result<Self> {
        use std::os::fd::IntoRawFd;
        let addr = listener.local_addr()?;
        // The store owns the socket from here on.
        let fd = listener.into_raw_fd();
        Self::open(&addr.ip().to_string(), addr.port(), world_size, true, timeout, fd)
    }

    fn open(host: &str, port: u16, world_size: usize, is_server: bool, timeout: Duration, fd: i32) -> Result<Self> {
        // SAFETY: valid C strings; the shim catches C++ exceptions.
        let ptr = unsafe {
            ffi::uorch_tcpstore_new(
                cstr(host).as_ptr(),
                port as i32,
                world_size as i32,
                is_server as i32,
                timeout.as_millis() as i64,
                fd,
            )
        };
        // On failure the socket is left open: whether TCPStore had taken it
        // over before it threw is unknown, and closing it twice could close
        // another file opened meanwhile.
        if ptr.is_null() {
            bail!(
                "TCPStore at {host}:{port} ({}): {}",
                if is_server { "serving" } else { "connecting" },
                ffi::last_error()
            );
        }
        Ok(Self { ptr, timeout })
    }

    /// A view whose keys are all prefixed with `prefix/` (one per process group).
    pub fn prefixed(&self, prefix: &str) -> Result<Store> {
        // SAFETY: self.ptr is live; the prefix store keeps its own reference.
        let ptr = unsafe { ffi::uorch_prefixstore_new(cstr(prefix).as_ptr(), self.ptr) };
        if ptr.is_null() {
            bail!("prefix store {prefix}: {}", ffi::last_error());
        }
        Ok(Store { ptr, timeout: self.timeout })
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        // SAFETY: value is a live slice.
        if unsafe { ffi::uorch_store_set(self.ptr, cstr(key).as_ptr(), value.as_ptr(), value.len()) } != 0 {
            bail!("store set {key}: {}", ffi::last_error());
        }
        Ok(())
    }

    /// The value of `key`, waiting up to the store's timeout for it to be set.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        let mut out: *mut u8 = std::ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: out/len are written by the shim on success.
        if unsafe { ffi::uorch_store_get(self.ptr, cstr(key).as_ptr(), &mut out, &mut len) } != 0 {
            bail!("store get {key} (waited up to {:?}): {}", self.timeout, ffi::last_error());
        }
        // SAFETY: the shim malloc'd `len` bytes at `out`; we copy, then free them.
        let v = unsafe { std::slice::from_raw_parts(out, len).to_vec() };
        unsafe { ffi::uorch_free(out as *mut _) };
        Ok(v)
    }

    /// Atomically add `delta` to an integer key; returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        let mut out = 0;
        // SAFETY: out is written on success.
        if unsafe { ffi::uorch_store_add(self.ptr, cstr(key).as_ptr(), delta, &mut out) } != 0 {
            bail!("store add {key}: {}", ffi::last_error());
        }
        Ok(out)
    }

    /// Whether every key is set, at once.
    pub fn check(&self, keys: &[&str]) -> Result<bool> {
        let owned: Vec<CString> = keys.iter().map(|k| cstr(k)).collect();
        let ptrs: Vec<*const std::os::raw::c_char> = owned.iter().map(|k| k.as_ptr()).collect();
        let mut present = 0;
        // SAFETY: ptrs point into `owned`, alive for the call; present is written on success.
        if unsafe { ffi::uorch_store_check(self.ptr, ptrs.as_ptr(), ptrs.len() as i32, &mut present) } != 0 {
            bail!("store check {keys:?}: {}", ffi::last_error());
        }
        Ok(present != 0)
    }

    /// Wait until every key is set, or fail after `timeout`.
    pub fn wait(&self, keys: &[&str], timeout: Duration) -> Result<()> {
        let owned: Vec<CString> = keys.iter().map(|k| cstr(k)).collect();
        let ptrs: Vec<*const std::os::raw::c_char> = owned.iter().map(|k| k.as_ptr()).collect();
        // SAFETY: ptrs point into `owned`, alive for the call.
        if unsafe { ffi::uorch_store_wait(self.ptr, ptrs.as_ptr(), ptrs.len() as i32, timeout.as_millis() as i64) } != 0
        {
            bail!("store wait for {keys:?} (timeout {timeout:?}): {}", ffi::last_error());
        }
        Ok(())
    }
}
