//! Encoder pretraining with real worker processes: data-parallel equivalence,
//! and the launcher under faults (a killed worker, Ctrl-C and resume, a
//! stalled peer).

use crate::common::{alive, children, kill_rank, project_root, rank_of, stderr, uorch};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A small store from the real MovieLens-100K, made once per test.
fn store(dir: &Path) -> PathBuf {
    let out = dir.join("ml");
    let o = uorch()
        .args(["data", "prepare"])
        .arg(project_root().join("assets/ml-100k"))
        .arg("--out")
        .arg(&out)
        .args(["--min-user-interactions", "5", "--min-item-interactions", "5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// A run config: tiny encoder, no dropout (so ranks are comparable).
fn config(dir: &Path, store: &Path, name: &str, extra: &str) -> PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "name: {name}\noutput_root: {}\nseed: 3\ndata: {{store: {}, window: 20, stride: 20}}\nencoder: {{dim: 16, layers: 1, heads: 2, dropout: 0.0}}\n{extra}",
            dir.join("runs").display(),
            store.display()
        ),
    )
    .unwrap();
    p
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("train_log.jsonl"))
        .unwrap_or_default()
        .lines()
        // A line being written while we read is skipped.
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["loss"].as_f64())
        .collect()
}

fn launch(cfg: &Path, extra: &[&str]) -> std::process::Output {
    uorch().arg("launch").arg(cfg).args(extra).output().unwrap()
}

#[test]
fn two_workers_at_batch_b_follow_one_worker_at_batch_2b() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let one = config(
        d.path(),
        &s,
        "one",
        "pretrain: {steps: 20, batch_size: 16, lr: 0.003, warmup_steps: 2}\ndist: {nproc: 1}\n",
    );
    let two = config(
        d.path(),
        &s,
        "two",
        "pretrain: {steps: 20, batch_size: 8, lr: 0.003, warmup_steps: 2}\ndist: {nproc: 2}\n",
    );
    for (c, world) in [(&one, 1), (&two, 2)] {
        let o = launch(c, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        // Under the launcher every run has its groups, one worker included
        // (as under torchrun): the data group checked as NCCL would check it.
        let groups = format!("rank 0 of {world} on cpu: data group gloo (NCCL rules), control group gloo");
        assert!(stderr(&o).contains(&groups), "{}", stderr(&o));
    }
    let (a, b) = (losses(&d.path().join("runs/one")), losses(&d.path().join("runs/two")));
    assert_eq!((a.len(), b.len()), (20, 20));
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        // f32 sums in another order (two halves, then an all-reduce).
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "step {}: {x} vs {y}", step + 1);
    }
    assert!(a[19] < a[0], "the loss should fall: {a:?}");
}

/// The `metrics.json` of run `name` under `dir/runs`.
fn metrics(dir: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("runs").join(name).join("metrics.json")).unwrap()).unwrap()
}

/// Start a launch in the background and wait until it has logged `steps` steps.
fn start(cfg: &Path, run: &Path, steps: usize) -> (Child, Vec<u32>) {
    start_with(cfg, run, steps, &[])
}

fn start_with(cfg: &Path, run: &Path, steps: usize, args: &[&str]) -> (Child, Vec<u32>) {
    let child =
        uorch().arg("launch").arg(cfg).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while losses(run).len() < steps {
        assert!(t0.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    let workers = children(child.id());
    (child, workers)
}

/// Kill rank `victim` of a 2-worker pretraining: the launch must fail at
/// once naming it, its peer must name it too (not a timeout), and no worker
/// may be left.
fn kill_a_rank_and_read_the_reports(victim_rank: usize) {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let cfg = config(
        d.path(),
        &s,
        "kill",
        "pretrain: {steps: 100000, batch_size: 8, checkpoint_every: 0}\ndist: {nproc: 2, timeout_s: 60}\n",
    );
    let (child, workers) = start(&cfg, &d.path().join("runs/kill"), 3);
    assert_eq!(workers.len(), 2);
    let victim = *workers.iter().find(|&&p| rank_of(p) == Some(victim_rank)).unwrap();
    let t0 = Instant::now();
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10), "launcher took {:?}", t0.elapsed());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("worker rank {victim_rank} failed (signal 9 (SIGKILL))")), "{err}");
    let peer = 1 - victim_rank;
    // The launcher records the death before it stops the peer, whose collective fails at once.
    let said = err.lines().find(|l| l.starts_with(&format!("[rank {peer}] error:")));
    let line = said.unwrap_or_else(|| panic!("rank {peer} said nothing: {err}"));
    assert!(line.contains(&format!("rank {victim_rank} stopped (signal 9 (SIGKILL))")), "{err}");
    assert!(!line.contains("timeout"), "{err}");
    for w in workers {
        assert!(!alive(w), "worker {w} still running");
    }
}

#[test]
fn a_killed_worker_is_named_by_the_launcher_and_by_its_peer_and_leaves_no_process() {
    kill_a_rank_and_read_the_reports(1);
}

#[test]
fn a_killed_rank_0_is_named_by_its_peer_too_as_the_launcher_serves_the_store() {
    kill_a_rank_and_read_the_reports(0);
}

#[test]
fn ctrl_c_checkpoints_and_the_same_command_resumes_to_the_uninterrupted_result() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let body =
        "pretrain: {steps: 200, batch_size: 8, lr: 0.003, warmup_steps: 5, checkpoint_every: 0}\ndist: {nproc: 2}\n";
    let straight = config(d.path(), &s, "straight", body);
    let o = launch(&straight, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cut = config(d.path(), &s, "cut", body);
    let run = d.path().join("runs/cut");
    let (child, _) = start(&cut, &run, 10);
    // SAFETY: signalling the launcher this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let ckpts: Vec<_> = std::fs::read_dir(run.join("checkpoints")).unwrap().flatten().collect();
    assert_eq!(ckpts.len(), 1, "one checkpoint at the interruption");
    let stopped_at = losses(&run).len();
    assert!(stopped_at < 200, "stopped at {stopped_at}");
    let o = launch(&cut, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming from"), "{}", stderr(&o));
    let final_loss = |r: &str| metrics(d.path(), r)["final_loss"].as_f64().unwrap();
    let (a, b) = (final_loss("straight"), final_loss("cut"));
    assert!((a - b).abs() <= 1e-6 * a.abs(), "uninterrupted {a} vs resumed {b}");
    // A run of another configuration refuses the checkpoint.
    let other =
        config(d.path(), &s, "cut", "pretrain: {steps: 200, batch_size: 4, checkpoint_every: 0}\ndist: {nproc: 2}\n");
    let o = launch(&other, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("was written by a run with a different configuration"), "{}", stderr(&o));
}

#[test]
fn a_stalled_peer_makes_the_others_fail_with_the_timeout_error() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let cfg = config(
        d.path(),
        &s,
        "stall",
        "pretrain: {steps: 100000, batch_size: 8, checkpoint_every: 0}\ndist: {nproc: 2, timeout_s: 3}\n",
    );
    let (child, workers) = start(&cfg, &d.path().join("runs/stall"), 3);
    let peer = *workers.iter().find(|&&p| rank_of(p) == Some(1)).unwrap();
    let t0 = Instant::now();
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(peer as i32, libc::SIGSTOP) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("worker rank 0 failed"), "{err}");
    assert!(err.contains("on rank 0 did not complete within the 3s collective timeout"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    for w in workers {
        assert!(!alive(w), "worker {w} still running");
    }
    let _ = Command::new("true").status();
}

#[test]
fn with_max_restarts_a_killed_worker_restarts_the_group_from_its_checkpoint_to_the_uninterrupted_result() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let body =
        "pretrain: {steps: 120, batch_size: 8, lr: 0.003, warmup_steps: 5, checkpoint_every: 20}\ndist: {nproc: 2}\n";
    let straight = config(d.path(), &s, "straight", body);
    let o = launch(&straight, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = config(d.path(), &s, "elastic", body);
    let run = d.path().join("runs/elastic");
    let (child, workers) = start_with(&cfg, &run, 25, &["--max-restarts", "1"]);
    assert!(run.join("checkpoints/step-00000020").exists(), "no checkpoint to restart from");
    kill_rank(child.id(), 1);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("worker rank 1 failed (signal 9 (SIGKILL)); restarting every worker from the newest checkpoint (restart 1 of 1)"),
        "{err}"
    );
    assert!(err.contains("resuming from"), "{err}");
    let log = std::fs::read_to_string(run.join("restarts.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert_eq!((lines[0]["restart"].as_u64(), lines[0]["rank"].as_u64()), (Some(1), Some(1)), "{log}");
    assert_eq!(lines[0]["status"], "signal 9 (SIGKILL)");
    let (a, b) = (metrics(d.path(), "straight"), metrics(d.path(), "elastic"));
    assert_eq!((a["restarts"].as_u64(), b["restarts"].as_u64()), (Some(0), Some(1)));
    let (a, b) = (a["final_loss"].as_f64().unwrap(), b["final_loss"].as_f64().unwrap());
    assert!((a - b).abs() <= 1e-6 * a.abs(), "uninterrupted {a} vs restarted {b}");
    for w in workers {
        assert!(!alive(w), "worker {w} of the first start still running");
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_rerun_refused_for_a_changed_config_changes_nothing_in_the_run_folder() {
    let d = tempfile::tempdir().unwrap();
    let st = store(d.path());
    let cfg = config(d.path(), &st, "refused", "pretrain: {steps: 4, batch_size: 8}\n");
    let o = launch(&cfg, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = d.path().join("runs/refused");
    let before = snapshot(&run);
    let o = launch(&cfg, &["--set", "pretrain.lr=0.5"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("was written by a run with a different configuration"), "{}", stderr(&o));
    // Not config.yaml, env.json or a TensorBoard file: the folder is as it was (its lock aside).
    let mut after = snapshot(&run);
    let mut before = before;
    for s in [&mut before, &mut after] {
        s.remove(Path::new(".lock"));
    }
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    assert!(before == after, "the refused run rewrote files of the run folder");
}

#[test]
fn a_second_launch_of_a_running_run_is_refused_naming_the_holder() {
    let d = tempfile::tempdir().unwrap();
    let st = store(d.path());
    let cfg = config(d.path(), &st, "busy", "pretrain: {steps: 100000, batch_size: 8, log_every: 1000000}\n");
    let mut first = uorch().arg("launch").arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let run = d.path().join("runs/busy");
    let t0 = Instant::now();
    while losses(&run).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the first launch did not start training");
        std::thread::sleep(Duration::from_millis(100));
    }
    let config_before = std::fs::read_to_string(run.join("config.yaml")).unwrap();
    let o = launch(&cfg, &[]);
    let _ = first.kill();
    let _ = first.wait();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("another `uorch launch` is running run `busy`"), "{err}");
    assert!(err.contains(&format!("in use by `uorch` pid {}", first.id())), "{err}");
    assert_eq!(std::fs::read_to_string(run.join("config.yaml")).unwrap(), config_before);
    // Its holder killed, the lock is free again: the kernel dropped it.
    uorch::fsutil::lock_folder(&run, ".lock").unwrap();
}

#[test]
fn when_every_checkpoint_is_damaged_the_rerun_says_it_starts_over() {
    let d = tempfile::tempdir().unwrap();
    let st = store(d.path());
    let cfg = config(
        d.path(),
        &st,
        "damaged",
        "pretrain: {steps: 6, batch_size: 8, checkpoint_every: 3, keep_checkpoints: 2}\n",
    );
    let o = launch(&cfg, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let root = d.path().join("runs/damaged/checkpoints");
    let mut damaged = 0;
    for e in std::fs::read_dir(&root).unwrap().flatten().filter(|e| e.path().join("state.json").exists()) {
        let mut f = std::fs::OpenOptions::new().append(true).open(e.path().join("model.safetensors")).unwrap();
        std::io::Write::write_all(&mut f, b"x").unwrap();
        damaged += 1;
    }
    assert_eq!(damaged, 2);
    let o = launch(&cfg, &[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("no usable checkpoint in") && err.contains("all 2 are damaged"), "{err}");
    assert!(err.contains("starting over from step 0"), "{err}");
    // Trained again from the start: the first run's log lines were dropped with its checkpoints' steps.
    assert!(err.contains("dropped 6 line(s) after step 0"), "{err}");
    assert_eq!(losses(&d.path().join("runs/damaged")).len(), 6, "one line per step of the new run");
}

#[test]
fn a_checkpoint_that_cannot_be_written_names_the_path_and_the_operation() {
    let d = tempfile::tempdir().unwrap();
    let st = store(d.path());
    let cfg = config(d.path(), &st, "blocked", "pretrain: {steps: 4, batch_size: 8, checkpoint_every: 2}\n");
    // Where the checkpoint folder should go, a file.
    let run = d.path().join("runs/blocked");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("checkpoints"), "in the way").unwrap();
    let o = launch(&cfg, &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    let want = format!("creating the checkpoint folder {}", run.join("checkpoints").display());
    assert!(err.contains(&want), "{err}");
    assert_eq!(std::fs::read_to_string(run.join("checkpoints")).unwrap(), "in the way");
}

/// No C++ stack trace reaches a user (it is for `UORCH_LOG=debug`).
fn assert_no_cpp_trace(err: &str) {
    for trace in ["Exception raised from", "frame #", ".cpp:"] {
        assert!(!err.contains(trace), "a C++ trace ({trace}) in: {err}");
    }
}

#[test]
fn a_node_that_never_joins_is_named_after_progress_lines_without_a_cpp_trace() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let cfg = config(d.path(), &s, "alone", "pretrain: {steps: 4, batch_size: 8}\ndist: {nproc: 1, timeout_s: 3}\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let t0 = Instant::now();
    let o = launch(&cfg, &["--nnodes", "2", "--node-rank", "0", "--master-port", &port]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert!(err.contains("rendezvous: 1 of 2 nodes here after"), "no progress line: {err}");
    assert!(err.contains("waiting for node 1"), "{err}");
    assert!(err.contains("rendezvous: 1 of 2 nodes arrived within 3 s (dist.timeout_s); missing: node 1"), "{err}");
    assert_no_cpp_trace(&err);
    // Nothing trained: no worker started.
    assert!(losses(&d.path().join("runs/alone")).is_empty());
}

#[test]
fn a_second_node_whose_first_never_starts_says_it_waits_for_it_and_then_gives_up_naming_the_address() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let cfg = config(d.path(), &s, "orphan", "pretrain: {steps: 4, batch_size: 8}\ndist: {nproc: 1, timeout_s: 3}\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let o = launch(&cfg, &["--nnodes", "2", "--node-rank", "1", "--master-port", &port]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("rendezvous: waiting for the first machine's launcher at 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains(&format!("did not answer at 127.0.0.1:{port} within 3 s")), "{err}");
    assert!(err.contains("--node-rank 0"), "{err}");
    assert_no_cpp_trace(&err);
}

#[test]
fn symbolic_links_out_of_a_run_folder_are_refused_before_anything_is_written_through_them() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let cfg = config(
        d.path(),
        &s,
        "linked",
        "pretrain: {steps: 6, batch_size: 8, checkpoint_every: 1, keep_checkpoints: 1}\n",
    );
    let run = d.path().join("runs/linked");
    std::fs::create_dir_all(&run).unwrap();
    // Someone else's log and someone else's step folders, linked in.
    let elsewhere = d.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("ckpt/step-00000001")).unwrap();
    std::fs::create_dir_all(elsewhere.join("ckpt/step-00000002")).unwrap();
    std::fs::write(elsewhere.join("log.jsonl"), "precious\n").unwrap();
    std::os::unix::fs::symlink(elsewhere.join("log.jsonl"), run.join("train_log.jsonl")).unwrap();
    std::os::unix::fs::symlink("../../elsewhere/ckpt", run.join("checkpoints")).unwrap();
    let o = launch(&cfg, &[]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("has symbolic links that lead out of it"), "{err}");
    assert!(err.contains(&format!("{} -> ", run.join("train_log.jsonl").display())), "{err}");
    assert!(err.contains(&format!("{} -> ", run.join("checkpoints").display())), "{err}");
    assert_eq!(std::fs::read_to_string(elsewhere.join("log.jsonl")).unwrap(), "precious\n");
    assert!(elsewhere.join("ckpt/step-00000001").exists() && elsewhere.join("ckpt/step-00000002").exists());
    // A link that stays inside the run folder is fine.
    std::fs::remove_file(run.join("train_log.jsonl")).unwrap();
    std::fs::remove_file(run.join("checkpoints")).unwrap();
    std::fs::create_dir_all(run.join("mine")).unwrap();
    std::os::unix::fs::symlink("mine", run.join("checkpoints")).unwrap();
    let o = launch(&cfg, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(losses(&run).len(), 6);
}
