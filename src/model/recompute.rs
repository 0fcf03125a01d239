//! Activation checkpointing: a segment of the forward pass (one decoder
//! layer with its cross-attention block) keeps only its inputs; backward
//! recomputes it (csrc/recompute.cpp), trading about one extra forward for
//! not storing the segment's activations. The random-number state of the
//! forward is replayed, so dropout masks match.

use crate::ffi::recompute::{last_error, uorch_checkpoint};
use std::cell::RefCell;
use std::ffi::c_void;
use tch::Tensor;
use torch_sys::C_tensor;

type Segment = dyn Fn(&Tensor, &Tensor) -> Tensor;
/// A segment before its lifetime is erased.
type BorrowingSegment<'a> = dyn Fn(&Tensor, &Tensor) -> Tensor + 'a;

extern "C" fn call_segment(data: *mut c_void, h: *mut C_tensor, u: *mut C_tensor) -> *mut C_tensor {
    // SAFETY: `data` is a `Box<Segment>` owned by a live `Segments` (see `run`);
    // the tensor pointers are valid for this call and cloned shallowly.
    let seg = unsafe { &*(data as *const Box<Segment>) };
    let (h, u) = unsafe { (Tensor::clone_from_ptr(h), Tensor::clone_from_ptr(u)) };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| seg(&h, &u))) {
        Ok(mut out) => {
            let p = out.as_mut_ptr();
            std::mem::forget(out);
            p
        }
        Err(_) => std::ptr::null_mut(),
    }
}

/// The segments of the forward passes whose backward has not run yet.
#[derive(Default)]
pub struct Segments {
    // The outer box keeps each closure's address fixed while C++ holds it;
    // the inner one makes that address a thin pointer, which is what crosses
    // the FFI as `void*`.
    #[allow(clippy::vec_box)]
    live: RefCell<Vec<Box<Box<Segment>>>>,
}

impl Segments {
    /// `f(h, user)` without keeping its activations. The input `h` is made to
    /// require gradients so parameters inside the segment get theirs even when
    /// nothing before it trains.
    ///
    /// # Safety
    /// `f` may borrow (e.g. the model's layers) for less than `'static`: the
    /// caller keeps what it borrows alive, and calls [`release`](Self::release)
    /// only after the backward pass through the result (or after dropping it).
    pub unsafe fn run<'a>(&self, h: &Tensor, user: &Tensor, f: impl Fn(&Tensor, &Tensor) -> Tensor + 'a) -> Tensor {
        let h = if h.requires_grad() { h.shallow_clone() } else { h.detach().set_requires_grad(true) };
        let boxed: Box<Box<BorrowingSegment<'a>>> = Box::new(Box::new(f));
        // SAFETY: lifetime erased as documented above.
        let boxed: Box<Box<Segment>> = std::mem::transmute(boxed);
        let data = &*boxed as *const Box<Segment> as *mut c_void;
        self.live.borrow_mut().push(boxed);
        let (mut h, mut u) = (h, user.shallow_clone());
        let out = uorch_checkpoint(h.as_mut_ptr(), u.as_mut_ptr(), call_segment, data);
        if out.is_null() {
            panic!("activation checkpointing failed: {}", last_error());
        }
        Tensor::from_ptr(out)
    }

    /// Drop the segments (after backward).
    pub fn release(&self) {
        self.live.borrow_mut().clear();
    }
}
