//! uorch: a training orchestrator for USER-LLM (user-history encoders feeding an
//! LLM through cross-attention), across GPUs and trials.

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod dist;
pub mod env_report;
pub mod ffi;
pub mod fsutil;
pub mod gpu_info;
pub mod launch;
pub mod model;
pub mod paths;
pub mod report;
pub mod rng;
pub mod rundir;
pub mod serve;
pub mod sweep;
pub mod task;
pub mod tb;
pub mod torch_runtime;
pub mod train;
