//! ROUGE against Google's rouge-score and its NLTK Porter stemmer: the
//! stems and per-pair scores in tests/golden/rouge.json were computed by
//! them (tests/golden/make_rouge_golden.py), on text with non-ASCII
//! letters, punctuation, digits, repeats and empty lines.

use crate::common::{project_root, stderr, uorch};
use uorch::task::porter;
use uorch::task::rouge::{self, Prf};

fn golden() -> serde_json::Value {
    let path = project_root().join("tests/golden/rouge.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn prf(v: &serde_json::Value) -> [f64; 3] {
    let x: Vec<f64> = serde_json::from_value(v.clone()).unwrap();
    [x[0], x[1], x[2]]
}

fn close(what: &str, ours: Prf, theirs: [f64; 3]) {
    for (name, a, b) in
        [("precision", ours.precision, theirs[0]), ("recall", ours.recall, theirs[1]), ("F1", ours.f1, theirs[2])]
    {
        assert!((a - b).abs() <= 1e-6, "{what} {name}: uorch {a}, rouge-score {b}");
    }
}

#[test]
fn porter_stems_equal_nltks_for_every_word_of_the_list() {
    let g = golden();
    let stems = g["stems"].as_array().unwrap();
    assert!(stems.len() > 5000, "the list exercises every rule: {} words", stems.len());
    let wrong: Vec<String> = stems
        .iter()
        .filter_map(|p| {
            let (w, s) = (p[0].as_str().unwrap(), p[1].as_str().unwrap());
            let ours = porter::stem(w);
            (ours != s).then(|| format!("{w}: uorch {ours}, NLTK {s}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{} of {} stems differ: {:?}", wrong.len(), stems.len(), &wrong[..wrong.len().min(20)]);
}

#[test]
fn every_pair_scores_as_rouge_score_scores_it_with_and_without_the_stemmer() {
    for pair in golden()["pairs"].as_array().unwrap() {
        let (p, r) = (pair["prediction"].as_str().unwrap(), pair["reference"].as_str().unwrap());
        for (mode, stem) in [("plain", false), ("stemmed", true)] {
            let d = rouge::detailed(p, r, stem);
            let want = &pair[mode];
            let what = |v: &str| format!("{p:?} / {r:?} ({mode}) {v}");
            close(&what("ROUGE-1"), d.rouge1, prf(&want["rouge1"]));
            close(&what("ROUGE-2"), d.rouge2, prf(&want["rouge2"]));
            close(&what("ROUGE-L"), d.rouge_l, prf(&want["rougeL"]));
        }
    }
}

#[test]
fn metrics_rouge_prints_rouge_scores_means_and_refuses_files_that_do_not_line_up() {
    let g = golden();
    let pairs: Vec<&serde_json::Value> =
        g["pairs"].as_array().unwrap().iter().filter(|p| !p["prediction"].as_str().unwrap().contains('\n')).collect();
    let tmp = tempfile::tempdir().unwrap();
    let (pred, refs) = (tmp.path().join("pred.txt"), tmp.path().join("ref.txt"));
    let text = |k: &str| pairs.iter().map(|p| format!("{}\n", p[k].as_str().unwrap())).collect::<String>();
    std::fs::write(&pred, text("prediction")).unwrap();
    // CRLF line ends read as LF.
    std::fs::write(&refs, text("reference").replace('\n', "\r\n")).unwrap();
    for (mode, flag) in [("plain", None), ("stemmed", Some("--stemmer"))] {
        let o = uorch()
            .args(["metrics", "rouge", "--json", "--predictions"])
            .arg(&pred)
            .arg("--references")
            .arg(&refs)
            .args(flag)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["lines"], pairs.len());
        for (key, golden_key) in [("rouge1", "rouge1"), ("rouge2", "rouge2"), ("rougeL", "rougeL")] {
            let want = pairs.iter().map(|p| prf(&p[mode][golden_key])[2]).sum::<f64>() / pairs.len() as f64;
            let got = v[key]["f1"].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-6, "{mode} {key}: {got} vs rouge-score's mean {want}");
        }
    }
    // One line short: named, with both counts.
    std::fs::write(&refs, "only one line\n").unwrap();
    let o =
        uorch().args(["metrics", "rouge", "--predictions"]).arg(&pred).arg("--references").arg(&refs).output().unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("ref.txt has 1") && e.contains(&format!("pred.txt has {} lines", pairs.len())), "{e}");
    // Not UTF-8: the file and line.
    std::fs::write(&refs, b"fine\n\xff\xfe broken\n").unwrap();
    std::fs::write(&pred, "a\nb\n").unwrap();
    let o =
        uorch().args(["metrics", "rouge", "--predictions"]).arg(&pred).arg("--references").arg(&refs).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("ref.txt:2: not UTF-8"), "{}", stderr(&o));
}
