//! Peak memory of this process over a stretch of work (the step loop), for
//! comparing what the ZeRO stages keep: the resident-set high-water mark
//! (`VmHWM` in /proc/self/status), which Linux resets to the current resident
//! size when `5` is written to /proc/self/clear_refs. On a GPU this counts
//! host memory only.

/// Start a new high-water mark from what is resident now (no-op where the
/// kernel offers no reset); returns that resident size in bytes. Freed heap
/// memory that the allocator still holds is handed back first, so the mark
/// starts from the memory in use.
pub fn reset_peak() -> Option<i64> {
    // SAFETY: malloc_trim only releases free pages of glibc's heap.
    unsafe { libc::malloc_trim(0) };
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_bytes(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS:")
}

/// The resident-set high-water mark since the last [`reset_peak`] (or the
/// start), in bytes; `None` off Linux.
pub fn peak_bytes() -> Option<i64> {
    status_bytes(&std::fs::read_to_string("/proc/self/status").ok()?, "VmHWM:")
}

/// The `field` line of /proc/self/status (`VmHWM:  123456 kB`) in bytes.
fn status_bytes(status: &str, field: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_reads_in_bytes() {
        let status = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(status_bytes(status, "VmHWM:"), Some(2 << 20));
        assert_eq!(status_bytes(status, "VmRSS:"), Some(1024));
        assert_eq!(status_bytes("Name:\tx\n", "VmHWM:"), None);
    }

    #[test]
    fn the_peak_follows_an_allocation_and_a_reset_forgets_it() {
        const BIG: usize = 256 << 20;
        let resident = reset_peak().unwrap();
        let before = peak_bytes().unwrap();
        assert!(before >= resident, "the new mark {before} starts at the resident size {resident}");
        let v = vec![1u8; BIG]; // touched, so resident
        std::hint::black_box(&v);
        drop(v);
        let with = peak_bytes().unwrap();
        assert!(with - before >= (BIG as i64) * 3 / 4, "peak {before} → {with}");
        reset_peak();
        let after = peak_bytes().unwrap();
        assert!(with - after >= (BIG as i64) / 2, "after the reset the peak is {after}, it was {with}");
    }
}
