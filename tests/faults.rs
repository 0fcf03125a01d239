//! Fault injection: what a crash, a full disk, a folder turned read-only or
//! a damaged file does to a run, and that nothing written before is lost.
//! The disk faults use a small tmpfs in a mount namespace of their own
//! (needs root and `unshare`, as CI has); killing at the worst moment uses
//! `UORCH_FAULT_PAUSE_BEFORE_SEAL_MS`, which holds rank 0 with a checkpoint
//! staged but not sealed. Found elsewhere: a killed worker, a stalled peer,
//! a missing node, Ctrl-C, SIGTERM during evaluation (pretrain_dist,
//! finetune_cli); damaged checkpoints and exports (pretrain_dist,
//! finetune_cli); a truncated GGUF (llm_golden).

use crate::common::{alive, prepare_ml100k, stderr, uorch};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use uorch::train::checkpoint;

/// A pretraining run `name` writing under `root`, with checkpoints every 4 steps.
fn pretrain_config(dir: &Path, root: &Path, store: &Path, name: &str, steps: u64) -> PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "name: {name}\noutput_root: {}\nseed: 4\ndata: {{store: {}, window: 20, stride: 20}}\n\
             encoder: {{dim: 16, layers: 1, heads: 2, dropout: 0.0}}\n\
             pretrain: {{steps: {steps}, batch_size: 8, checkpoint_every: 4, keep_checkpoints: 3, log_every: 50}}\ndist: {{nproc: 1}}\n",
            root.display(),
            store.display()
        ),
    )
    .unwrap();
    p
}

/// Each sealed checkpoint under `root` verifies (SHA-256 of every file); their steps.
fn sealed_checkpoints_verify(root: &Path) -> Vec<u64> {
    let mut steps: Vec<u64> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("step-"))
        .map(|e| checkpoint::verify(&e.path()).unwrap_or_else(|err| panic!("{err:#}")).step)
        .collect();
    steps.sort();
    steps
}

fn log_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("train_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|_| panic!("a torn line: {l:?}"))["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// In a mount namespace with a 32 MiB tmpfs at `disk`: launch `cfg`, apply
/// `fault` once its first checkpoint is sealed, let the launch end, copy the
/// run aside (`after-fault`), apply `repair`, launch again and copy the run
/// aside (`after-rerun`). Exit codes and output land in `logs`.
fn fault_then_rerun(cfg: &Path, disk: &Path, logs: &Path, fault: &str, repair: &str) {
    let script = r#"
        set -u
        mount -t tmpfs -o size=32m uorch-faults "$D" || exit 90
        "$UORCH" launch "$CFG" >"$L/first.out" 2>"$L/first.err" &
        pid=$!
        n=0
        while [ ! -f "$D/runs/r/checkpoints/step-00000004/state.json" ]; do
            sleep 0.02; n=$((n+1)); [ $n -gt 6000 ] && exit 91
        done
        sh -c "$FAULT"
        wait $pid; echo $? >"$L/first.code"
        cp -a "$D/runs/r" "$L/after-fault"
        sh -c "$REPAIR"
        "$UORCH" launch "$CFG" >"$L/second.out" 2>"$L/second.err"; echo $? >"$L/second.code"
        cp -a "$D/runs/r" "$L/after-rerun"
    "#;
    let o = Command::new("unshare")
        .args(["--mount", "sh", "-c", script])
        .env("D", disk)
        .env("L", logs)
        .env("CFG", cfg)
        .env("UORCH", env!("CARGO_BIN_EXE_uorch"))
        .env("FAULT", fault)
        .env("REPAIR", repair)
        .output()
        .expect("unshare runs");
    assert!(o.status.success(), "the fault script failed ({:?}): {}", o.status.code(), stderr(&o));
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The disk faults: the failing launch names the file and the operation,
/// every checkpoint sealed before it still verifies, the log holds no torn
/// line, and the rerun resumes from the newest sealed checkpoint to the end.
fn disk_fault_keeps_what_was_written(fault: &str, repair: &str, says: &str) {
    let d = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(d.path());
    let disk = d.path().join("disk");
    let logs = d.path().join("logs");
    std::fs::create_dir_all(&disk).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    let cfg = pretrain_config(d.path(), &disk.join("runs"), &store, "r", 1500);
    fault_then_rerun(&cfg, &disk, &logs, fault, repair);
    let (code, err) = (read(&logs.join("first.code")), read(&logs.join("first.err")));
    assert_ne!(code.trim(), "0", "the launch went on through the fault: {err}");
    assert!(err.contains(says), "{err}");
    let run_path = disk.join("runs/r");
    assert!(err.lines().any(|l| l.contains(says) && l.contains(&*run_path.to_string_lossy())), "no path: {err}");
    let after = logs.join("after-fault");
    let sealed = sealed_checkpoints_verify(&after.join("checkpoints"));
    assert!(sealed.contains(&4) || sealed.iter().any(|&s| s > 4), "{sealed:?}");
    let (code, err) = (read(&logs.join("second.code")), read(&logs.join("second.err")));
    assert_eq!(code.trim(), "0", "{err}\n{}", read(&logs.join("second.out")));
    let newest = *sealed.last().unwrap();
    assert!(err.contains(&format!("step-{newest:08} (step {newest})")), "not resumed from step {newest}: {err}");
    let rerun = logs.join("after-rerun");
    assert_eq!(log_steps(&rerun), (1..=1500).collect::<Vec<_>>(), "one line per step, none torn or twice");
    assert!(rerun.join("metrics.json").exists());
}

#[test]
fn a_full_disk_mid_run_names_the_file_and_keeps_every_sealed_checkpoint_for_the_rerun() {
    disk_fault_keeps_what_was_written(
        "dd if=/dev/zero of=\"$D/filler\" bs=1M 2>/dev/null; true",
        "rm \"$D/filler\"",
        "No space left on device",
    );
}

#[test]
fn the_checkpoint_folder_turned_read_only_mid_run_names_the_file_and_keeps_every_sealed_checkpoint_for_the_rerun() {
    disk_fault_keeps_what_was_written(
        // Its own mount, as files open for writing keep a remount of the disk from being read-only.
        "C=\"$D/runs/r/checkpoints\"; mount --bind \"$C\" \"$C\" && mount -o remount,bind,ro \"$C\"",
        "umount \"$D/runs/r/checkpoints\"",
        "Read-only file system",
    );
}

/// Wait for `needle` in what `child` writes to stderr (read on a thread); returns the lines so far.
fn wait_for_line(err: std::process::ChildStderr, needle: &'static str) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            all += &line;
            all.push('\n');
            if line.contains(needle) {
                let _ = tx.send(all.clone());
            }
        }
        let _ = tx.send(all);
    });
    rx
}

#[test]
fn kill_9_of_the_launcher_mid_checkpoint_leaves_an_unsealed_folder_that_the_rerun_does_not_trust() {
    let d = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(d.path());
    let root = d.path().join("runs");
    let straight = pretrain_config(d.path(), &root, &store, "straight", 12);
    let o = uorch().arg("launch").arg(&straight).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = pretrain_config(d.path(), &root, &store, "cut", 12);
    let mut child = uorch()
        .arg("launch")
        .arg(&cfg)
        .env("UORCH_FAULT_PAUSE_BEFORE_SEAL", "8:60000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = wait_for_line(child.stderr.take().unwrap(), "fault injection: pausing");
    let said = lines.recv_timeout(Duration::from_secs(120)).expect("the step-8 checkpoint never began");
    assert!(said.contains("(step 8)"), "{said}");
    let workers = crate::common::children(child.id());
    // SAFETY: signalling the launcher this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let t0 = Instant::now();
    while workers.iter().any(|&w| alive(w)) {
        assert!(t0.elapsed() < Duration::from_secs(10), "workers outlived their launcher");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Step 8 staged with its files but never sealed; step 4 sealed and sound.
    let ckpts = root.join("cut/checkpoints");
    let names: Vec<String> =
        std::fs::read_dir(&ckpts).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(sealed_checkpoints_verify(&ckpts), vec![4], "{names:?}");
    assert_eq!(names.len(), 2, "the sealed step 4 and the staged step 8: {names:?}");
    // The rerun resumes from step 4, not the staged step 8, and ends where the uninterrupted run did.
    let o = uorch().arg("launch").arg(&cfg).output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("step-00000004 (step 4)"), "{err}");
    let loss = |r: &str| -> f64 {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join(r).join("metrics.json")).unwrap()).unwrap();
        m["final_loss"].as_f64().unwrap()
    };
    assert_eq!(loss("cut"), loss("straight"));
    assert_eq!(sealed_checkpoints_verify(&ckpts), vec![4, 8, 12]);
    assert_eq!(std::fs::read_dir(&ckpts).unwrap().count(), 3, "the staged folder is gone");
    assert_eq!(log_steps(&root.join("cut")), (1..=12).collect::<Vec<_>>());
}

#[test]
fn kill_9_of_the_controller_mid_checkpoint_lets_the_checkpoint_seal_and_the_rerun_resumes_from_it() {
    let d = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(d.path());
    let model = d.path().join("tiny");
    crate::common::tiny_model(&model);
    let file = d.path().join("exp.yaml");
    std::fs::write(
        &file,
        format!(
            "name: exp\noutput_root: {}\nseed: 5\ndata: {{store: {}, window: 12, stride: 12}}\nencoder: {{dim: 16, layers: 1, heads: 2}}\n\
             pretrain: {{steps: 4, batch_size: 8, checkpoint_every: 0}}\n\
             finetune: {{model: {}, steps: 30, batch_size: 2, checkpoint_every: 10, eval_examples: 3, text_prompt_baseline: false}}\n\
             dist: {{nproc: 1}}\nsweep:\n  axes:\n    - {{name: layers, key: finetune.cross_attention_layers, values: [[1]]}}\n",
            d.path().join("out").display(),
            store.display(),
            model.display()
        ),
    )
    .unwrap();
    let exp = d.path().join("out/exp");
    let mut controller = uorch()
        .arg("launch")
        .arg(&file)
        .env("UORCH_FAULT_PAUSE_BEFORE_SEAL", "10:2000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let trial_log = exp.join("logs/layers=1.log");
    let t0 = Instant::now();
    while !std::fs::read_to_string(&trial_log).unwrap_or_default().contains("fault injection: pausing") {
        assert!(t0.elapsed() < Duration::from_secs(300), "the trial's step-10 checkpoint never began");
        std::thread::sleep(Duration::from_millis(20));
    }
    let launchers = crate::common::children(controller.id());
    assert!(!launchers.is_empty());
    controller.kill().unwrap();
    controller.wait().unwrap();
    // The orphaned launcher was told to stop: its rank 0 seals the checkpoint it was writing, then stops.
    let t0 = Instant::now();
    while launchers.iter().any(|&p| alive(p)) {
        assert!(t0.elapsed() < Duration::from_secs(60), "the orphaned launcher did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = exp.join("runs/layers=1");
    let sealed = sealed_checkpoints_verify(&run.join("finetune_checkpoints"));
    assert_eq!(sealed, vec![10], "the checkpoint being sealed when the controller died");
    let o = uorch().arg("launch").arg(&file).output().unwrap();
    assert!(o.status.success(), "{}\n{}", crate::common::stdout(&o), stderr(&o));
    let launch_log = std::fs::read_to_string(&trial_log).unwrap();
    let resumed = launch_log.lines().any(|l| l.contains("finetune: resuming from") && l.contains("(step 10)"));
    assert!(resumed, "{launch_log}");
    let steps: Vec<u64> = std::fs::read_to_string(run.join("finetune_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=30).collect::<Vec<_>>());
    assert!(run.join("finetune_metrics.json").exists());
}

/// Cut `path` to half its length.
fn truncate_half(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len / 2).unwrap();
}

fn fails_naming(o: &std::process::Output, file: &Path, what: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "accepted a truncated {}", file.display());
    assert!(err.contains(&*file.to_string_lossy()) && err.contains(what), "{}: {err}", file.display());
}

#[test]
fn truncated_files_of_every_kind_are_refused_naming_the_file_and_what_else_was_written_stays_usable() {
    let d = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(d.path());
    let model = d.path().join("tiny");
    crate::common::tiny_model(&model);
    let cfg = d.path().join("run.yaml");
    let body = format!(
        "name: run\noutput_root: {}\nseed: 5\ndata: {{store: {}, window: 12, stride: 12}}\nencoder: {{dim: 16, layers: 1, heads: 2}}\n\
         pretrain: {{steps: 8, batch_size: 8, checkpoint_every: 4, keep_checkpoints: 3}}\n\
         finetune: {{model: {}, steps: 2, batch_size: 2, eval_examples: 2, text_prompt_baseline: false}}\n",
        d.path().join("out").display(),
        store.display(),
        model.display()
    );
    std::fs::write(&cfg, &body).unwrap();
    let o = uorch().arg("launch").arg(&cfg).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let run = d.path().join("out/run");
    let export = d.path().join("export");
    let o = uorch().arg("export").arg(&run).arg("--out").arg(&export).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // Config: a file cut in the middle of a mapping.
    let cut_cfg = d.path().join("cut.yaml");
    std::fs::write(&cut_cfg, &body[..body.find("pretrain: {steps").unwrap() + 20]).unwrap();
    let o = uorch().args(["config", "check"]).arg(&cut_cfg).output().unwrap();
    fails_naming(&o, &cut_cfg, ":");

    // Store: each of its files.
    for name in ["timelines.safetensors", "items.jsonl", "vocab.json", "manifest.json"] {
        let copy = d.path().join(format!("store-{name}"));
        let o = Command::new("cp").arg("-a").arg(&store).arg(&copy).output().unwrap();
        assert!(o.status.success());
        truncate_half(&copy.join(name));
        let o = uorch().args(["data", "stats"]).arg(&copy).output().unwrap();
        fails_naming(&o, &copy.join(name), "");
    }

    // A model folder's weights.
    let cut_model = d.path().join("cut-model");
    Command::new("cp").arg("-a").arg(&model).arg(&cut_model).status().unwrap();
    truncate_half(&cut_model.join("model.safetensors"));
    let o =
        uorch().args(["generate", "--device", "cpu", "--prompt", "hi", "--model"]).arg(&cut_model).output().unwrap();
    fails_naming(&o, &cut_model.join("model.safetensors"), "");

    // An export: refused by its checksums; the run it came from exports again.
    truncate_half(&export.join("user_llm.safetensors"));
    let o = uorch()
        .args(["generate", "--json", "--device", "cpu", "--store"])
        .arg(&store)
        .args(["--user", "1", "--model"])
        .arg(&export)
        .output()
        .unwrap();
    fails_naming(&o, &export, "user_llm.safetensors has SHA-256");
    let o = uorch().arg("export").arg(&run).arg("--out").arg(&export).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // A checkpoint: skipped with a warning; the run resumes from the one before.
    let ckpts = run.join("checkpoints");
    truncate_half(&ckpts.join("step-00000008/model.safetensors"));
    let o = uorch().arg("launch").arg(&cfg).args(["--set", "pretrain.steps=8"]).output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("skipping checkpoint") && err.contains("step-00000008"), "{err}");
    assert!(err.contains("step-00000004 (step 4)"), "not resumed from step 4: {err}");
    assert_eq!(sealed_checkpoints_verify(&ckpts), vec![4, 8]);
}
