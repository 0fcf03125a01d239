//! `uorch bench ...`: measured speed of uorch's pieces, with a reference run
//! in the same invocation where one is available.

pub mod ingest;

/// Peak resident memory of the largest child waited for so far, in bytes.
pub fn children_peak_rss() -> u64 {
    // SAFETY: getrusage fills the struct we pass; no other effects.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru.ru_maxrss as u64 * 1024
    }
}

/// A small, fast, seeded generator for synthetic benchmark data.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
