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
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 49152, "tie_word_embeddings": true, "eos_token_id": 2});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        project_root().join(".uorch/models/smollm2-135m-instruct/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let c: uorch::model::llama::LlamaConfig = serde_json::from_value(config).unwrap();
    let _rng = torch_rng();
    tch::manual_seed(0);
    let m = uorch::model::llama::Llama::new(c, tch::Device::Cpu, tch::Kind::Float);
    // In name order: `variables()` is a hash map, whose order changes from one
    // process to the next, and the weights must not.
    let mut vars: Vec<(String, tch::Tensor)> = m.vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = vars
        .into_iter()
        .map(|(n, t)| {
            let t = if n.ends_with("norm.weight") { t.ones_like() } else { t.randn_like() * 0.05 };
            let v = Vec::<f32>::try_from(t.reshape([-1])).unwrap();
            (n, t.size().iter().map(|&d| d as usize).collect(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
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
