//! Datasets: public formats → timeline store → splits, windows, shards and
//! task examples.

pub mod catalog;
pub mod formats;
pub mod ingest;
pub mod lines;
pub mod prepare;
pub mod split;
pub mod stats;
pub mod store;
pub mod tasks;
