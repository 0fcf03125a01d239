//! Learning-rate schedule: linear warm-up from 0, then cosine decay to a
//! floor of 10% of the peak at the last step.

pub const FLOOR: f64 = 0.1;

/// Learning rate for optimizer step `step` (0-based) of `total`.
pub fn lr_at(step: u64, total: u64, warmup: u64, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    peak * (FLOOR + (1.0 - FLOOR) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_is_linear_and_decay_ends_at_the_floor() {
        assert_eq!(lr_at(0, 100, 10, 1.0), 0.1);
        assert_eq!(lr_at(9, 100, 10, 1.0), 1.0);
        assert!((lr_at(10, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        // Halfway through the decay: cos(pi/2) = 0 → floor + half the rest.
        assert!((lr_at(55, 100, 10, 1.0) - 0.55).abs() < 1e-12);
        assert!((lr_at(100, 100, 10, 1.0) - FLOOR).abs() < 1e-12);
        assert_eq!(lr_at(0, 5, 0, 2.0), 2.0);
    }
}
