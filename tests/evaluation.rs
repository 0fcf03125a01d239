//! Evaluation as the model answers it: questions asked in batches get the
//! same answers, rankings and scores as each asked alone.

use crate::common::{prepare_ml100k, tiny_model};
use uorch::config::run::RunConfig;
use uorch::data::catalog::Catalog;
use uorch::data::store::Store;
use uorch::model::tokenizer::Tokenizer;
use uorch::task::ask::{Answer, Asker, TaskSpec};

fn ranking(a: &Answer) -> &[(usize, f64)] {
    match a {
        Answer::Ranked(r) => r,
        Answer::Text(t) => panic!("a ranking, not {t:?}"),
    }
}

#[test]
fn batched_answers_equal_per_user_answers() {
    let d = tempfile::tempdir().unwrap();
    let store_dir = prepare_ml100k(d.path());
    let model_dir = d.path().join("llm");
    tiny_model(&model_dir);
    let store = Store::open(&store_dir).unwrap();
    let cat = Catalog::of_store(&store);
    let tok = Tokenizer::from_dir(&model_dir).unwrap();
    for (integration, task) in [
        ("cross_attention", "favorite-category"),
        ("soft_prompt", "favorite-category"),
        ("text_prompt", "favorite-category"),
        ("cross_attention", "next-item"),
    ] {
        // A window of 30 leaves users with 19..29 earlier interactions padded, others not.
        let yaml = format!(
            "name: batched\nseed: 5\ndata: {{store: {}, window: 30}}\nencoder: {{dim: 16, layers: 1, heads: 2}}\n\
             finetune: {{model: {}, task: {task}, integration: {integration}, strategy: lora, cross_attention_layers: [1], \
             text_prompt_window: 3, candidates: 6, steps: 1}}\n",
            store_dir.display(),
            model_dir.display()
        );
        let path = d.path().join(format!("{integration}-{task}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let cfg: RunConfig = uorch::config::load(&path, &[]).unwrap().config;
        let _rng = crate::common::torch_rng();
        let model = uorch::train::finetune::build(&cfg, &store, tch::Device::Cpu, false).unwrap();
        // Open the gates, so that each user's own embeddings matter.
        for b in model.xattn.values() {
            let _ = tch::no_grad(|| b.alpha.shallow_clone().fill_(0.7));
        }
        let spec = TaskSpec::from_config(&cfg).unwrap();
        let cases = uorch::task::examples::evaluation(&store, &cat, &spec, uorch::data::split::Split::Test, 12);
        let mut asker = Asker::new(&model, &tok, &cat, spec).unwrap();
        asker.batch = 5;
        let qs: Vec<_> = cases.iter().map(|c| (c.history.as_slice(), &c.question)).collect();
        let batched = asker.ask_batch(&qs).unwrap();
        let mut distinct = std::collections::BTreeSet::new();
        for (c, (b, cost)) in cases.iter().zip(&batched) {
            let (alone, alone_cost) = asker.ask(&c.history, &c.question).unwrap();
            let (x, y) = (ranking(b), ranking(&alone));
            let order = |r: &[(usize, f64)]| r.iter().map(|p| p.0).collect::<Vec<_>>();
            assert_eq!(order(x), order(y), "{integration} {task}: user {}", c.user);
            for (p, q) in x.iter().zip(y) {
                assert!((p.1 - q.1).abs() < 1e-5, "{integration} {task}: {} vs {}", p.1, q.1);
            }
            assert_eq!((cost.prompt_tokens, cost.user_tokens), (alone_cost.prompt_tokens, alone_cost.user_tokens));
            distinct.insert(format!("{:.4}", y[0].1));
        }
        // The users' answers differ: the batch rows read their own histories.
        assert!(distinct.len() > 1, "{integration} {task}: every user scored alike");
    }
}
