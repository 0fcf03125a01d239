//! `uorch launch`: start one `uorch worker` per GPU (or N CPU processes) with
//! torchrun's environment, prefix their output with the rank, and supervise
//! them: when one dies the others are stopped within seconds and the launcher
//! names the rank, its exit status or signal and its last lines of stderr;
//! Ctrl-C / SIGTERM ask the workers to checkpoint and stop, a second Ctrl-C
//! kills them. Workers die with the launcher (PR_SET_PDEATHSIG), so none is
//! ever orphaned.

use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where this launcher sits among several machines (torchrun's flags).
#[derive(Debug, Clone)]
pub struct Topology {
    pub nproc: usize,
    pub nnodes: usize,
    pub node_rank: usize,
    pub master_addr: String,
    /// 0: pick a free port (single machine only).
    pub master_port: u16,
}

impl Topology {
    /// Fill what the flags left open from SLURM_* variables when under Slurm.
    pub fn resolve(mut self) -> Result<Self> {
        if let (Ok(n), Ok(id)) = (std::env::var("SLURM_NNODES"), std::env::var("SLURM_NODEID")) {
            if self.nnodes == 1 {
                self.nnodes = n.parse().context("SLURM_NNODES is not a number")?;
                self.node_rank = id.parse().context("SLURM_NODEID is not a number")?;
            }
            if self.master_addr == "127.0.0.1" && self.nnodes > 1 {
                let list = std::env::var("SLURM_JOB_NODELIST").context("SLURM_JOB_NODELIST is not set")?;
                let out = Command::new("scontrol")
                    .args(["show", "hostnames", &list])
                    .output()
                    .context("running scontrol show hostnames")?;
                self.master_addr =
                    String::from_utf8_lossy(&out.stdout).lines().next().context("empty SLURM node list")?.to_string();
            }
            if self.master_port == 0 {
                let job: u64 = std::env::var("SLURM_JOB_ID").ok().and_then(|j| j.parse().ok()).unwrap_or(0);
                self.master_port = 20000 + (job % 20000) as u16;
            }
        }
        if self.node_rank >= self.nnodes {
            bail!("--node-rank {} must be below --nnodes {}", self.node_rank, self.nnodes);
        }
        if self.master_port == 0 {
            if self.nnodes > 1 {
                bail!("with --nnodes {} every launcher needs the same --master-port", self.nnodes);
            }
            self.master_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        }
        Ok(self)
    }

    pub fn world(&self) -> usize {
        self.nproc * self.nnodes
    }
}

struct Running {
    rank: usize,
    child: Child,
    last_stderr: Arc<Mutex<VecDeque<String>>>,
    pumps: Vec<std::thread::JoinHandle<()>>,
}

const TAIL: usize = 20;

fn pump(
    stream: impl std::io::Read + Send + 'static,
    rank: usize,
    to_stderr: bool,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(t) = &tail {
                let mut t = t.lock().expect("tail lock");
                if t.len() == TAIL {
                    t.pop_front();
                }
                t.push_back(line.clone());
            }
            if to_stderr {
                let _ = writeln!(std::io::stderr(), "[rank {rank}] {line}");
            } else {
                let _ = writeln!(std::io::stdout(), "[rank {rank}] {line}");
            }
        }
    })
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("signal {s} ({})", signal_name(s)),
        _ => "unknown status".into(),
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        _ => "signal",
    }
}

fn signal(children: &mut [Running], sig: i32) {
    for r in children.iter_mut() {
        if r.child.try_wait().ok().flatten().is_none() {
            // SAFETY: sending a signal to our own child's pid.
            unsafe { libc::kill(r.child.id() as i32, sig) };
        }
    }
}

/// Stop every worker still running: SIGTERM, then SIGKILL after `grace`.
fn stop_all(children: &mut [Running], grace: Duration) {
    signal(children, libc::SIGTERM);
    let t0 = Instant::now();
    while t0.elapsed() < grace && children.iter_mut().any(|r| r.child.try_wait().ok().flatten().is_none()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(children, libc::SIGKILL);
    for r in children.iter_mut() {
        let _ = r.child.wait();
    }
}

/// How a launch ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Completed,
    /// Stopped on request (Ctrl-C / SIGTERM) after the workers checkpointed.
    Interrupted,
}

/// Count Ctrl-C / SIGTERM. One request often arrives more than once at
/// nearly the same moment (a terminal signals the whole process group; Slurm
/// signals every process of a step; a controller forwards it too), so
/// signals within a second of the last counted one count once: only a
/// deliberate second request stops workers without a checkpoint.
pub fn interrupt_counter() -> Result<Arc<AtomicUsize>> {
    let count = Arc::new(AtomicUsize::new(0));
    let last_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (c, l) = (count.clone(), last_ms.clone());
    ctrlc::set_handler(move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if now.saturating_sub(l.load(Ordering::SeqCst)) >= 1000 {
            c.fetch_add(1, Ordering::SeqCst);
            l.store(now, Ordering::SeqCst);
        }
    })?;
    Ok(count)
}

/// Run `uorch worker --config CONFIG` on every local rank and supervise them.
pub fn launch(config: &Path, topo: &Topology, threads_per_worker: usize) -> Result<Ended> {
    let exe = std::env::current_exe()?;
    // Ignore the error when a handler exists (a second launch in one process, as in tests).
    let interrupts = interrupt_counter().unwrap_or_else(|_| Arc::new(AtomicUsize::new(0)));
    let mut children = Vec::new();
    for local in 0..topo.nproc {
        let rank = topo.node_rank * topo.nproc + local;
        let mut cmd = Command::new(&exe);
        cmd.arg("worker")
            .arg("--config")
            .arg(config)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", local.to_string())
            .env("WORLD_SIZE", topo.world().to_string())
            .env("LOCAL_WORLD_SIZE", topo.nproc.to_string())
            .env("MASTER_ADDR", &topo.master_addr)
            .env("MASTER_PORT", topo.master_port.to_string())
            .env("UORCH_THREADS", threads_per_worker.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl in the forked child before exec: die with the launcher.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("starting worker {rank}"))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let pumps = vec![
            pump(child.stdout.take().expect("piped"), rank, false, None),
            pump(child.stderr.take().expect("piped"), rank, true, Some(tail.clone())),
        ];
        children.push(Running { rank, child, last_stderr: tail, pumps });
    }

    let mut forwarded = 0;
    loop {
        let seen = interrupts.load(Ordering::SeqCst);
        if seen >= 2 {
            signal(&mut children, libc::SIGKILL);
            for r in children.iter_mut() {
                let _ = r.child.wait();
            }
            bail!("stopped at once on a second interrupt: workers killed without a checkpoint");
        }
        if seen == 1 && forwarded == 0 {
            // A terminal's Ctrl-C reaches the workers too; SIGTERM from elsewhere does not.
            eprintln!("interrupt: asking the workers to checkpoint and stop (again to kill them)");
            signal(&mut children, libc::SIGTERM);
            forwarded = 1;
        }
        let mut all_done = true;
        for i in 0..children.len() {
            match children[i].child.try_wait()? {
                None => all_done = false,
                Some(status) if status.success() => {}
                Some(status) if seen > 0 => {
                    let _ = status; // stopping on request: statuses of interrupted workers are expected
                }
                Some(status) => {
                    let rank = children[i].rank;
                    for p in std::mem::take(&mut children[i].pumps) {
                        let _ = p.join();
                    }
                    let tail: Vec<String> = children[i].last_stderr.lock().expect("tail").iter().cloned().collect();
                    stop_all(&mut children, Duration::from_secs(3));
                    bail!(
                        "worker rank {rank} failed ({}); the other workers were stopped.\nlast lines of its stderr:\n{}",
                        describe(status),
                        if tail.is_empty() { "  (none)".to_string() } else { tail.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n") }
                    );
                }
            }
        }
        if all_done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for r in &mut children {
        for p in std::mem::take(&mut r.pumps) {
            let _ = p.join();
        }
    }
    Ok(if interrupts.load(Ordering::SeqCst) > 0 { Ended::Interrupted } else { Ended::Completed })
}
