//! `uorch launch` writes a run folder a later stage or a person can trust.

use crate::common::{read_tensorboard, stderr, stdout, uorch};

#[test]
fn launch_records_resolved_config_env_and_tensorboard_hparams() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("run.yaml");
    std::fs::write(&cfg, "include: [run/defaults]\nname: smoke\nseed: 5\n").unwrap();
    let out = uorch()
        .arg("launch")
        .arg(&cfg)
        .args(["--set", &format!("output_root={}", d.path().join("out").display()), "--set", "cpu_threads=1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run = d.path().join("out/smoke");

    // The stored config is the resolved one, and it loads again as is.
    let stored = std::fs::read_to_string(run.join("config.yaml")).unwrap();
    assert!(stored.contains("seed: 5\n") && stored.contains("cpu_threads: 1\n"), "{stored}");
    let again = uorch().args(["config", "show"]).arg(run.join("config.yaml")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout), stored);

    let env: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("env.json")).unwrap()).unwrap();
    assert!(env["libtorch"]["version"].as_str().unwrap().starts_with("2.11.0"));

    // TensorBoard on the output root shows the run under its name (its events are in the run folder).
    let tb = read_tensorboard(&d.path().join("out"));
    let names: Vec<&String> = tb["runs"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["smoke"]);
    let r = &tb["runs"]["smoke"];
    let start = &r["hparams"]["_hparams_/session_start_info"];
    assert_eq!(start["hparams"]["seed"], 5.0);
    assert_eq!(start["hparams"]["name"], "smoke");
    assert_eq!(r["hparams"]["_hparams_/session_end_info"]["status"], "STATUS_SUCCESS");
    assert!(r["texts"]["config"][0][1].as_str().unwrap().contains("name: smoke"));
    assert_eq!(tb["session_groups"].as_array().unwrap().len(), 1);

    // A run folder of the old layout (events in `tb/`, shown as `smoke/tb`) is refused, not mixed,
    // and the command the message gives moves it to this layout.
    let launch = || {
        uorch()
            .arg("launch")
            .arg(&cfg)
            .args(["--set", &format!("output_root={}", d.path().join("out").display()), "--set", "cpu_threads=1"])
            .output()
            .unwrap()
    };
    std::fs::create_dir(run.join("tb")).unwrap();
    for e in std::fs::read_dir(&run).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("events.out.tfevents.") {
            std::fs::rename(e.path(), run.join("tb").join(e.file_name())).unwrap();
        }
    }
    let o = launch();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("written by an older uorch") && err.contains(&run.join("tb").display().to_string()), "{err}");
    let fix = err.lines().find(|l| l.trim_start().starts_with("mv ")).expect("the command that fixes it");
    let sh = std::process::Command::new("sh").args(["-c", fix]).output().unwrap();
    assert!(sh.status.success(), "{fix}: {}", String::from_utf8_lossy(&sh.stderr));
    let o = launch();
    assert!(o.status.success(), "{}", stderr(&o));
    let tb = read_tensorboard(&d.path().join("out"));
    let names: Vec<&String> = tb["runs"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["smoke"]);
    assert_eq!(tb["session_groups"].as_array().unwrap().len(), 1, "the relaunch kept the run's one session");
}

#[test]
fn dry_run_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("run.yaml");
    std::fs::write(&cfg, format!("name: dry\noutput_root: {}\n", d.path().join("out").display())).unwrap();
    let out = uorch().arg("launch").arg(&cfg).arg("--dry-run").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("would be written to"));
    assert!(!d.path().join("out").exists());
}

#[test]
fn workers_per_machine_follow_the_visible_gpus_by_default() {
    // UORCH_GPU_COUNT pretends the devices CUDA would report.
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("run.yaml");
    std::fs::write(&cfg, format!("name: gpus\noutput_root: {}\n", d.path().join("out").display())).unwrap();
    // (environment, flags, what stdout says or what the error says)
    type Row<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], Result<&'a str, &'a str>);
    let rows: Vec<Row> = vec![
        (&[], &[], Ok("1 worker(s) per machine")),
        (&[("UORCH_GPU_COUNT", "4")], &[], Ok("4 worker(s) per machine")),
        (&[("UORCH_GPU_COUNT", "2"), ("CUDA_VISIBLE_DEVICES", "4,5")], &[], Ok("2 worker(s) per machine")),
        (&[("UORCH_GPU_COUNT", "8")], &["--nproc-per-node", "2"], Ok("2 worker(s) per machine")),
        (&[("UORCH_GPU_COUNT", "8")], &["--nproc-per-node", "gpu"], Ok("8 worker(s) per machine")),
        (&[], &["--nproc", "3"], Ok("3 worker(s) per machine")),
        (&[], &["--nproc-per-node", "gpu"], Err("dist.nproc: `gpu` needs a visible GPU")),
        (&[("UORCH_GPU_COUNT", "1")], &["--nproc-per-node", "2"], Err("NCCL refuses two ranks on one GPU")),
        (&[("UORCH_GPU_COUNT", "1")], &["--nproc-per-node", "2", "--set", "dist.backend=gloo"], Ok("2 worker(s)")),
        (&[], &["--set", "dist.backend=nccl"], Err("dist.backend: nccl needs a GPU")),
    ];
    for (env, args, want) in rows {
        let mut cmd = uorch();
        for k in ["UORCH_GPU_COUNT", "CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"] {
            cmd.env_remove(k);
        }
        let out = cmd.envs(env.iter().copied()).arg("launch").arg(&cfg).arg("--dry-run").args(args).output().unwrap();
        match want {
            Ok(text) => {
                assert!(out.status.success(), "{env:?} {args:?}: {}", stderr(&out));
                assert!(String::from_utf8_lossy(&out.stdout).contains(text), "{env:?} {args:?}: {:?}", out);
            }
            Err(text) => {
                assert!(!out.status.success(), "{env:?} {args:?} was accepted");
                assert!(stderr(&out).contains(text), "{env:?} {args:?}: {}", stderr(&out));
            }
        }
    }
    assert!(!d.path().join("out").exists());
}

#[test]
fn torchruns_environment_variables_stand_in_for_the_flags_and_the_flags_win() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.yaml");
    std::fs::write(&cfg, "name: t\noutput_root: out\n").unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = uorch();
        for k in ["MASTER_ADDR", "MASTER_PORT", "NNODES", "NODE_RANK", "OMP_NUM_THREADS"] {
            cmd.env_remove(k);
        }
        cmd.envs(env.iter().copied()).arg("launch").arg(&cfg).arg("--dry-run").args(args).output().unwrap()
    };
    let env = [("MASTER_ADDR", "10.1.2.3"), ("MASTER_PORT", "29555"), ("NNODES", "2"), ("NODE_RANK", "1")];
    let o = run(&env, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("machines: 2 (this one node rank 1), rendezvous at 10.1.2.3:29555"), "{}", stdout(&o));
    let o = run(&env, &["--nnodes", "4", "--master-port", "29600"]);
    assert!(stdout(&o).contains("machines: 4 (this one node rank 1), rendezvous at 10.1.2.3:29600"), "{}", stdout(&o));
    let o = run(&[], &[]);
    assert!(
        stdout(&o).contains("machines: 1 (this one node rank 0), rendezvous at 127.0.0.1:a free port"),
        "{}",
        stdout(&o)
    );
    // Threads per worker: an exported OMP_NUM_THREADS, unless the config says.
    let o = run(&[("OMP_NUM_THREADS", "3")], &[]);
    assert!(stdout(&o).contains("cpu threads per worker 3 (OMP_NUM_THREADS)"), "{}", stdout(&o));
    let o = run(&[("OMP_NUM_THREADS", "3")], &["--set", "cpu_threads=2"]);
    assert!(stdout(&o).contains("cpu threads per worker 2 (cpu_threads)"), "{}", stdout(&o));
    // A bad value names the variable.
    let o = run(&[("MASTER_PORT", "http")], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("MASTER_PORT"), "{}", stderr(&o));
}
