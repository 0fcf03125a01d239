//! c10d through the shim, with real processes: a TCPStore rendezvous, a Gloo
//! group (checked as NCCL would check it), every collective checked against
//! the closed-form answer, and a collective that a peer never joins failing
//! with a timeout error. Then the NCCL rules themselves, on one rank.

use std::process::Command;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use uorch::dist::{ProcessGroup, ReduceOp, Store};

const ROLE: &str = "UORCH_TEST_DIST_ROLE";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn group(rank: usize, world: usize, port: u16, timeout: Duration) -> ProcessGroup {
    let store = Store::tcp("127.0.0.1", port, world, rank == 0, Duration::from_secs(30)).unwrap();
    let pg = ProcessGroup::gloo(store, rank, world, timeout, "127.0.0.1").unwrap();
    pg.enforce_nccl_rules(Device::Cpu).unwrap();
    pg
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.reshape([-1])).unwrap()
}

/// What each child process does, by scenario.
fn child(spec: &str) {
    let f: Vec<&str> = spec.split(',').collect();
    let (rank, world, port, scenario): (usize, usize, u16, &str) =
        (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap(), f[3]);
    match scenario {
        "collectives" => {
            let pg = group(rank, world, port, Duration::from_secs(30));
            let r = rank as f32;
            // all_reduce sum and avg of [r, 10r, 100r].
            let t = Tensor::from_slice(&[r, 10.0 * r, 100.0 * r]);
            pg.all_reduce(&[&t], ReduceOp::Sum).unwrap().wait().unwrap();
            let s: f32 = (0..world).map(|k| k as f32).sum();
            assert_eq!(values(&t), vec![s, 10.0 * s, 100.0 * s]);
            let a = Tensor::from_slice(&[r + 1.0, 2.0]);
            pg.all_reduce(&[&a], ReduceOp::Avg).unwrap().wait().unwrap();
            assert_eq!(values(&a), vec![(s + world as f32) / world as f32, 2.0]);
            let m = Tensor::from_slice(&[r]);
            pg.all_reduce(&[&m], ReduceOp::Max).unwrap().wait().unwrap();
            assert_eq!(values(&m), vec![(world - 1) as f32]);
            // broadcast from the last rank.
            let b = Tensor::from_slice(&[r, r]);
            pg.broadcast(&[&b], world - 1).unwrap().wait().unwrap();
            assert_eq!(values(&b), vec![(world - 1) as f32; 2]);
            // all_gather: rank k contributes [k, k+0.5].
            let input = Tensor::from_slice(&[r, r + 0.5]);
            let out = Tensor::zeros([2 * world as i64], (Kind::Float, tch::Device::Cpu));
            pg.all_gather(&out, &input).unwrap().wait().unwrap();
            let want: Vec<f32> = (0..world).flat_map(|k| [k as f32, k as f32 + 0.5]).collect();
            assert_eq!(values(&out), want);
            // reduce_scatter: every rank sends [0, 1, ..., 2w-1] * (r+1); rank k gets chunk k summed.
            let scale: f32 = (1..=world).map(|k| k as f32).sum();
            let input = Tensor::arange(2 * world as i64, (Kind::Float, tch::Device::Cpu)) * (r + 1.0) as f64;
            let out = Tensor::zeros([2], (Kind::Float, tch::Device::Cpu));
            pg.reduce_scatter(&out, &input, ReduceOp::Sum).unwrap().wait().unwrap();
            assert_eq!(values(&out), vec![(2 * rank) as f32 * scale, (2 * rank + 1) as f32 * scale]);
            pg.barrier().unwrap().wait().unwrap();
        }
        "absent-peer" => {
            let pg = group(rank, world, port, Duration::from_secs(3));
            pg.barrier().unwrap().wait().unwrap();
            if rank == 1 {
                // Never joins the next collective; outlives rank 0's timeout.
                std::thread::sleep(Duration::from_secs(8));
                return;
            }
            let t0 = Instant::now();
            let t = Tensor::from_slice(&[1.0f32]);
            let err = pg.all_reduce(&[&t], ReduceOp::Sum).and_then(|w| w.wait()).unwrap_err().to_string();
            let took = t0.elapsed();
            println!("ERROR_TEXT {err}");
            println!("ERROR_AFTER_MS {}", took.as_millis());
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn run(world: usize, scenario: &str) -> Vec<std::process::Output> {
    run_with(world, scenario, &[])
}

fn run_with(world: usize, scenario: &str, env: &[(&str, &str)]) -> Vec<std::process::Output> {
    let port = free_port();
    let children: Vec<_> = (0..world)
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "dist_gloo::child_entry_point", "--ignored", "--nocapture", "--test-threads=1"])
                .env(ROLE, format!("{rank},{world},{port},{scenario}"))
                .envs(env.iter().copied())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

/// Entry point of the spawned ranks (does nothing when run as a normal test).
#[test]
#[ignore = "the spawned ranks' entry point, run by the tests below with --ignored; not a test"]
fn child_entry_point() {
    if let Ok(spec) = std::env::var(ROLE) {
        child(&spec);
    }
}

#[test]
fn gloo_collectives_give_the_closed_form_results_on_2_and_3_ranks() {
    for world in [2, 3] {
        for (rank, o) in run(world, "collectives").iter().enumerate() {
            assert!(
                o.status.success(),
                "world {world} rank {rank}:\n{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

#[test]
fn gloo_socket_ifname_picks_the_interface_and_a_missing_one_is_named() {
    for o in run_with(2, "collectives", &[("GLOO_SOCKET_IFNAME", "lo")]) {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // One rank: with two, the other would wait out the store's timeout.
    let outs = run_with(1, "collectives", &[("GLOO_SOCKET_IFNAME", "nosuchif0")]);
    for o in &outs {
        let e = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(e.contains("GLOO_SOCKET_IFNAME=nosuchif0"), "{e}");
    }
}

#[test]
fn a_collective_a_peer_never_joins_fails_with_a_timeout_naming_op_rank_and_timeout() {
    let outs = run(2, "absent-peer");
    let text = String::from_utf8_lossy(&outs[0].stdout);
    let err = text
        .lines()
        .find_map(|l| l.split_once("ERROR_TEXT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("rank 0 printed:\n{text}\n{}", String::from_utf8_lossy(&outs[0].stderr)));
    assert!(err.contains("all_reduce on rank 0 did not complete within the 3s collective timeout"), "{err}");
    let ms: u64 = text.lines().find_map(|l| l.split_once("ERROR_AFTER_MS ").map(|(_, r)| r)).unwrap().parse().unwrap();
    assert!(ms < 15_000, "took {ms} ms");
}

/// A one-rank Gloo group that checks its collectives as NCCL would on `device`.
fn ruled(device: Device) -> ProcessGroup {
    let port = free_port();
    let store = Store::tcp("127.0.0.1", port, 1, true, Duration::from_secs(30)).unwrap();
    let pg = ProcessGroup::gloo(store, 0, 1, Duration::from_secs(30), "127.0.0.1").unwrap();
    pg.enforce_nccl_rules(device).unwrap();
    pg
}

fn refused(r: anyhow::Result<uorch::dist::Work>) -> String {
    match r {
        Ok(w) => panic!("accepted: {:?}", w.wait().map(|_| "and completed")),
        Err(e) => e.to_string(),
    }
}

#[test]
fn nccl_rules_refuse_what_process_group_nccl_refuses_and_pass_the_rest() {
    let pg = ruled(Device::Cpu);
    let cpu = (Kind::Float, Device::Cpu);
    // Accepted: one dense contiguous tensor of an NCCL dtype, on the group's device.
    for kind in [Kind::Float, Kind::Double, Kind::Int64, Kind::BFloat16, Kind::Half, Kind::Int8, Kind::Uint8] {
        let t = Tensor::ones([3], (kind, Device::Cpu));
        pg.all_reduce(&[&t], ReduceOp::Sum).unwrap().wait().unwrap();
    }
    pg.all_gather(&Tensor::zeros([2], cpu), &Tensor::ones([2], cpu)).unwrap().wait().unwrap();
    pg.reduce_scatter(&Tensor::zeros([2], cpu), &Tensor::ones([2], cpu), ReduceOp::Sum).unwrap().wait().unwrap();
    // Refused, each with NCCL's own words first.
    let m = Tensor::ones([3, 4], cpu);
    let e = refused(pg.all_reduce(&[&m.transpose(0, 1)], ReduceOp::Sum));
    assert!(e.contains("Tensors must be contiguous"), "{e}");
    let (a, b) = (Tensor::ones([2], cpu), Tensor::ones([2], cpu));
    let e = refused(pg.all_reduce(&[&a, &b], ReduceOp::Sum));
    assert!(e.contains("Expecting one tensor only but got multiple"), "{e}");
    let e = refused(pg.broadcast(&[&a, &b], 0));
    assert!(e.contains("Expecting one tensor only but got multiple"), "{e}");
    let e = refused(pg.all_reduce(&[&Tensor::ones([2], (Kind::Int16, Device::Cpu))], ReduceOp::Sum));
    assert!(e.contains("Unsupported data type for NCCL process group: Short"), "{e}");
    let e = refused(pg.all_reduce(&[&Tensor::ones([2], (Kind::ComplexFloat, Device::Cpu))], ReduceOp::Sum));
    assert!(e.contains("Unsupported data type"), "{e}");
    let sparse = Tensor::eye(3, cpu).to_sparse_sparse_dim(2);
    let e = refused(pg.all_reduce(&[&sparse], ReduceOp::Sum));
    assert!(e.contains("Tensors must be CUDA and dense"), "{e}");
    let e = refused(pg.all_gather(&Tensor::zeros([2], (Kind::Double, Device::Cpu)), &Tensor::ones([2], cpu)));
    assert!(e.contains("output tensor must have the same type as input tensor"), "{e}");
    let e = refused(pg.reduce_scatter(&Tensor::zeros([1], cpu), &Tensor::ones([2], cpu), ReduceOp::Sum));
    assert!(e.contains("world_size times"), "{e}");
    // Each error names the operation and the device.
    assert!(e.contains("reduce_scatter") && e.contains("cpu"), "{e}");
}

#[test]
fn nccl_rules_refuse_the_cpu_control_tensor_that_worker_sum_used_to_send_on_the_gpu_group() {
    // Before the control group, `Worker::sum` all-reduced this tensor (the
    // stop flag and the counts) on the data group, which is NCCL on a GPU:
    // ProcessGroupNCCL refuses it, so every multi-GPU run failed at step 1.
    // A group bound to cuda:0 refuses it here without any GPU.
    let pg = ruled(Device::Cuda(0));
    let control = Tensor::from_slice(&[0.0, 32.0, 1600.0]).to_kind(Kind::Double);
    let e = refused(pg.all_reduce(&[&control], ReduceOp::Sum));
    assert!(e.contains("Tensors must be CUDA and dense: found a cpu Strided tensor"), "{e}");
    assert!(e.contains("all_reduce on the group bound to cuda:0"), "{e}");
    // Without the rules, Gloo takes it (the CPU control group is such a group).
    let port = free_port();
    let store = Store::tcp("127.0.0.1", port, 1, true, Duration::from_secs(30)).unwrap();
    let plain = ProcessGroup::gloo(store, 0, 1, Duration::from_secs(30), "127.0.0.1").unwrap();
    plain.all_reduce(&[&control], ReduceOp::Sum).unwrap().wait().unwrap();
}

#[test]
fn the_rendezvous_store_listens_on_the_master_address_only() {
    use std::net::TcpStream;
    // 127.0.0.2 is this machine too, on another address of the loopback.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = uorch::dist::rendezvous::serve("127.0.0.2", port, 1, Duration::from_secs(5), false).unwrap();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the store answers on 127.0.0.1 too");
    let client = Store::tcp("127.0.0.2", port, 1, false, Duration::from_secs(5)).unwrap();
    client.set("k", b"v").unwrap();
    assert_eq!(server.get("k").unwrap(), b"v");
    assert!(server.check(&["k"]).unwrap() && !server.check(&["k", "absent"]).unwrap());
    drop((client, server));
    // For other machines, a loopback master address would shut them out: every interface instead.
    let wide = uorch::dist::rendezvous::serve("127.0.0.2", port, 1, Duration::from_secs(5), true).unwrap();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok(), "not on every interface");
    drop(wide);
}
