//! The integration tests: one test binary (libtorch is linked once), one
//! module per area. Tests that draw from libtorch's global random-number
//! generator hold [`common::torch_rng`], so tests in other threads cannot
//! draw between a seed and its use.

mod common;

mod architecture;
mod config_cli;
mod data_prepare;
mod data_tasks;
mod dist_gloo;
mod env_cli;
mod eval_reference;
mod evaluation;
mod faults;
mod finetune_cli;
mod finetune_reference;
mod launch_cli;
mod llm_golden;
mod llm_load;
mod pretrain_dist;
mod recompute;
mod report_cli;
mod rouge_golden;
mod slurm;
mod sweep_cli;
mod tb_browser;
mod tensorboard;
mod two_hosts;
mod userllm;
mod zero;
