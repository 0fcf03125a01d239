//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod parts;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Held by every test that draws from libtorch's global random-number
/// generator (seeding, random initialisation, dropout), so that a test which
/// replays the stream from a seed sees it undisturbed by other threads.
pub fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn uorch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_uorch"))
}

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Read a TensorBoard log folder with the real TensorBoard (the set-up venv)
/// through tests/tb_read.py; returns its JSON.
pub fn read_tensorboard(logdir: &Path) -> serde_json::Value {
    let root = project_root();
    let python = root.join(".uorch/venv/bin/python");
    assert!(python.exists(), "{} missing: run make setup", python.display());
    let out = Command::new(&python).arg(root.join("tests/tb_read.py")).arg(logdir).output().unwrap();
    assert!(out.status.success(), "tb_read.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A 2-layer, 32-wide Llama with SmolLM2's vocabulary and tokenizer.
pub fn tiny_model(dir: &Path) {
    let tokenizer = project_root().join(".uorch/models/smollm2-135m-instruct/tokenizer.json");
    let _rng = torch_rng();
    uorch::model::tiny::write_tiny_model(dir, &tokenizer).unwrap();
}

/// The real MovieLens-100K prepared into `dir/ml` (the set-up's assets).
pub fn prepare_ml100k(dir: &Path) -> PathBuf {
    let store = dir.join("ml");
    let o = uorch()
        .args(["data", "prepare"])
        .arg(project_root().join("assets/ml-100k"))
        .arg("--out")
        .arg(&store)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    store
}

/// A small experiment on the real MovieLens-100K and a tiny Llama, both
/// made in `dir`: its file `dir/<name>.yaml`, its folder `dir/out/<name>`.
/// `pretrain` and `finetune` are the entries of those sections (the model
/// is added), `sweep` the body of `sweep:`.
pub fn tiny_experiment(dir: &Path, name: &str, pretrain: &str, finetune: &str, sweep: &str) -> (PathBuf, PathBuf) {
    let store = prepare_ml100k(dir);
    let model = dir.join("tiny");
    tiny_model(&model);
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "name: {name}\noutput_root: {}\nseed: 5\ndata: {{store: {}, window: 12, stride: 12}}\nencoder: {{dim: 16, layers: 1, heads: 2}}\n\
             pretrain: {{{pretrain}}}\nfinetune: {{model: {}, {finetune}}}\ndist: {{nproc: 1}}\nsweep:\n{sweep}",
            dir.join("out").display(),
            store.display(),
            model.display()
        ),
    )
    .unwrap();
    (file, dir.join("out").join(name))
}

/// The child processes of `pid` (a launcher's workers).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether process `pid` still runs (a zombie has exited; /proc/PID/stat field 3 is its state).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2) != Some("Z"))
        .unwrap_or(false)
}

/// The `RANK` a worker process was started with.
pub fn rank_of(pid: u32) -> Option<usize> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|kv| std::str::from_utf8(kv).ok()?.strip_prefix("RANK=")?.parse().ok())
}

/// SIGKILL the worker of rank `rank` among the launcher `launcher`'s children.
pub fn kill_rank(launcher: u32, rank: usize) {
    let victim = *children(launcher).iter().find(|&&p| rank_of(p) == Some(rank)).expect("the rank's process");
    // SAFETY: signalling a process the test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
}

/// Every file in `dir` is readable by its group and by others.
pub fn assert_readable_by_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o044, 0o044, "{} is not readable by others: mode {mode:o}", e.path().display());
    }
}
