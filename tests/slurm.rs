//! `sbatch slurm/sweep.sh` on a real single-node Slurm cluster (slurmctld +
//! slurmd + munge from Debian, started by slurm/cluster.sh): the sweep
//! completes with its results table, and the time-limit signal mid-sweep
//! makes the job checkpoint and requeue itself, after which it resumes rather
//! than restarts. Needs root (CI runs as root; set-up installs the packages).

use crate::common::{prepare_ml100k, project_root, stderr, tiny_model};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let o = Command::new(project_root().join("slurm/cluster.sh")).arg("start").arg(dir).output().unwrap();
        assert!(o.status.success(), "slurm/cluster.sh start: {}", stderr(&o));
        Cluster { dir: dir.to_path_buf() }
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.dir.join("slurm.conf"));
        c
    }

    /// `JobState` and `Restarts` of a job.
    fn job(&self, id: &str) -> (String, u32) {
        let o = self.cmd("scontrol").args(["show", "job", id, "-o"]).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let field =
            |k: &str| text.split_whitespace().find_map(|f| f.strip_prefix(&format!("{k}="))).unwrap_or("").to_string();
        (field("JobState"), field("Restarts").parse().unwrap_or(0))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(project_root().join("slurm/cluster.sh")).arg("stop").arg(&self.dir).output();
    }
}

#[test]
fn sbatch_runs_the_sweep_and_a_requeue_at_the_time_limit_resumes_it() {
    let d = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&d.path().join("slurm"));
    let store = prepare_ml100k(d.path());
    let model = d.path().join("tiny");
    tiny_model(&model);
    let exp = d.path().join("exp.yaml");
    std::fs::write(
        &exp,
        format!(
            "name: onslurm\noutput_root: {}\nseed: 4\ndata: {{store: {}, window: 12, stride: 12}}\nencoder: {{dim: 16, layers: 1, heads: 2}}\n\
             pretrain: {{steps: 4, batch_size: 8, checkpoint_every: 0}}\n\
             finetune: {{model: {}, steps: 150, batch_size: 2, eval_examples: 3, text_prompt_baseline: false, log_every: 10}}\n\
             dist: {{nproc: 1}}\nsweep:\n  axes:\n    - {{name: layers, key: finetune.cross_attention_layers, values: [[0], [1]]}}\n",
            d.path().join("out").display(),
            store.display(),
            model.display()
        ),
    )
    .unwrap();
    let out_file = d.path().join("job.out");
    let o = cluster
        .cmd("sbatch")
        .args(["--parsable", "--chdir"])
        .arg(project_root())
        .arg(format!("--output={}", out_file.display()))
        .arg(project_root().join("slurm/sweep.sh"))
        .arg(&exp)
        .env("UORCH_BIN", env!("CARGO_BIN_EXE_uorch"))
        .output()
        .unwrap();
    assert!(o.status.success(), "sbatch: {}", stderr(&o));
    let job = String::from_utf8_lossy(&o.stdout).trim().split(';').next().unwrap().to_string();
    let expdir = d.path().join("out/onslurm");

    // Mid-sweep (the first trial done, the second a few steps in), send what
    // Slurm sends before the time limit (--signal=B:USR1@...).
    let log = expdir.join("runs/layers=1/finetune_log.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&log).map(|s| s.lines().count()).unwrap_or(0) < 5 {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "the second trial did not start; job output:\n{}",
            std::fs::read_to_string(&out_file).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = cluster.cmd("scancel").args(["--signal=USR1", "--batch", &job]).output().unwrap();
    assert!(o.status.success(), "scancel: {}", stderr(&o));

    let t0 = Instant::now();
    let (mut pending_since, mut released) = (None::<Instant>, false);
    loop {
        let (state, restarts) = cluster.job(&job);
        if state == "COMPLETED" {
            assert_eq!(restarts, 1, "the job requeued itself once");
            break;
        }
        assert!(
            !matches!(state.as_str(), "FAILED" | "CANCELLED" | "TIMEOUT" | "NODE_FAIL"),
            "job {state}:\n{}",
            std::fs::read_to_string(&out_file).unwrap_or_default()
        );
        if state == "PENDING" && restarts == 1 {
            // Slurm holds a requeued job back for minutes; once the old
            // instance has surely finished cleaning up, let it start.
            let since = *pending_since.get_or_insert_with(Instant::now);
            if !released && since.elapsed() > Duration::from_secs(5) {
                let _ = cluster.cmd("scontrol").args(["update", &format!("JobId={job}"), "StartTime=now"]).output();
                released = true;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "job still {state}:\n{}",
            std::fs::read_to_string(&out_file).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = std::fs::read_to_string(&out_file).unwrap();
    assert!(out.contains("time limit near"), "{out}");
    assert!(out.contains("(start 2)"), "the requeued job ran: {out}");
    // The first run did the pretraining and the first trial; the requeued one resumed the second.
    assert_eq!(out.matches("started  layers=0").count(), 1, "{out}");
    assert_eq!(out.matches("started  pretrain-").count(), 1, "{out}");
    assert!(out.contains("3 stage(s): 2 complete, 1 to run"), "{out}");
    let launch_log = std::fs::read_to_string(expdir.join("logs/layers=1.log")).unwrap();
    assert!(launch_log.contains("finetune: resuming from"), "{launch_log}\njob output:\n{out}");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 150);
    // Its results table.
    assert!(out.contains("results: ") && out.contains("layers=1") && out.contains("accuracy"), "{out}");
    let csv = std::fs::read_to_string(expdir.join("results.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| l.contains(",done,")).count(), 2, "{csv}");
}
