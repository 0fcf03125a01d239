//! `uorch bench ...`: measured speed of uorch's pieces, with a reference run
//! in the same invocation where one is available.

pub mod efficiency;
pub mod finetune;
pub mod ingest;
pub mod llm;
pub mod pretrain;
pub mod zero;

/// Peak resident memory of the largest child waited for so far, in bytes.
pub fn children_peak_rss() -> u64 {
    // SAFETY: getrusage fills the struct we pass; no other effects.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru.ru_maxrss as u64 * 1024
    }
}
