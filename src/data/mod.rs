//! Datasets: public formats → timeline store → splits, windows, shards, task
//! examples and text prompts.

pub mod catalog;
pub mod formats;
pub mod ingest;
pub mod lines;
pub mod prepare;
pub mod prompt;
pub mod split;
pub mod stats;
pub mod store;
pub mod tasks;
