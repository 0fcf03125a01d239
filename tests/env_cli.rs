//! `uorch env` on this machine, with no environment variables at all; and
//! the shell completions `uorch completions` prints.

use crate::common::{stderr, stdout, uorch};

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

#[test]
fn completions_complete_subcommands_and_flags_in_bash_and_print_for_zsh_and_fish() {
    let script = |shell: &str| {
        let o = uorch().args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let d = tempfile::tempdir().unwrap();
    let bash = d.path().join("uorch.bash");
    std::fs::write(&bash, script("bash")).unwrap();
    // Ask bash itself, as it asks on <Tab>: the function the script registers.
    let complete = |words: &str| {
        let n = words.split(' ').count() - 1;
        let cur = words.rsplit(' ').next().unwrap();
        let prev = words.split(' ').nth(n.saturating_sub(1)).unwrap();
        let o = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={n}; _uorch uorch {cur} {prev}; echo \"${{COMPREPLY[*]}}\"",
                bash.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(complete("uorch met"), "metrics");
    assert_eq!(complete("uorch metrics rouge --st"), "--stemmer");
    assert!(complete("uorch la").split(' ').any(|w| w == "launch"), "{}", complete("uorch la"));
    for shell in ["zsh", "fish"] {
        let s = script(shell);
        assert!(s.contains("metrics") && s.contains("stemmer"), "{shell}: {}", &s[..s.len().min(300)]);
    }
    let o = uorch().args(["completions", "tcsh"]).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bash") && stderr(&o).contains("zsh"), "{}", stderr(&o));
}
