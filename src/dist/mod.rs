//! Distributed training over PyTorch's c10d: the TCPStore rendezvous and
//! process groups (Gloo on CPU; NCCL on GPU through a plugin built on GPU hosts).

pub mod group;
pub mod nccl;
pub mod rendezvous;
pub mod store;

pub use group::{ProcessGroup, ReduceOp, Work};
pub use store::Store;
