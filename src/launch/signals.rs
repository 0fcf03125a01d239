//! Ctrl-C and SIGTERM, counted: the first asks the workers to checkpoint and
//! stop, a deliberate second one stops them at once.

use anyhow::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Count Ctrl-C / SIGTERM. One request often arrives more than once at
/// nearly the same moment (a terminal signals the whole process group; Slurm
/// signals every process of a step; a controller forwards it too), so
/// signals within a second of the last counted one count once: only a
/// deliberate second request stops workers without a checkpoint.
pub fn interrupt_counter() -> Result<Arc<AtomicUsize>> {
    let count = Arc::new(AtomicUsize::new(0));
    let last_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (c, l) = (count.clone(), last_ms.clone());
    ctrlc::set_handler(move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if now.saturating_sub(l.load(Ordering::SeqCst)) >= 1000 {
            c.fetch_add(1, Ordering::SeqCst);
            l.store(now, Ordering::SeqCst);
        }
    })?;
    Ok(count)
}
