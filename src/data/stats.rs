//! `uorch data stats`: what a timeline store holds, as a table or JSON.

use super::store::Store;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Stats {
    pub format: String,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub reviews: usize,
    /// Interactions / (users x items).
    pub density: f64,
    /// Per-user history length: min, p5, p25, p50, p75, p95, max and mean.
    pub history_length: BTreeMap<String, f64>,
    /// Vocabulary size per feature (plus `user`).
    pub vocab_sizes: BTreeMap<String, usize>,
    pub first_timestamp: i64,
    pub last_timestamp: i64,
    pub category_label: String,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[usize], p: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn compute(s: &Store) -> Stats {
    let mut lengths: Vec<usize> = (0..s.users()).map(|u| s.range(u).len()).collect();
    lengths.sort_unstable();
    let mut hist = BTreeMap::new();
    for (name, p) in [("p5", 5.0), ("p25", 25.0), ("p50", 50.0), ("p75", 75.0), ("p95", 95.0)] {
        hist.insert(name.to_string(), percentile(&lengths, p) as f64);
    }
    hist.insert("min".into(), *lengths.first().unwrap_or(&0) as f64);
    hist.insert("max".into(), *lengths.last().unwrap_or(&0) as f64);
    hist.insert(
        "mean".into(),
        if lengths.is_empty() { 0.0 } else { s.arrays.item.len() as f64 / lengths.len() as f64 },
    );
    let mut vocab = s.manifest.features.clone();
    vocab.insert("user".into(), s.users());
    let c = &s.manifest.counts;
    Stats {
        format: s.manifest.format.clone(),
        users: c.users,
        items: c.items,
        interactions: c.interactions,
        reviews: c.reviews,
        density: c.interactions as f64 / (c.users as f64 * c.items as f64),
        history_length: hist,
        vocab_sizes: vocab,
        first_timestamp: s.arrays.timestamp.iter().copied().min().unwrap_or(0),
        last_timestamp: s.arrays.timestamp.iter().copied().max().unwrap_or(0),
        category_label: s.manifest.category_label.clone(),
    }
}

/// Thousands separators for counts.
pub fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub fn render(st: &Stats, dir: &std::path::Path) -> String {
    let h = &st.history_length;
    let date = |t: i64| {
        // Civil date from days since the epoch (proleptic Gregorian).
        let z = t.div_euclid(86_400) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02}")
    };
    let label = |k: &str| if k == "category" { st.category_label.clone() } else { k.to_string() };
    let rows: Vec<(String, String)> = vec![
        ("store".into(), dir.display().to_string()),
        ("format".into(), st.format.clone()),
        ("users".into(), group(st.users)),
        ("items".into(), group(st.items)),
        ("interactions".into(), group(st.interactions)),
        ("with review text".into(), group(st.reviews)),
        ("density".into(), format!("{:.4}%", st.density * 100.0)),
        ("time span".into(), format!("{} .. {}", date(st.first_timestamp), date(st.last_timestamp))),
        (
            "history length".into(),
            format!(
                "min {} | p5 {} | p25 {} | median {} | p75 {} | p95 {} | max {} | mean {:.1}",
                h["min"], h["p5"], h["p25"], h["p50"], h["p75"], h["p95"], h["max"], h["mean"]
            ),
        ),
        (
            "vocabulary sizes".into(),
            st.vocab_sizes.iter().map(|(k, v)| format!("{} {}", label(k), group(*v))).collect::<Vec<_>>().join(" | "),
        ),
    ];
    rows.iter().map(|(k, v)| format!("  {k:<18} {v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_match_hand_computed_values() {
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&v, 50.0), 5);
        assert_eq!(percentile(&v, 95.0), 10);
        assert_eq!(percentile(&v, 5.0), 1);
        assert_eq!(percentile(&v, 25.0), 3);
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(group(12), "12");
    }
}
