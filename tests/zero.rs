//! The sharded (ZeRO-2 style) optimizer on 2 real processes matches unsharded
//! AdamW on the whole batch in one process.

use std::process::Command;
use tch::{Kind, Tensor};
use uorch::dist::{ProcessGroup, Store};
use uorch::train::adamw::AdamW;
use uorch::train::zero::ShardedAdamW;

const ROLE: &str = "UORCH_TEST_ZERO_ROLE";
const STEPS: usize = 6;
const LR: f64 = 0.05;
const CLIP: f64 = 0.5;

/// Parameters with decayed and non-decayed names, and sizes that do not split evenly.
fn params() -> Vec<(String, Tensor)> {
    let g = |n: &str, shape: &[i64], seed: f64| {
        let numel: i64 = shape.iter().product();
        let v = (Tensor::arange(numel, (Kind::Float, tch::Device::Cpu)) * 0.37 + seed).sin().view(shape);
        (n.to_string(), v.set_requires_grad(true))
    };
    vec![g("layer.weight", &[3, 5], 0.1), g("layer.bias", &[3], 0.2), g("norm.weight", &[5], 0.3)]
}

/// Rows of the batch: inputs `(8, 5)` and targets `(8, 3)`.
fn data() -> (Tensor, Tensor) {
    let x = (Tensor::arange(40, (Kind::Float, tch::Device::Cpu)) * 0.11).cos().view([8, 5]);
    let y = (Tensor::arange(24, (Kind::Float, tch::Device::Cpu)) * 0.07).sin().view([8, 3]);
    (x, y)
}

/// Sum of squared errors of rows `rows`, over the whole batch's row count.
fn loss(p: &[(String, Tensor)], rows: std::ops::Range<i64>) -> Tensor {
    let (x, y) = data();
    let x = x.narrow(0, rows.start, rows.end - rows.start) * &p[2].1;
    let pred = x.linear(&p[0].1, Some(&p[1].1));
    (pred - y.narrow(0, rows.start, rows.end - rows.start)).square().sum(Kind::Float) / 8.0
}

fn flat(p: &[(String, Tensor)]) -> Vec<f32> {
    p.iter().flat_map(|(_, t)| Vec::<f32>::try_from(t.detach().reshape([-1])).unwrap()).collect()
}

#[test]
fn child_entry_point() {
    let Ok(spec) = std::env::var(ROLE) else { return };
    let f: Vec<&str> = spec.split(',').collect();
    let (rank, port, out): (usize, u16, &str) = (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2]);
    let store = Store::tcp("127.0.0.1", port, 2, rank == 0, std::time::Duration::from_secs(30)).unwrap();
    let pg = ProcessGroup::gloo(store, rank, 2, std::time::Duration::from_secs(30), "127.0.0.1").unwrap();
    pg.enforce_nccl_rules(tch::Device::Cpu).unwrap();
    let p = params();
    let mut opt = ShardedAdamW::new(&p, rank, 2, 0.1);
    for _ in 0..STEPS {
        let rows = if rank == 0 { 0..5 } else { 5..8 };
        loss(&p, rows).backward();
        opt.step(Some(&pg), LR, CLIP).unwrap();
    }
    std::fs::write(format!("{out}.{rank}"), serde_json::to_string(&flat(&p)).unwrap()).unwrap();
}

#[test]
fn two_sharded_ranks_match_unsharded_adamw() {
    // Reference: one process, whole batch, plain AdamW with the same clipping.
    let p = params();
    let mut opt = AdamW::new(0.1);
    for _ in 0..STEPS {
        loss(&p, 0..8).backward();
        let ts: Vec<Tensor> = p.iter().map(|(_, t)| t.shallow_clone()).collect();
        uorch::train::ddp::clip_grad_norm(&ts, CLIP);
        opt.step(&p, LR);
        for (_, t) in &p {
            let _ = t.grad().zero_();
        }
    }
    let want = flat(&p);

    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("params");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let kids: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "zero::child_entry_point", "--nocapture", "--test-threads=1"])
                .env(ROLE, format!("{rank},{port},{}", out.display()))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect::<Vec<_>>();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for rank in 0..2 {
        let got: Vec<f32> =
            serde_json::from_str(&std::fs::read_to_string(format!("{}.{rank}", out.display())).unwrap()).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-5, "rank {rank} value {i}: {a} vs {b}");
        }
    }
    // Each rank held half the optimizer state (23 values → shards of 12).
    assert_eq!(ShardedAdamW::new(&params(), 0, 2, 0.0).state_bytes(), 3 * 12 * 4);
}
