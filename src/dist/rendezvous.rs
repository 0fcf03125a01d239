//! The rendezvous around the TCPStore, as a user sees it: the first machine's
//! launcher serves the store on the master address only (as torchrun's agent
//! does, so that the store outlives any worker); who has arrived, machines
//! and then ranks, is said while waiting and named when some never come; and
//! launchers record which of their workers stopped, so that a peer's failed
//! collective names that rank instead of blaming a timeout.

use super::store::Store;
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

/// How often a wait says where it stands: a third of its patience, between
/// 1 and 10 seconds.
fn progress_every(timeout: Duration) -> Duration {
    (timeout / 3).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// Serve the store on `addr:port` (a name resolves to the interface it
/// names), for `world` clients. With `other_machines`, a name that resolves
/// to loopback here (Debian's `127.0.1.1 HOST` in /etc/hosts) could not be
/// reached from them: then every interface is served, and that is said.
pub fn serve(addr: &str, port: u16, world: usize, timeout: Duration, other_machines: bool) -> Result<Store> {
    let cannot = || format!("the rendezvous cannot listen on {addr}:{port} (--master-addr, --master-port)");
    let mut listener = std::net::TcpListener::bind((addr, port)).with_context(cannot)?;
    if other_machines && listener.local_addr()?.ip().is_loopback() {
        eprintln!(
            "rendezvous: {addr} is a loopback address on this machine ({}), which the others cannot reach: listening on every interface",
            listener.local_addr()?.ip()
        );
        drop(listener);
        listener = std::net::TcpListener::bind(("0.0.0.0", port)).with_context(cannot)?;
    }
    Store::serve(listener, world, timeout)
}

/// Connect to the store at `addr:port`, saying every few seconds that this
/// machine still waits for it; an error after `timeout`.
pub fn join(addr: &str, port: u16, world: usize, timeout: Duration) -> Result<Store> {
    let (t0, every) = (Instant::now(), progress_every(timeout));
    loop {
        let left = timeout.saturating_sub(t0.elapsed());
        match Store::tcp(addr, port, world, false, every.min(left).max(Duration::from_millis(100))) {
            Ok(mut store) => {
                store.timeout = timeout;
                return Ok(store);
            }
            // Said after every failed try, the last included (one try may take the whole timeout).
            Err(e) => {
                eprintln!(
                    "rendezvous: waiting for the first machine's launcher at {addr}:{port} ({:.0} s of {:.0} s)",
                    t0.elapsed().as_secs_f64(),
                    timeout.as_secs_f64()
                );
                if t0.elapsed() < timeout {
                    continue;
                }
                return Err(e.context(format!(
                    "the first machine's launcher did not answer at {addr}:{port} within {:.0} s: is `uorch launch --node-rank 0` running there, with this --master-addr and --master-port?",
                    timeout.as_secs_f64()
                )));
            }
        }
    }
}

/// Who takes part in one wait: `what` they are ("machine", "rank") and how
/// each is named in messages.
pub struct Party<'a> {
    pub what: &'static str,
    pub expected: usize,
    pub name: &'a dyn Fn(usize) -> String,
}

impl Party<'_> {
    fn key(&self, i: usize) -> String {
        format!("rendezvous/{}/{i}", self.what)
    }

    fn count_key(&self) -> String {
        format!("rendezvous/{}/count", self.what)
    }

    fn missing(&self, store: &Store) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        for i in 0..self.expected {
            if !store.check(&[&self.key(i)])? {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// How many are here, and the names of those missing.
    fn tally(&self, store: &Store) -> Result<(usize, String)> {
        let missing = self.missing(store)?;
        let names = missing.iter().map(|&i| (self.name)(i)).collect::<Vec<_>>().join(", ");
        Ok((self.expected - missing.len(), names))
    }

    /// Say that `me` is here, and wait until all are. With `speak`, a line
    /// every few seconds names those still missing; after `timeout` the
    /// error names them.
    pub fn arrive(&self, store: &Store, me: usize, timeout: Duration, speak: bool) -> Result<()> {
        store.set(&self.key(me), b"")?;
        store.add(&self.count_key(), 1)?;
        let (t0, every) = (Instant::now(), progress_every(timeout));
        let mut next = every;
        while store.add(&self.count_key(), 0)? < self.expected as i64 {
            let waited = t0.elapsed();
            if waited >= timeout {
                let (here, missing) = self.tally(store)?;
                bail!(
                    "rendezvous: {here} of {} {}s arrived within {:.0} s (dist.timeout_s); missing: {missing}",
                    self.expected,
                    self.what,
                    timeout.as_secs_f64()
                );
            }
            if speak && waited >= next {
                let (here, missing) = self.tally(store)?;
                let (n, what, s) = (self.expected, self.what, waited.as_secs_f64());
                eprintln!("rendezvous: {here} of {n} {what}s here after {s:.0} s; waiting for {missing}");
                next += every;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// Which ranks stopped, as their launchers saw them: a launcher records its
/// worker's exit before stopping the others, and a rank whose collective or
/// wait then fails reads it here.
pub struct Stopped {
    store: Store,
    world: usize,
}

impl Stopped {
    pub fn new(store: &Store, world: usize) -> Result<Self> {
        Ok(Self { store: store.prefixed("stopped")?, world })
    }

    /// Record that `rank` stopped, `how` (e.g. "exit status 1").
    pub fn report(&self, rank: usize, how: &str) -> Result<()> {
        self.store.set(&rank.to_string(), how.as_bytes())
    }

    /// The ranks recorded so far, with how each stopped (none when the
    /// store is gone).
    pub fn reported(&self) -> Vec<(usize, String)> {
        (0..self.world)
            .filter(|r| self.store.check(&[&r.to_string()]).unwrap_or(false))
            .filter_map(|r| Some((r, String::from_utf8_lossy(&self.store.get(&r.to_string()).ok()?).into_owned())))
            .collect()
    }

    /// Those recorded within `patience`: a launcher notices a dead worker
    /// within a fraction of a second, a peer's collective may fail first.
    pub fn awaited(&self, patience: Duration) -> Vec<(usize, String)> {
        let t0 = Instant::now();
        loop {
            let seen = self.reported();
            if !seen.is_empty() || t0.elapsed() >= patience {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// "rank 1 stopped (exit status 1)", one clause per rank.
pub fn describe(stopped: &[(usize, String)]) -> String {
    stopped.iter().map(|(r, how)| format!("rank {r} stopped ({how})")).collect::<Vec<_>>().join("; ")
}
