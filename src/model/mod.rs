//! Models: the Llama-family decoder, its loading from Hugging Face folders and
//! GGUF files, and tokenization.

pub mod assemble;
pub mod batches;
pub mod cost;
pub mod encoder;
pub mod generate;
pub mod gguf;
pub mod integration;
pub mod llama;
pub mod lora;
pub mod perceiver;
pub mod recompute;
pub mod scoring;
pub mod tiny;
pub mod tokenizer;
pub mod userllm;
pub mod weights;
pub mod xattn;
