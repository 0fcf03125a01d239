//! More than one machine: two network namespaces joined by a veth link, each
//! with its own address, stand in for two hosts. One launcher runs in each
//! with `--nnodes 2`; the four workers rendezvous over the link and train in
//! lockstep (every rank ends with the same parameters). With its own disk
//! mounted over the output folder on the second "host" (a tmpfs in a mount
//! namespace of its own), the first checkpoint fails and says why. Needs root,
//! `ip` and `unshare` (set-up installs iproute2; CI runs as root).

use crate::common::{prepare_ml100k, stderr};
use std::process::{Command, Output};

/// Namespaces and the link, removed again on drop.
struct Hosts {
    ns: [String; 2],
    addr: [String; 2],
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("ip (iproute2) runs");
    assert!(o.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
}

impl Hosts {
    /// The pair numbered `k` (0 or 1) of this test process.
    fn new(k: u32) -> Hosts {
        let id = (std::process::id() % 100) * 2 + k + 20;
        let ns = [format!("uorch-a{id}"), format!("uorch-b{id}")];
        let addr = [format!("10.{id}.0.1"), format!("10.{id}.0.2")];
        let veth = [format!("ua{id}"), format!("ub{id}")];
        let h = Hosts { ns, addr };
        for n in &h.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            ip(&["netns", "add", n]);
            ip(&["netns", "exec", n, "ip", "link", "set", "lo", "up"]);
        }
        ip(&["link", "add", &veth[0], "netns", &h.ns[0], "type", "veth", "peer", "name", &veth[1], "netns", &h.ns[1]]);
        for ((ns, addr), dev) in h.ns.iter().zip(&h.addr).zip(&veth) {
            ip(&["netns", "exec", ns, "ip", "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["netns", "exec", ns, "ip", "link", "set", dev, "up"]);
        }
        h
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

#[test]
fn two_launchers_in_two_network_namespaces_train_four_workers_in_lockstep() {
    let d = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(d.path());
    let hosts = Hosts::new(0);
    let port = 29000 + (std::process::id() % 500) as u16;
    let mut children = Vec::new();
    for node in 0..2 {
        // The hosts share the output folder, as checkpoints need (the next test
        // shows the failure without).
        let cfg = d.path().join(format!("node{node}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "name: lockstep\noutput_root: {}\nseed: 9\ndata: {{store: {}, window: 20, stride: 20}}\nencoder: {{dim: 16, layers: 1, heads: 2}}\n\
                 pretrain: {{steps: 15, batch_size: 8, checkpoint_every: 0}}\ndist: {{nproc: 2, timeout_s: 60}}\n",
                d.path().join("shared").display(),
                store.display()
            ),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &hosts.ns[node], "env", &format!("UORCH_HOST_ADDR={}", hosts.addr[node])])
            .arg(env!("CARGO_BIN_EXE_uorch"))
            .arg("launch")
            .arg(&cfg)
            .args([
                "--nnodes",
                "2",
                "--node-rank",
                &node.to_string(),
                "--master-addr",
                &hosts.addr[0],
                "--master-port",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        children.push(child);
    }
    let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let mut digests = std::collections::BTreeMap::new();
    for (node, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "node {node}:\n{}", stderr(o));
        for line in stderr(o).lines() {
            // "[rank R] rank R of 4: parameters DIGEST"
            if let Some(rest) = line.split("] rank ").nth(1) {
                if let Some((head, digest)) = rest.split_once(": parameters ") {
                    let rank: usize = head.split(' ').next().unwrap().parse().unwrap();
                    assert!(head.ends_with("of 4"), "{line}");
                    digests.insert(rank, digest.trim().to_string());
                }
            }
        }
    }
    assert_eq!(digests.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3], "every rank reports: {digests:?}");
    let first = &digests[&0];
    assert!(digests.values().all(|d| d == first), "ranks diverged: {digests:?}");
    // Ranks 2 and 3 ran in the second namespace: the rendezvous crossed the link.
    let node1 = stderr(&outs[1]);
    assert!(node1.contains("[rank 2]") && node1.contains("[rank 3]"), "{node1}");
}

#[test]
fn without_a_file_system_both_hosts_share_the_first_checkpoint_fails_and_says_so() {
    let d = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(d.path());
    let hosts = Hosts::new(1);
    let port = 29500 + (std::process::id() % 500) as u16;
    // One config and one output path, as on a cluster; the second host's
    // view of that path is a disk of its own.
    let out = d.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let cfg = d.path().join("run.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: noshare\noutput_root: {}\nseed: 9\ndata: {{store: {}, window: 20, stride: 20}}\nencoder: {{dim: 16, layers: 1, heads: 2}}\n\
             pretrain: {{steps: 15, batch_size: 8, checkpoint_every: 5}}\ndist: {{nproc: 1, timeout_s: 60}}\n",
            out.display(),
            store.display()
        ),
    )
    .unwrap();
    let mut children = Vec::new();
    for node in 0..2 {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &hosts.ns[node]]);
        if node == 1 {
            c.args(["unshare", "--mount", "sh", "-c", "mount -t tmpfs host2-disk \"$0\" && exec \"$@\""]).arg(&out);
        }
        c.args(["env", &format!("UORCH_HOST_ADDR={}", hosts.addr[node])])
            .arg(env!("CARGO_BIN_EXE_uorch"))
            .arg("launch")
            .arg(&cfg)
            .args(["--nnodes", "2", "--node-rank", &node.to_string(), "--master-addr", &hosts.addr[0]])
            .args(["--master-port", &port.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(c.spawn().unwrap());
    }
    let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for (node, o) in outs.iter().enumerate() {
        assert!(!o.status.success(), "node {node} succeeded:\n{}", stderr(o));
    }
    let node0 = stderr(&outs[0]);
    let why = format!("rank 1 on {}: the staging folder", hosts.addr[1]);
    assert!(node0.contains(&why), "{node0}");
    assert!(node0.contains("checkpoints need a file system that every machine of the run shares"), "{node0}");
    assert!(stderr(&outs[1]).contains("checkpoints need a file system"), "{}", stderr(&outs[1]));
    // It failed at the first checkpoint (after step 5), and sealed nothing.
    let run = out.join("noshare");
    let log = std::fs::read_to_string(run.join("train_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 5, "{log}");
    let sealed: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .map(|r| r.flatten().filter(|e| e.path().join("state.json").exists()).collect())
        .unwrap_or_default();
    assert!(sealed.is_empty(), "{sealed:?}");
}
