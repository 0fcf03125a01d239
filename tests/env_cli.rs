//! `uorch env` on this machine, with no environment variables at all.

use crate::common::{stdout, uorch};

fn has_nvidia_gpu() -> bool {
    std::path::Path::new("/dev/nvidiactl").exists()
}

#[test]
fn env_reports_pinned_libtorch_gloo_and_cuda_state_without_any_variable_set() {
    let out = uorch().env_clear().args(["env", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["libtorch"]["version"].as_str().unwrap().starts_with("2.11.0"), "{r}");
    let gloo = r["collectives"].as_array().unwrap().iter().find(|b| b["name"] == "gloo").unwrap();
    assert_eq!(gloo["available"], true);
    if !has_nvidia_gpu() {
        assert_eq!(r["cuda"]["available"], false);
        assert_eq!(r["cuda"]["device_count"], 0);
        let nccl = r["collectives"].as_array().unwrap().iter().find(|b| b["name"] == "nccl").unwrap();
        assert_eq!(nccl["available"], false);
    }
    assert!(r["cpu"]["logical_cores"].as_u64().unwrap() >= 1);
    assert_eq!(r["uorch_version"], env!("CARGO_PKG_VERSION"));
    // Paths point into this checkout, found from the binary's location.
    let root = std::path::Path::new(r["paths"]["project_root"].as_str().unwrap());
    assert!(root.join("scripts/setup.sh").is_file());
}

#[test]
fn env_text_form_has_one_line_per_fact() {
    let out = uorch().env_clear().arg("env").output().unwrap();
    let text = stdout(&out);
    for key in [
        "uorch",
        "libtorch",
        "CUDA available",
        "cuDNN",
        "CPU threads",
        "collective gloo",
        "collective nccl",
        "default output root",
    ] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(key)), "no `{key}` line in:\n{text}");
    }
    let libtorch = text.lines().find(|l| l.trim_start().starts_with("libtorch ")).unwrap();
    assert!(libtorch.contains("2.11.0"), "{libtorch}");
}
