//! Supervising the workers of one launch: start one `uorch worker` per local
//! rank with torchrun's environment, prefix their output with the rank, and
//! act on what happens ([`decide`]): when one dies the others are stopped
//! within seconds and the launcher names the rank, its exit status or signal
//! and its last lines of stderr; Ctrl-C / SIGTERM ask the workers to
//! checkpoint and stop, a second Ctrl-C kills them. Workers die with the
//! launcher (PR_SET_PDEATHSIG), so none is ever orphaned. With
//! `--max-restarts N`, a failure restarts every worker from the newest
//! checkpoint instead, up to N times ([`after_failure`]).

use super::topology::Topology;
use crate::dist::rendezvous::{self, Party, Stopped};
use crate::dist::Store;
use crate::rundir::{RunDir, StageFiles};
use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Completed,
    /// Stopped on request (Ctrl-C / SIGTERM) after the workers checkpointed.
    Interrupted,
}

/// How one worker failed: what the launcher reports, or logs before a restart.
struct Failure {
    rank: usize,
    status: ExitStatus,
    tail: Vec<String>,
    /// Ranks of other machines that had stopped before it, as their
    /// launchers recorded them (the likely cause).
    after: Vec<(usize, String)>,
}

impl Failure {
    fn report(&self) -> String {
        let after = if self.after.is_empty() {
            String::new()
        } else {
            format!(" after {} on another node", rendezvous::describe(&self.after))
        };
        format!(
            "worker rank {} failed ({}){after}; the other workers were stopped.\nlast lines of its stderr:\n{}",
            self.rank,
            describe(self.status),
            if self.tail.is_empty() {
                "  (none)".to_string()
            } else {
                self.tail.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
            }
        )
    }
}

/// Run `uorch worker --config CONFIG` on every local rank and supervise
/// them. When one fails, every worker is stopped and, up to `max_restarts`
/// times (torchrun's `--max-restarts`), all are started again: they resume
/// from the run's newest complete checkpoint. Each restart is logged, with
/// its reason, to `restarts` (one JSON line) and the workers see its number
/// in `TORCHELASTIC_RESTART_COUNT`.
pub fn launch(
    config: &Path,
    topo: &Topology,
    threads_per_worker: usize,
    max_restarts: usize,
    run: &RunDir,
    timeout: Duration,
) -> Result<Ended> {
    let restarts = &run.restarts();
    // Ignore the error when a handler exists (a second launch in one process, as in tests).
    let interrupts = super::signals::interrupt_counter().unwrap_or_else(|_| Arc::new(AtomicUsize::new(0)));
    let mut topo = topo.clone();
    let mut restart = 0;
    loop {
        let agent = Agent::start(&topo, timeout)?;
        let mut children = spawn_workers(config, &topo, threads_per_worker, restart)?;
        let failure = match supervise(&mut children, &interrupts, run, &agent)? {
            Ok(ended) => return Ok(ended),
            Err(failure) => failure,
        };
        match after_failure(restart, max_restarts, topo.nnodes) {
            Recovery::GiveUp => bail!("{}", failure.report()),
            Recovery::Restart => {
                restart += 1;
                let why = format!("worker rank {} failed ({})", failure.rank, describe(failure.status));
                eprintln!(
                    "{why}; restarting every worker from the newest checkpoint (restart {restart} of {max_restarts})"
                );
                let line = serde_json::json!({"restart": restart, "max_restarts": max_restarts, "rank": failure.rank,
                    "status": describe(failure.status), "unix_time": unix_time(), "stderr_tail": failure.tail});
                let mut f = crate::fsutil::append_to(restarts)?;
                writeln!(f, "{line}").with_context(|| format!("appending to {}", restarts.display()))?;
                // One machine: a fresh rendezvous port (the old server's may linger).
                topo.master_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            }
        }
    }
}

/// This launcher's part of the rendezvous, for one start of the workers:
/// the first machine's launcher serves the store (so it outlives any
/// worker), the others join it, and every machine has arrived before a
/// worker starts.
struct Agent {
    /// Kept open while the workers run.
    _store: Store,
    stopped: Stopped,
}

impl Agent {
    fn start(topo: &Topology, timeout: Duration) -> Result<Self> {
        let (addr, port, world) = (&topo.master_addr, topo.master_port, topo.world());
        let store = if topo.node_rank == 0 {
            rendezvous::serve(addr, port, world, timeout, topo.nnodes > 1)?
        } else {
            rendezvous::join(addr, port, world, timeout)?
        };
        if topo.nnodes > 1 {
            let name = |i: usize| format!("node {i}");
            Party { what: "node", expected: topo.nnodes, name: &name }.arrive(&store, topo.node_rank, timeout, true)?;
        }
        let stopped = Stopped::new(&store, world)?;
        Ok(Self { _store: store, stopped })
    }
}

fn unix_time() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What a launcher does when a worker failed on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Stop the others and start every worker again.
    Restart,
    /// Stop the others and fail the launch, naming the worker.
    GiveUp,
}

/// After `done` restarts of at most `max`: restart while some are left. On
/// several machines the other launchers would not know of a restart, so
/// elastic restarts are for one machine.
pub fn after_failure(done: usize, max: usize, nnodes: usize) -> Recovery {
    if nnodes == 1 && done < max {
        Recovery::Restart
    } else {
        Recovery::GiveUp
    }
}

fn spawn_workers(config: &Path, topo: &Topology, threads_per_worker: usize, restart: usize) -> Result<Vec<Running>> {
    let exe = std::env::current_exe()?;
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
            .env("TORCHELASTIC_RESTART_COUNT", restart.to_string())
            .env("TORCHELASTIC_USE_AGENT_STORE", "True")
            .env("UORCH_THREADS", threads_per_worker.to_string())
            // OpenMP inside libtorch (and anything else the worker loads) agrees.
            .env("OMP_NUM_THREADS", threads_per_worker.to_string())
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
    Ok(children)
}

/// Wait until every worker's output has been passed on (their pipes close
/// when they exit).
fn join_pumps(children: &mut [Running]) {
    for r in children.iter_mut() {
        for p in std::mem::take(&mut r.pumps) {
            let _ = p.join();
        }
    }
}

/// Act on the workers until they have all exited ([`decide`]); a worker's
/// own failure stops the others and comes back as the inner `Err`.
fn supervise(
    children: &mut [Running],
    interrupts: &AtomicUsize,
    run: &RunDir,
    agent: &Agent,
) -> Result<std::result::Result<Ended, Failure>> {
    let mut forwarded: Option<Newest> = None;
    loop {
        let seen = interrupts.load(Ordering::SeqCst);
        let states: Vec<WorkerState> =
            children.iter_mut().map(|r| r.child.try_wait().map(WorkerState::of)).collect::<std::io::Result<_>>()?;
        match decide(seen, forwarded.is_some(), &states) {
            Action::Wait => std::thread::sleep(Duration::from_millis(100)),
            Action::Forward => {
                // A terminal's Ctrl-C reaches the workers too; SIGTERM from elsewhere does not.
                eprintln!("interrupt: asking the workers to checkpoint and stop (again to kill them)");
                signal(children, libc::SIGTERM);
                forwarded = Some(newest_checkpoint(run));
            }
            Action::KillAll => {
                signal(children, libc::SIGKILL);
                for r in children.iter_mut() {
                    let _ = r.child.wait();
                }
                bail!("stopped at once on a second interrupt: {}", after_kill(run, &forwarded.flatten()));
            }
            Action::Fail(i) => {
                let (rank, WorkerState::Failed(status)) = (children[i].rank, states[i]) else {
                    unreachable!("decide names a failed worker")
                };
                // Before the others are stopped: their failing collectives name this rank.
                let ours = |r: usize| children.iter().any(|c| c.rank == r);
                let after = agent.stopped.reported().into_iter().filter(|(r, _)| !ours(*r)).collect();
                let _ = agent.stopped.report(rank, &describe(status));
                for p in std::mem::take(&mut children[i].pumps) {
                    let _ = p.join();
                }
                let tail: Vec<String> = children[i].last_stderr.lock().expect("tail").iter().cloned().collect();
                stop_all(children, Duration::from_secs(3));
                join_pumps(children);
                return Ok(Err(Failure { rank, status, tail, after }));
            }
            Action::Finished(ended) => {
                join_pumps(children);
                return Ok(Ok(ended));
            }
        }
    }
}

/// The run's newest sealed checkpoint (finetuning's first), with its step
/// and when its folder last changed: what a rerun resumes from.
type Newest = Option<(PathBuf, u64, Option<SystemTime>)>;

fn newest_checkpoint(run: &RunDir) -> Newest {
    [StageFiles::Finetune, StageFiles::Pretrain].into_iter().find_map(|stage| {
        let (step, dir) = crate::train::checkpoint::newest(&run.checkpoints(stage))?;
        let written = std::fs::metadata(&dir).and_then(|m| m.modified()).ok();
        Some((dir, step, written))
    })
}

/// What a second interrupt left behind: whether the workers checkpointed
/// after the first (`asked`: the newest checkpoint when it was forwarded),
/// and what a rerun resumes from.
fn after_kill(run: &RunDir, asked: &Newest) -> String {
    match newest_checkpoint(run) {
        None => "the workers were killed before any checkpoint was written; running again starts over".into(),
        Some(now) => {
            let when = if asked.as_ref() != Some(&now) {
                "the workers were killed after writing the checkpoint the first interrupt asked for"
            } else {
                "the workers were killed before writing the checkpoint the first interrupt asked for"
            };
            format!("{when}; running the same command again resumes from {} (step {})", now.0.display(), now.1)
        }
    }
}

/// What the supervisor knows of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Running,
    /// Exited 0: its stages are done.
    Succeeded,
    /// Stopped on request after checkpointing ([`STOPPED`](super::worker::STOPPED)).
    Stopped,
    Failed(ExitStatus),
}

impl WorkerState {
    fn of(status: Option<ExitStatus>) -> Self {
        match status {
            None => WorkerState::Running,
            Some(s) if s.success() => WorkerState::Succeeded,
            Some(s) if s.code() == Some(super::worker::STOPPED) => WorkerState::Stopped,
            Some(s) => WorkerState::Failed(s),
        }
    }
}

/// What the supervisor does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do yet: look again shortly.
    Wait,
    /// First interrupt: SIGTERM every worker (they checkpoint and stop).
    Forward,
    /// Second interrupt: SIGKILL every worker, no checkpoint.
    KillAll,
    /// Worker `i` failed on its own: stop the others and report it.
    Fail(usize),
    /// Every worker has exited.
    Finished(Ended),
}

/// The supervisor's decision, from the interrupts counted so far, whether the
/// first was already forwarded, and each worker's state. After an interrupt a
/// worker's failure is expected (it was asked to stop), so only failures
/// without one stop the group; the worker named is the first in rank order
/// that a signal killed, else the first that failed. Once all have exited,
/// the launch was interrupted if any worker stopped on request, or failed
/// after an interrupt; workers that all finished their stages completed it,
/// however late an interrupt came.
pub fn decide(interrupts: usize, forwarded: bool, workers: &[WorkerState]) -> Action {
    if interrupts >= 2 {
        return Action::KillAll;
    }
    if interrupts == 1 && !forwarded {
        return Action::Forward;
    }
    if interrupts == 0 {
        // A worker killed by a signal is the cause when others only exited
        // with an error (their collectives failed once it was gone).
        let killed = workers.iter().position(|w| matches!(w, WorkerState::Failed(s) if s.signal().is_some()));
        if let Some(i) = killed.or_else(|| workers.iter().position(|w| matches!(w, WorkerState::Failed(_)))) {
            return Action::Fail(i);
        }
    }
    if workers.iter().all(|w| *w != WorkerState::Running) {
        let cut_short = workers.iter().any(|w| matches!(w, WorkerState::Stopped | WorkerState::Failed(_)));
        return Action::Finished(if cut_short { Ended::Interrupted } else { Ended::Completed });
    }
    Action::Wait
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use Action::*;
    use WorkerState::*;

    fn failed() -> WorkerState {
        Failed(ExitStatus::from_raw(libc::SIGKILL))
    }

    fn exited(code: i32) -> WorkerState {
        Failed(ExitStatus::from_raw(code << 8))
    }

    #[test]
    fn each_row_of_the_decision_table_gives_its_action() {
        let rows: Vec<(usize, bool, Vec<WorkerState>, Action)> = vec![
            // running, nothing happened
            (0, false, vec![Running, Running], Wait),
            // one finished early, the other still running
            (0, false, vec![Succeeded, Running], Wait),
            // all finished
            (0, false, vec![Succeeded, Succeeded], Finished(Ended::Completed)),
            // a failure stops the group, even while others run; the first failed rank is named
            (0, false, vec![Running, failed(), failed()], Fail(1)),
            (0, false, vec![failed(), Succeeded], Fail(0)),
            // the one a signal killed is named, not a peer whose collective then failed
            (0, false, vec![exited(1), failed()], Fail(1)),
            (0, false, vec![exited(1), exited(1)], Fail(0)),
            // first interrupt: forwarded once
            (1, false, vec![Running, Running], Forward),
            (1, true, vec![Running, Running], Wait),
            // after an interrupt, failures are the requested stop
            (1, true, vec![failed(), Running], Wait),
            (1, true, vec![failed(), Succeeded], Finished(Ended::Interrupted)),
            (1, true, vec![Stopped, Stopped], Finished(Ended::Interrupted)),
            // an interrupt too late to cut anything short (the final
            // evaluation ran to its end): the run completed
            (1, true, vec![Succeeded, Succeeded], Finished(Ended::Completed)),
            // workers stopped by a signal sent to them, not to the launcher
            (0, false, vec![Stopped, Stopped], Finished(Ended::Interrupted)),
            (0, false, vec![Stopped, Running], Wait),
            // a second interrupt kills at once, forwarded or not
            (2, true, vec![Running, Running], KillAll),
            (3, false, vec![Succeeded, Running], KillAll),
        ];
        for (interrupts, forwarded, workers, want) in rows {
            assert_eq!(decide(interrupts, forwarded, &workers), want, "{interrupts} {forwarded} {workers:?}");
        }
    }

    /// A sealed, empty checkpoint of `step` in the run's finetuning folder.
    fn checkpoint(run: &RunDir, step: u64) -> std::path::PathBuf {
        use crate::train::checkpoint::{commit, staging, TrainState};
        let root = run.checkpoints(StageFiles::Finetune);
        let state = TrainState {
            step,
            config_hash: "h".into(),
            world_size: 1,
            loss: 0.0,
            files: Default::default(),
            valid: None,
        };
        commit(&root, &staging(&root, step).unwrap(), state, 3).unwrap()
    }

    #[test]
    fn after_a_second_interrupt_the_launcher_says_whether_the_requested_checkpoint_was_written() {
        let d = tempfile::tempdir().unwrap();
        let run = RunDir::new(d.path());
        let said = after_kill(&run, &newest_checkpoint(&run));
        assert!(said.contains("before any checkpoint was written; running again starts over"), "{said}");
        let older = checkpoint(&run, 10);
        let asked = newest_checkpoint(&run);
        let said = after_kill(&run, &asked);
        assert!(said.contains("killed before writing the checkpoint the first interrupt asked for"), "{said}");
        assert!(said.contains(&format!("resumes from {} (step 10)", older.display())), "{said}");
        let newer = checkpoint(&run, 12);
        let said = after_kill(&run, &asked);
        assert!(said.contains("killed after writing the checkpoint the first interrupt asked for"), "{said}");
        assert!(said.contains(&format!("resumes from {} (step 12)", newer.display())), "{said}");
        // The interrupt asked when nothing was sealed yet.
        let said = after_kill(&run, &None);
        assert!(said.contains("killed after writing"), "{said}");
    }

    #[test]
    fn each_row_of_the_restart_table_gives_its_recovery() {
        use Recovery::*;
        let rows: Vec<(usize, usize, usize, Recovery)> = vec![
            // (restarts done, --max-restarts, machines)
            (0, 0, 1, GiveUp),  // the default: a failure fails the launch
            (0, 1, 1, Restart), // one restart allowed
            (1, 1, 1, GiveUp),  // used up
            (2, 3, 1, Restart),
            (0, 3, 2, GiveUp), // several machines: the other launchers would not follow
        ];
        for (done, max, nnodes, want) in rows {
            assert_eq!(after_failure(done, max, nnodes), want, "{done} {max} {nnodes}");
        }
    }
}
