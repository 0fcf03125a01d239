//! Defaults shared by several config sections (serde `default = ...` functions).

pub(super) fn d_one() -> usize {
    1
}
pub(super) fn d_lr() -> f64 {
    1e-3
}
pub(super) fn d_clip() -> f64 {
    1.0
}
pub(super) fn d_log() -> u64 {
    10
}
pub(super) fn d_keep() -> usize {
    2
}
pub(super) fn d_true() -> bool {
    true
}
