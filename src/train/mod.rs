//! Training: schedules, AdamW, data parallelism (DDP, ZeRO stages 1 and 2),
//! checkpoints, the worker context, encoder pretraining and finetuning.

pub mod adamw;
pub mod checkpoint;
pub mod ddp;
pub mod finetune;
#[cfg(test)]
mod learning_test;
pub mod memory;
pub mod metrics;
pub mod pace;
pub mod preflight;
pub mod pretrain;
pub mod schedule;
pub mod skeleton;
pub mod step_time;
pub mod worker;
pub mod zero;
