//! More than one machine: two network namespaces joined by a veth link, each
//! with its own address, stand in for two hosts. One launcher runs in each
//! with `--nnodes 2`; the four workers rendezvous over the link and train in
//! lockstep (every rank ends with the same parameters). Needs root and `ip`
//! (set-up installs iproute2; CI runs as root).

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
    fn new() -> Hosts {
        let id = std::process::id() % 200 + 20;
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
    let hosts = Hosts::new();
    let port = 29000 + (std::process::id() % 500) as u16;
    let mut children = Vec::new();
    for node in 0..2 {
        // Each "host" has its own disk in real life: its own output folder here.
        let cfg = d.path().join(format!("node{node}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "name: lockstep\noutput_root: {}\nseed: 9\ndata: {{store: {}, window: 20, stride: 20}}\nencoder: {{dim: 16, layers: 1, heads: 2}}\n\
                 pretrain: {{steps: 15, batch_size: 8, checkpoint_every: 0}}\ndist: {{nproc: 2, timeout_s: 60}}\n",
                d.path().join(format!("host{node}")).display(),
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
