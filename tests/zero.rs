//! The data-parallel optimizers of every ZeRO stage on 2 real processes
//! match unsharded AdamW on the whole batch in one process; stage 2 reduces
//! and frees the gradients inside backward; bf16 parameters keep fp32 master
//! weights.

use std::process::Command;
use tch::{Kind, Tensor};
use uorch::dist::{ProcessGroup, Store};
use uorch::train::adamw::AdamW;
use uorch::train::zero::{self, ZeroStage};

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

/// Buckets of at most 10 values: two buckets of the 23.
const BUCKET_BYTES: usize = 40;

#[test]
#[ignore = "the spawned ranks' entry point, run by the tests below with --ignored; not a test"]
fn child_entry_point() {
    let Ok(spec) = std::env::var(ROLE) else { return };
    let f: Vec<&str> = spec.split(',').collect();
    let (rank, port, out): (usize, u16, &str) = (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2]);
    let stage: ZeroStage = serde_json::from_str(f[3]).unwrap();
    let store = Store::tcp("127.0.0.1", port, 2, rank == 0, std::time::Duration::from_secs(30)).unwrap();
    let pg = ProcessGroup::gloo(store, rank, 2, std::time::Duration::from_secs(30), "127.0.0.1").unwrap();
    pg.enforce_nccl_rules(tch::Device::Cpu).unwrap();
    let p = params();
    let mut opt = zero::optimizer(stage, &p, Some(&pg), BUCKET_BYTES, 0.1).unwrap();
    let mut freed_in_backward = true;
    for _ in 0..STEPS {
        // Two micro-batches a step; rank 1 has none in the second (it still reduces).
        let micro = if rank == 0 { vec![Some(0..3), Some(3..5)] } else { vec![Some(5..8), None] };
        for rows in micro {
            if let Some(rows) = rows {
                loss(&p, rows).backward();
                freed_in_backward &= p.iter().all(|(_, t)| !t.grad().defined());
            }
            opt.after_backward().unwrap();
        }
        opt.step(LR, CLIP).unwrap();
    }
    let report = serde_json::json!({"params": flat(&p), "freed_in_backward": freed_in_backward, "state_bytes": opt.state_bytes()});
    std::fs::write(format!("{out}.{rank}"), report.to_string()).unwrap();
}

#[test]
fn every_zero_stage_on_two_ranks_matches_unsharded_adamw() {
    // Reference: one process, whole batch, plain AdamW with the same clipping.
    let p = params();
    let mut opt = AdamW::new(0.1);
    for _ in 0..STEPS {
        loss(&p, 0..8).backward();
        let ts: Vec<Tensor> = p.iter().map(|(_, t)| t.shallow_clone()).collect();
        uorch::train::ddp::clip_grad_norm(&ts, CLIP);
        opt.step(&p, LR).unwrap();
        for (_, t) in &p {
            let _ = t.grad().zero_();
        }
    }
    let want = flat(&p);

    for (stage, name, state_bytes) in [
        (ZeroStage::Zero, "0", 2 * 23 * 4),
        // Buckets from the back: [norm 5 + bias 3] and [weight 15] → chunks of 4 and 8;
        // f32 parameters are their own master weights: moments only.
        (ZeroStage::One, "1", 2 * 12 * 4),
        (ZeroStage::Two, "2", 2 * 12 * 4),
    ] {
        let reports = run_two_ranks(name);
        for (rank, r) in reports.iter().enumerate() {
            let got: Vec<f32> = serde_json::from_value(r["params"].clone()).unwrap();
            assert_eq!(got.len(), want.len());
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-5, "stage {name} rank {rank} value {i}: {a} vs {b}");
            }
            // Only stage 2 reduces inside backward and frees the full gradients there.
            assert_eq!(r["freed_in_backward"], serde_json::json!(stage == ZeroStage::Two), "stage {name}");
            assert_eq!(r["state_bytes"], serde_json::json!(state_bytes), "stage {name}");
        }
    }
}

/// The child entry point on 2 processes at `stage`; their reports.
fn run_two_ranks(stage: &str) -> Vec<serde_json::Value> {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("params");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let kids: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "zero::child_entry_point", "--ignored", "--nocapture", "--test-threads=1"])
                .env(ROLE, format!("{rank},{port},{},{stage}", out.display()))
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
    (0..2)
        .map(|rank| {
            serde_json::from_str(&std::fs::read_to_string(format!("{}.{rank}", out.display())).unwrap()).unwrap()
        })
        .collect()
}

#[test]
fn bf16_parameters_keep_the_updates_that_bf16_rounds_away_in_fp32_master_weights() {
    // A linear loss: the gradient is `c` whatever the parameters, so fp32
    // AdamW on fp32 copies is the exact reference for the master weights.
    let c = Tensor::from_slice(&[0.3f32, -1.2, 2.0, 0.05]);
    let start = Tensor::from_slice(&[1.0f32, -0.5, 0.25, 2.0]);
    let reference = start.copy().set_requires_grad(true);
    let bf = start.to_kind(Kind::BFloat16).set_requires_grad(true);
    let named_ref = [("w.weight".to_string(), reference.shallow_clone())];
    let named_bf = [("w.weight".to_string(), bf.shallow_clone())];
    let mut plain = AdamW::new(0.0);
    let mut sharded = zero::optimizer(ZeroStage::Two, &named_bf, None, 1 << 20, 0.0).unwrap();
    let lr = 1e-4; // each update is far below bf16's spacing near 1 (2^-7)
    for _ in 0..200 {
        (&reference * &c).sum(Kind::Float).backward();
        plain.step(&named_ref, lr).unwrap();
        let _ = reference.grad().zero_();
        (bf.to_kind(Kind::Float) * &c).sum(Kind::Float).backward();
        sharded.after_backward().unwrap();
        sharded.step(lr, 0.0).unwrap();
    }
    let state: std::collections::BTreeMap<String, Tensor> = sharded.state_tensors().into_iter().collect();
    let master = Vec::<f32>::try_from(&state["master"]).unwrap();
    let want = Vec::<f32>::try_from(&reference.detach()).unwrap();
    for (a, b) in master.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-6, "master {a} vs fp32 AdamW {b}");
    }
    // The parameters are the master weights rounded to bf16: they moved,
    // where bf16 AdamW alone would have rounded every step's update away.
    let got = Vec::<f32>::try_from(&bf.detach().to_kind(Kind::Float)).unwrap();
    let rounded = Vec::<f32>::try_from(&reference.detach().to_kind(Kind::BFloat16).to_kind(Kind::Float)).unwrap();
    assert_eq!(got, rounded);
    assert_ne!(got, Vec::<f32>::try_from(&start).unwrap(), "the parameters moved");
    assert_eq!(bf.kind(), Kind::BFloat16);
}

#[test]
fn ddp_refuses_bf16_parameters_that_it_would_update_in_bf16() {
    let named = [("w.weight".to_string(), Tensor::zeros([2], (Kind::BFloat16, tch::Device::Cpu)))];
    let e = zero::optimizer(ZeroStage::Zero, &named, None, 1 << 20, 0.0).err().unwrap().to_string();
    assert!(e.contains("needs f32 parameters"), "{e}");
}
