//! Config errors and dumps as a user sees them from the command line.

use crate::common::{stderr, stdout, uorch};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Run `uorch config check FILE [--set ...]`, expect exit status 2, return stderr.
fn check_fails(file: &Path, sets: &[&str]) -> String {
    let mut cmd = uorch();
    cmd.args(["config", "check"]).arg(file);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "stdout: {}\nstderr: {}", stdout(&out), stderr(&out));
    stderr(&out)
}

#[test]
fn misspelled_key_names_file_line_column_key_expected_keys_and_the_likely_key() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "run.yaml", "include: [run/defaults]\nname: typo\n\noutptu_root: /tmp/x\n");
    let err = check_fails(&f, &[]);
    let expected = format!(
        "error: {}:4:1: key `outptu_root`: unknown key `outptu_root`; expected one of `name`, `output_root`, `seed`, `cpu_threads`, `data`, `encoder`, `pretrain`, `finetune`, `dist`, `trial`, `experiment`, `hparams_session`; did you mean `output_root`?",
        f.display()
    );
    assert_eq!(err.trim(), expected);
}

#[test]
fn unrelated_unknown_key_gets_no_suggestion() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "run.yaml", "name: x\nlearning_schedule: cosine\n");
    let err = check_fails(&f, &[]);
    assert!(err.contains("run.yaml:2:1: key `learning_schedule`: unknown key"), "{err}");
    assert!(!err.contains("did you mean"), "{err}");
}

#[test]
fn wrong_type_names_the_value_position_and_what_was_expected() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "run.yaml", "name: x\ncpu_threads: many\n");
    let err = check_fails(&f, &[]);
    let expected = format!(
        "error: {}:2:14: key `cpu_threads`: expected a non-negative integer, found string \"many\"",
        f.display()
    );
    assert_eq!(err.trim(), expected);
    // A mapping where a scalar belongs.
    let f = write(d.path(), "run2.yaml", "name: x\nseed: {a: 1}\n");
    let err = check_fails(&f, &[]);
    assert!(err.contains("run2.yaml:2:7: key `seed`: expected a non-negative integer, found map"), "{err}");
}

#[test]
fn out_of_range_values_are_all_reported_with_their_positions() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "run.yaml", "name: ../escape\ncpu_threads: 5000\n");
    let err = check_fails(&f, &[]);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with(&format!("error: {}:1:7: key `name`: expected a folder name", f.display())), "{err}");
    assert_eq!(
        lines[1],
        format!(
            "error: {}:2:14: key `cpu_threads`: expected 0 (libtorch's default) or 1..=1024, found 5000",
            f.display()
        )
    );
}

#[test]
fn errors_in_overrides_and_presets_point_at_the_override_or_the_preset_file() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "run.yaml", "include: [base]\nname: x\n");
    write(d.path(), "base.yaml", "seed: 1\ncpu_threads: -3\n");
    let err = check_fails(&f, &[]);
    assert!(err.contains(&format!("{}:2:14: key `cpu_threads`", d.path().join("base.yaml").display())), "{err}");

    let err = check_fails(&f, &["cpu_threads=2", "seed=-1"]);
    assert_eq!(err.trim(), "error: --set seed=-1: key `seed`: expected a non-negative integer, found integer `-1`");
    let err = check_fails(&f, &["cpu_threads=2", "sede=1"]);
    assert!(
        err.contains("--set sede=1: key `sede`: unknown key `sede`") && err.contains("did you mean `seed`?"),
        "{err}"
    );
}

#[test]
fn missing_required_key_and_unknown_preset_are_explained() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "run.yaml", "seed: 1\n");
    let err = check_fails(&f, &[]);
    assert!(err.contains("run.yaml:1:1: key `name`: required key is missing"), "{err}");
    let f = write(d.path(), "run2.yaml", "include: run/defualts\nname: x\n");
    let err = check_fails(&f, &[]);
    assert!(err.contains("run2.yaml:1:10: key `include[0]`: cannot find preset `run/defualts`"), "{err}");
    assert!(err.contains("did you mean `run/defaults`?"), "{err}");
}

#[test]
fn resolved_dump_reads_back_to_the_same_config_and_shows_origins() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "run.yaml", "include: [run/defaults]\nname: dumped\n");
    let out = uorch().args(["config", "show"]).arg(&f).args(["--set", "seed=77"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dump = stdout(&out);
    assert_eq!(dump, "name: dumped\noutput_root: checkpoints\nseed: 77\ncpu_threads: 0\ndist:\n  nproc: auto\n  timeout_s: 300\n  bucket_mb: 25\n");
    let again = write(d.path(), "dump.yaml", &dump);
    let out2 = uorch().args(["config", "show"]).arg(&again).output().unwrap();
    assert_eq!(stdout(&out2), dump);

    let out = uorch().args(["config", "show", "--origins"]).arg(&f).args(["--set", "seed=77"]).output().unwrap();
    let text = stdout(&out);
    assert!(text.contains(&format!("name: dumped  # {}:2:7", f.display())), "{text}");
    assert!(text.contains("seed: 77  # --set seed=77"), "{text}");
    assert!(text.contains("configs/run/defaults.yaml:2:14"), "{text}");
}

#[test]
fn check_names_every_input_path_that_is_not_there_at_its_key() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "run.yaml",
        "name: paths\noutput_root: /tmp/x\ndata:\n  store: /nonexistent/store\nfinetune:\n  model: /nonexistent/llm\n  steps: 2\n",
    );
    let err = check_fails(&f, &[]);
    assert!(err.contains("run.yaml:4:10: key `data.store`: /nonexistent/store is not a folder that exists"), "{err}");
    assert!(err.contains("run.yaml:6:10: key `finetune.model`: /nonexistent/llm is not a folder that exists"), "{err}");
    // A folder without the file that makes it what the key needs.
    std::fs::create_dir(d.path().join("empty")).unwrap();
    let err = check_fails(
        &f,
        &["data.store=".to_string() + d.path().join("empty").to_str().unwrap()]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(err.contains("has no readable manifest.json"), "{err}");
    // And `uorch launch` refuses before any stage runs or any file is written.
    let o = uorch().arg("launch").arg(&f).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("2 input path(s) missing"), "{}", stderr(&o));
    assert!(!Path::new("/tmp/x/paths").exists());
}

#[test]
fn check_lists_every_type_error_unknown_key_range_error_and_missing_path_once_each() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "run.yaml",
        "name: x\nseed: many\nsed: 1\ndata: {store: /nonexistent, window: ten, stride: 0}\nencoder: {dim: 16, layers: 1.5, heads: 2}\ndist: {timeout_s: 0, backend: glooo}\npretrain: {steps: 4, batch_size: 8}\n",
    );
    let err = check_fails(&f, &[]);
    let at = |line: usize, col: usize, key: &str| format!("error: {}:{line}:{col}: key `{key}`: ", f.display());
    let want = [
        (at(2, 7, "seed"), "expected a non-negative integer, found string \"many\""),
        (at(3, 1, "sed"), "unknown key `sed`"),
        (at(4, 37, "data.window"), "expected a non-negative integer, found string \"ten\""),
        (at(4, 50, "data.stride"), "expected at least 1"),
        (at(4, 15, "data.store"), "/nonexistent is not a folder that exists"),
        (at(5, 28, "encoder.layers"), "expected a non-negative integer, found floating point `1.5`"),
        (at(6, 31, "dist.backend"), "unknown value `glooo`"),
        (at(6, 19, "dist.timeout_s"), "expected at least 1 second"),
    ];
    for (prefix, message) in &want {
        assert!(err.lines().any(|l| l.starts_with(prefix) && l.contains(message)), "no `{prefix}{message}` in:\n{err}");
    }
    // Once each: a stand-in value put past one error reports nothing of its own.
    assert_eq!(err.lines().count(), want.len(), "{err}");
}

#[test]
fn positional_hydra_overrides_presets_and_env_interpolation_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "run.yaml",
        "include: [run/defaults, encoder/small]\nname: 'h-${env:UORCH_TEST_CLI_NAME,plain}'\n",
    );
    let show = |args: &[&str], env: &[(&str, &str)]| {
        let o = uorch()
            .args(["config", "show", "--origins"])
            .arg(&f)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (o.status.success(), stdout(&o), stderr(&o))
    };
    let (ok, text, err) = show(&["--set", "seed=4", "seed=5", "encoder=base", "encoder.layers=3", "~cpu_threads"], &[]);
    assert!(ok, "{err}");
    // Positional overrides come after --set ones; the chosen preset replaces encoder/small.
    assert!(text.contains("seed: 5  # --set seed=5"), "{text}");
    assert!(text.contains("dim: 256") && text.contains("configs/encoder/base.yaml"), "{text}");
    assert!(text.contains("layers: 3  # --set encoder.layers=3"), "{text}");
    // Deleted: the default fills it again.
    assert!(text.contains("cpu_threads: 0  # default"), "{text}");
    assert!(text.contains("name: h-plain"), "{text}");
    let (_, text, _) = show(&[], &[("UORCH_TEST_CLI_NAME", "from-env")]);
    assert!(text.contains("name: h-from-env"), "{text}");
    let (ok, _, err) = show(&["+seed=1"], &[]);
    assert!(!ok && err.contains("`seed` is already set"), "{err}");
}

#[test]
fn check_json_lists_every_diagnostic_with_file_line_column_key_and_hint() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "run.yaml", "include: [run/defaults]\nname: typo\nseed: -1\noutptu_root: /tmp/x\n");
    let o = uorch().args(["config", "check", "--json"]).arg(&f).args(["--set", "sede=1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    assert_eq!(v["ok"], false);
    let diags = v["diagnostics"].as_array().unwrap();
    let find = |key: &str| diags.iter().find(|x| x["key"] == key).unwrap_or_else(|| panic!("{key}: {v}"));
    let typo = find("outptu_root");
    assert_eq!((typo["line"].as_u64(), typo["column"].as_u64()), (Some(4), Some(1)));
    assert!(typo["file"].as_str().unwrap().ends_with("run.yaml"));
    assert!(typo["hint"].as_str().unwrap().contains("output_root"), "{typo}");
    assert_eq!(find("seed")["line"], 3);
    assert_eq!(find("sede")["override"], "sede=1");
    // The same text still goes to stderr.
    assert!(stderr(&o).contains("key `outptu_root`"), "{}", stderr(&o));
    let good = write(d.path(), "good.yaml", "include: [run/defaults]\nname: fine\n");
    let o = uorch().args(["config", "check", "--json"]).arg(&good).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["ok"].as_bool(), v["diagnostics"].as_array().map(Vec::len)), (Some(true), Some(0)));
}
