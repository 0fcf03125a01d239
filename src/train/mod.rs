//! Training: schedules, AdamW, data parallelism, batches, metrics,
//! checkpoints, the worker context and encoder pretraining.

pub mod adamw;
pub mod batches;
pub mod checkpoint;
pub mod ddp;
pub mod finetune;
pub mod metrics;
pub mod pretrain;
pub mod rouge;
pub mod schedule;
pub mod worker;
pub mod zero;
