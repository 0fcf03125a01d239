//! Running a plan: stages whose needs are complete start as `uorch launch
//! STAGE.yaml` children on free slots (a set of GPUs each, or CPU slots), as
//! many at once as fit; a failed stage is retried up to the budget, then
//! marked failed along with what needs it, and the rest go on. An interrupt
//! (Ctrl-C, SIGTERM) is passed once to every running launcher, which has its
//! workers checkpoint; the sweep then stops, and the same command resumes it.
//! Each launcher runs in its own process group (a terminal's Ctrl-C reaches
//! only this controller, which forwards it exactly once) and dies with the
//! controller (SIGTERM: checkpoint and stop).

use super::decide::{self, AfterExit, Ended};
use super::layout;
use super::plan::{Plan, Stage};
use super::state::{self, State, Status};
use crate::launch::gpus;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where and how stages run.
pub struct Options {
    /// The uorch binary (this one).
    pub exe: PathBuf,
    /// The GPUs this controller was given, as `CUDA_VISIBLE_DEVICES` names
    /// them (empty: CPU slots).
    pub gpus: Vec<String>,
    /// More than one machine (Slurm): every machine's controller runs the
    /// same stages in the same order, one at a time, each across all machines.
    pub nnodes: usize,
    pub node_rank: usize,
    pub master_addr: String,
    /// The rendezvous port the user gave (multi-machine stage i uses it + i).
    pub given_port: Option<u16>,
    /// The Slurm job, whose id the other ports derive from.
    pub slurm_job: Option<u64>,
    /// Each stage launcher's `--max-restarts`.
    pub max_restarts: usize,
    /// Seconds between live-view lines when nothing else happens.
    pub progress_every: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed { done: usize, failed: usize },
    Interrupted,
}

struct Slot {
    gpus: Vec<String>,
    running: Option<(usize, Child, Instant)>,
}

/// Status files are the first machine's to write (all see the same folder).
fn persist(o: &Options, dir: &std::path::Path, stage: &str, s: &Status) -> Result<()> {
    if o.node_rank == 0 {
        state::write(dir, stage, s)?;
    }
    Ok(())
}

fn stamp() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{:02}:{:02}:{:02}", (t / 3600) % 24, (t / 60) % 60, t % 60)
}

fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

fn spawn(plan: &Plan, stage: &Stage, index: usize, slot: &Slot, slots: usize, o: &Options) -> Result<Child> {
    let log_path = layout::log(&plan.dir, &stage.name);
    std::fs::create_dir_all(log_path.parent().expect("logs dir"))?;
    let log = crate::fsutil::append_to(&log_path)?;
    let mut cmd = Command::new(&o.exe);
    cmd.arg("launch").arg(plan.config_path(&stage.name));
    if o.nnodes > 1 {
        cmd.args([
            "--nnodes",
            &o.nnodes.to_string(),
            "--node-rank",
            &o.node_rank.to_string(),
            "--master-addr",
            &o.master_addr,
        ]);
        let port = gpus::stage_port(o.given_port, o.slurm_job, &plan.dir.to_string_lossy(), index);
        cmd.args(["--master-port", &port.to_string()]);
    } else {
        // A port of its own (under Slurm every launcher would derive the same one).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        cmd.args(["--nnodes", "1", "--master-port", &port.to_string()]);
    }
    if o.max_restarts > 0 {
        cmd.args(["--max-restarts", &o.max_restarts.to_string()]);
    }
    if !slot.gpus.is_empty() {
        cmd.env("CUDA_VISIBLE_DEVICES", slot.gpus.join(","));
    }
    // Concurrent trials share the cores.
    cmd.env("UORCH_CONCURRENT_TRIALS", slots.to_string());
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: between fork and exec only async-signal-safe calls: a new process
    // group, and SIGTERM when this controller dies.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("starting {} launch", o.exe.display()))
}

/// Run every incomplete stage of `plan`; `interrupts` counts Ctrl-C / SIGTERM.
pub fn run(plan: &Plan, o: &Options, interrupts: Arc<AtomicUsize>) -> Result<Outcome> {
    let n = plan.stages.len();
    let mut status: Vec<Status> = plan.stages.iter().map(|s| state::read(&plan.dir, &s.name)).collect();
    for (i, s) in plan.stages.iter().enumerate() {
        status[i].error = None;
        status[i].attempts = 0;
        status[i].state = decide::on_open(state::complete(s));
        persist(o, &plan.dir, &s.name, &status[i])?;
    }
    let index: HashMap<&str, usize> = plan.stages.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let needs: Vec<Vec<usize>> =
        plan.stages.iter().map(|s| s.needs.iter().map(|d| index[d.as_str()]).collect()).collect();
    let states = |status: &[Status]| status.iter().map(|s| s.state).collect::<Vec<_>>();
    let per_trial = plan.sweep.gpus_per_trial.max(1);
    let mut slots: Vec<Slot> = if o.gpus.is_empty() {
        (0..if o.nnodes > 1 { 1 } else { plan.sweep.cpu_slots })
            .map(|_| Slot { gpus: Vec::new(), running: None })
            .collect()
    } else {
        gpus::slots(&o.gpus, per_trial, o.nnodes).into_iter().map(|gpus| Slot { gpus, running: None }).collect()
    };
    let n_slots = slots.len();
    let done0 = status.iter().filter(|s| s.state == State::Done).count();
    println!(
        "{} stage(s): {done0} complete, {} to run on {n_slots} slot(s){}",
        n,
        n - done0,
        if o.gpus.is_empty() { " (CPU)".to_string() } else { format!(" of {per_trial} GPU(s)") }
    );
    let mut forwarded = 0;
    let mut last_view = Instant::now();
    loop {
        let seen = interrupts.load(Ordering::SeqCst);
        if seen > forwarded {
            if forwarded == 0 {
                println!("[{}] interrupt: running stages checkpoint and stop (again to stop them at once)", stamp());
            }
            for slot in &mut slots {
                if let Some((_, child, _)) = &slot.running {
                    // SAFETY: signalling our own child.
                    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                }
            }
            forwarded = seen;
        }
        let stopping = seen > 0;
        // Finished stages.
        for slot in &mut slots {
            let Some((i, child, t0)) = &mut slot.running else { continue };
            let Some(exit) = child.try_wait()? else { continue };
            let (i, secs) = (*i, t0.elapsed().as_secs_f64());
            slot.running = None;
            let s = &plan.stages[i];
            let st = &mut status[i];
            st.wall_s += secs;
            st.gpus = slot.gpus.len();
            let ended =
                Ended { success: exit.success(), complete: state::complete(s), stopping, attempts: st.attempts };
            match decide::after_exit(ended, plan.sweep.retries) {
                AfterExit::Done => {
                    st.state = State::Done;
                    println!("[{}] done     {} ({:.0} s)", stamp(), s.name, secs);
                }
                AfterExit::Interrupted => {
                    st.state = State::Interrupted;
                    println!("[{}] stopped  {} (checkpointed; rerun to resume)", stamp(), s.name);
                }
                failed => {
                    st.attempts += 1;
                    let why = format!(
                        "{} ({})",
                        if exit.success() {
                            "ended without its results".to_string()
                        } else {
                            format!("exited with {exit}")
                        },
                        layout::log(&plan.dir, &s.name).display()
                    );
                    if let AfterExit::Retry { attempt } = failed {
                        st.state = State::Pending;
                        println!(
                            "[{}] failed   {}: {why}; retrying ({attempt} of {} retries)",
                            stamp(),
                            s.name,
                            plan.sweep.retries
                        );
                    } else {
                        st.state = State::Failed;
                        let error = format!("{why}\n{}", tail(&layout::log(&plan.dir, &s.name), 8));
                        println!("[{}] FAILED   {}: {error}", stamp(), s.name);
                        st.error = Some(error);
                    }
                }
            }
            persist(o, &plan.dir, &s.name, st)?;
        }
        // What needs a failed stage fails too.
        for (i, bad) in decide::propagate_failures(&states(&status), &needs) {
            let (name, bad) = (&plan.stages[i].name, &plan.stages[bad].name);
            status[i].state = State::Failed;
            status[i].error = Some(format!("needs {bad}, which failed"));
            println!("[{}] FAILED   {name}: needs {bad}, which failed", stamp());
            persist(o, &plan.dir, name, &status[i])?;
        }
        // Start what is ready on free slots.
        if !stopping {
            for slot_i in 0..slots.len() {
                if slots[slot_i].running.is_some() {
                    continue;
                }
                let running: Vec<usize> = slots.iter().filter_map(|s| s.running.as_ref().map(|r| r.0)).collect();
                let Some(i) = decide::next_ready(&states(&status), &needs, &running) else { break };
                let child = spawn(plan, &plan.stages[i], i, &slots[slot_i], n_slots, o)?;
                status[i].state = State::Running;
                persist(o, &plan.dir, &plan.stages[i].name, &status[i])?;
                let on = if slots[slot_i].gpus.is_empty() {
                    String::new()
                } else {
                    format!(" on GPU {:?}", slots[slot_i].gpus)
                };
                println!(
                    "[{}] started  {}{on}{}",
                    stamp(),
                    plan.stages[i].name,
                    if status[i].attempts > 0 {
                        format!(" (attempt {})", status[i].attempts + 1)
                    } else {
                        String::new()
                    }
                );
                slots[slot_i].running = Some((i, child, Instant::now()));
            }
        }
        let active = slots.iter().filter(|s| s.running.is_some()).count();
        if active == 0 {
            break;
        }
        if last_view.elapsed() >= o.progress_every {
            println!("[{}] {}", stamp(), view(plan, &status, &slots));
            last_view = Instant::now();
        }
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_millis(200));
    }
    if interrupts.load(Ordering::SeqCst) > 0 {
        return Ok(Outcome::Interrupted);
    }
    let done = status.iter().filter(|s| s.state == State::Done).count();
    let failed = status.iter().filter(|s| s.state == State::Failed).count();
    Ok(Outcome::Completed { done, failed })
}

/// One line: counts, then each running stage's step, loss and ETA.
fn view(plan: &Plan, status: &[Status], slots: &[Slot]) -> String {
    let count = |s: State| status.iter().filter(|x| x.state == s).count();
    let mut parts = vec![format!(
        "done {}/{}, running {}, failed {}",
        count(State::Done),
        status.len(),
        count(State::Running),
        count(State::Failed)
    )];
    for slot in slots {
        if let Some((i, _, t0)) = &slot.running {
            let s = &plan.stages[*i];
            parts.push(match state::progress(s) {
                Some((step, loss, el)) if step > 0 => {
                    let eta = el / step as f64 * s.steps.saturating_sub(step) as f64;
                    format!("{} ({:?}) step {step}/{} loss {loss:.4} ETA {:.0} s", s.name, s.kind, s.steps, eta)
                }
                _ => format!("{} ({:?}) starting, {:.0} s", s.name, s.kind, t0.elapsed().as_secs_f64()),
            });
        }
    }
    parts.join(" | ")
}
