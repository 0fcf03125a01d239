//! `uorch launch`: run a config ([`run_config`]) by starting its workers on
//! this machine ([`topology`], [`supervise`], [`signals`]); each worker
//! process runs the config's stages ([`worker`]). [`gpus`]: which GPUs and
//! ports a launch (or a sweep's trial) gets.

pub mod gpus;
pub mod run_config;
pub mod signals;
pub mod supervise;
pub mod topology;
pub mod worker;

pub use supervise::{launch, Ended};
pub use topology::Topology;
