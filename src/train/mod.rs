//! Training: schedules, AdamW, data parallelism (DDP, sharded optimizer),
//! checkpoints, the worker context, encoder pretraining and finetuning.

pub mod adamw;
pub mod checkpoint;
pub mod ddp;
pub mod finetune;
pub mod metrics;
pub mod pretrain;
pub mod schedule;
pub mod skeleton;
pub mod worker;
pub mod zero;
