//! Asking a finetuned USER-LLM about a user, and the export that serves it
//! without the training run: one code path for training-time evaluation and
//! for `uorch generate --model EXPORT`, so both give the same answers.

pub mod ask;
pub mod export;
pub mod query;
