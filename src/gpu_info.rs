//! GPU facts that libtorch does not expose through tch (device names, compute
//! capability, memory), read from the NVIDIA driver API (`libcuda.so.1`), whose
//! entry points are stable across CUDA versions. Absent driver = no GPUs.

use libloading::{Library, Symbol};
use std::os::raw::{c_char, c_int, c_uint};

#[derive(Debug, Clone, serde::Serialize)]
pub struct GpuDevice {
    pub index: usize,
    pub name: String,
    /// (major, minor), e.g. (9, 0) for Hopper.
    pub compute_capability: (i32, i32),
    pub memory_bytes: u64,
    pub multiprocessors: i32,
    /// Native bf16 matrix units: compute capability 8.0 (Ampere) or newer.
    pub bf16: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DriverInfo {
    /// e.g. 13000 for CUDA 13.0, as `cuDriverGetVersion` reports it.
    pub cuda_driver_version: i32,
    pub devices: Vec<GpuDevice>,
}

/// Peak dense bf16 rate of the H200: what an 8192³ bf16 matmul reaches
/// there, measured (781.5 TFLOP/s from a tch 0.24 binary, 781.3 from
/// PyTorch), not the datasheet's figure; see the README's GPUs section.
pub const H200_PEAK_TFLOPS: f64 = 781.0;

/// The peak rate MFU divides by on a GPU named `name`, in TFLOP/s:
/// `UORCH_PEAK_TFLOPS` when set (any GPU), else the measured figure of a GPU
/// uorch knows (the H200); `None` otherwise (no MFU is then reported).
pub fn peak_tflops(name: &str) -> Option<f64> {
    if let Some(v) = std::env::var("UORCH_PEAK_TFLOPS").ok().and_then(|v| v.parse::<f64>().ok()) {
        return (v > 0.0).then_some(v);
    }
    name.contains("H200").then_some(H200_PEAK_TFLOPS)
}

const ATTR_MULTIPROCESSOR_COUNT: c_int = 16;
const ATTR_CC_MAJOR: c_int = 75;
const ATTR_CC_MINOR: c_int = 76;

/// Query the driver. `Err` says why there is no answer (no driver, init failed).
pub fn query() -> Result<DriverInfo, String> {
    // SAFETY: libcuda is the NVIDIA driver's user-space library; we call
    // documented C entry points with the argument types of cuda.h.
    unsafe {
        let lib = Library::new("libcuda.so.1").map_err(|e| format!("no NVIDIA driver library: {e}"))?;
        let check = |what: &str, rc: c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(format!("{what} failed with CUresult {rc}"))
            }
        };
        let sym = |name: &str| -> Result<Symbol<'_, *const ()>, String> {
            lib.get(name.as_bytes()).map_err(|e| format!("{name}: {e}"))
        };
        let cu_init: extern "C" fn(c_uint) -> c_int = std::mem::transmute(*sym("cuInit")?);
        let cu_driver_version: extern "C" fn(*mut c_int) -> c_int = std::mem::transmute(*sym("cuDriverGetVersion")?);
        let cu_count: extern "C" fn(*mut c_int) -> c_int = std::mem::transmute(*sym("cuDeviceGetCount")?);
        let cu_get: extern "C" fn(*mut c_int, c_int) -> c_int = std::mem::transmute(*sym("cuDeviceGet")?);
        let cu_name: extern "C" fn(*mut c_char, c_int, c_int) -> c_int = std::mem::transmute(*sym("cuDeviceGetName")?);
        let cu_attr: extern "C" fn(*mut c_int, c_int, c_int) -> c_int =
            std::mem::transmute(*sym("cuDeviceGetAttribute")?);
        let cu_mem: extern "C" fn(*mut usize, c_int) -> c_int = std::mem::transmute(*sym("cuDeviceTotalMem_v2")?);

        check("cuInit", cu_init(0))?;
        let mut version = 0;
        check("cuDriverGetVersion", cu_driver_version(&mut version))?;
        let mut count = 0;
        check("cuDeviceGetCount", cu_count(&mut count))?;
        let mut devices = Vec::new();
        for ordinal in 0..count {
            let mut dev = 0;
            check("cuDeviceGet", cu_get(&mut dev, ordinal))?;
            let mut name = [0 as c_char; 256];
            check("cuDeviceGetName", cu_name(name.as_mut_ptr(), name.len() as c_int, dev))?;
            let name = std::ffi::CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
            let attr = |a| {
                let mut v = 0;
                check("cuDeviceGetAttribute", cu_attr(&mut v, a, dev)).map(|_| v)
            };
            let (major, minor) = (attr(ATTR_CC_MAJOR)?, attr(ATTR_CC_MINOR)?);
            let mut mem = 0usize;
            check("cuDeviceTotalMem", cu_mem(&mut mem, dev))?;
            devices.push(GpuDevice {
                index: ordinal as usize,
                name,
                compute_capability: (major, minor),
                memory_bytes: mem as u64,
                multiprocessors: attr(ATTR_MULTIPROCESSOR_COUNT)?,
                bf16: major >= 8,
            });
        }
        Ok(DriverInfo { cuda_driver_version: version, devices })
    }
}
