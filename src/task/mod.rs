//! The task layer: what training, evaluation and serving share about a task
//! (favorite genre/category, next item, review). The questions and their
//! prompts, the answer texts a model is trained to give, how a model is asked
//! ([`ask::Asker`]), next-item candidates, training and evaluation examples,
//! scoring (accuracy, Recall@K and MRR, ROUGE), its confidence intervals and
//! paired comparisons, and the baselines.

pub mod ask;
pub mod baselines;
pub mod candidates;
pub mod evaluate;
pub mod examples;
pub mod porter;
pub mod prompt;
pub mod ranking;
pub mod rouge;
pub mod stats;
