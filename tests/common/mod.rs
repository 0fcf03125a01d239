//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod parts;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
