//! MovieLens 20M / 25M / latest: `ratings.csv` and `movies.csv` with headers.

use super::super::{DatasetFormat, Files, Inputs, Place, Progress};
use super::{genres, push_rating, ratings_and_movies};
use crate::data::ingest::{BadLines, Collector, ItemMeta};
use crate::data::lines::decode_text;
use anyhow::{bail, Result};

pub struct MovielensCsv;

impl DatasetFormat for MovielensCsv {
    fn name(&self) -> &'static str {
        "movielens-csv"
    }
    fn about(&self) -> &'static str {
        "MovieLens 20M / 25M / latest: ratings.csv + movies.csv"
    }
    fn expects(&self) -> &'static str {
        "ratings.csv + movies.csv"
    }
    fn category_label(&self) -> &'static str {
        "genre"
    }
    fn recognises(&self, files: &Files) -> Result<bool> {
        Ok(files.named("ratings.csv").is_some())
    }
    fn inputs(&self, files: &Files) -> Result<Inputs> {
        ratings_and_movies(files, "ratings.csv", "movies.csv")
    }
    fn read(&self, inputs: &Inputs, c: &mut Collector, bad: &mut BadLines, progress: &mut Progress) -> Result<()> {
        for path in &inputs.metadata {
            let mut cols: Option<Vec<usize>> = None;
            progress.each_line(path, |line, place| {
                let text = decode_text(line);
                let Some(cols) = &cols else {
                    cols = Some(columns(&text, &["movieId", "title", "genres"], place)?);
                    return Ok(());
                };
                if text.is_empty() {
                    return Ok(());
                }
                let f = match split_csv(&text) {
                    Ok(f) => f,
                    Err(e) => return bad.report(&place.to_string(), e),
                };
                if f.len() <= *cols.iter().max().unwrap() {
                    return bad.report(
                        &place.to_string(),
                        format!(
                            "expected at least {} comma-separated fields, found {}",
                            cols.iter().max().unwrap() + 1,
                            f.len()
                        ),
                    );
                }
                c.meta.insert(
                    f[cols[0]].as_str().into(),
                    ItemMeta { title: Some(f[cols[1]].clone()), categories: genres(&f[cols[2]], '|') },
                );
                Ok(())
            })?;
        }
        for path in &inputs.interactions {
            let mut cols: Option<Vec<usize>> = None;
            progress.each_line(path, |line, place| {
                let Ok(text) = std::str::from_utf8(line) else {
                    return bad.report(&place.to_string(), "not UTF-8 text");
                };
                let Some(cols) = &cols else {
                    cols = Some(columns(text, &["userId", "movieId", "rating", "timestamp"], place)?);
                    return Ok(());
                };
                if text.is_empty() {
                    return Ok(());
                }
                // Rating rows have no quoted fields: split directly (the hot path).
                let mut parts = [""; 8];
                let mut n = 0;
                for p in text.split(',') {
                    if n < parts.len() {
                        parts[n] = p;
                    }
                    n += 1;
                }
                let need = cols.iter().max().unwrap() + 1;
                if n < need || n > parts.len() {
                    return bad
                        .report(&place.to_string(), format!("expected {need} comma-separated fields, found {n}"));
                }
                let f = [parts[cols[0]], parts[cols[1]], parts[cols[2]], parts[cols[3]]];
                push_rating(c, bad, place, &f)
            })?;
        }
        Ok(())
    }
}

/// Split one CSV record (RFC 4180 quoting: `"a, b"`, `""` for a quote).
fn split_csv(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (false, '"') if at_start => {
                quoted = true;
                at_start = false;
            }
            (true, '"') => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                    if !matches!(chars.peek(), None | Some(',')) {
                        return Err("text after a closing quote".into());
                    }
                }
            }
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
            }
            (_, ch) => {
                cur.push(ch);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    out.push(cur);
    Ok(out)
}

/// Column positions from a CSV header, requiring `wanted`.
fn columns(header: &str, wanted: &[&str], place: &Place) -> Result<Vec<usize>> {
    let names: Vec<String> = split_csv(header)
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().trim_start_matches('\u{feff}').to_string())
        .collect();
    wanted
        .iter()
        .map(|w| match names.iter().position(|n| n == w) {
            Some(i) => Ok(i),
            None => bail!("{place}: missing column `{w}` (header has: {})", names.join(", ")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_splitting_follows_rfc4180_quoting() {
        assert_eq!(split_csv(r#"1,"Toy Story, The (1995)",Comedy"#).unwrap(), ["1", "Toy Story, The (1995)", "Comedy"]);
        assert_eq!(
            split_csv(r#"2,"""Great"" Cats (1998)",Musical"#).unwrap(),
            ["2", "\"Great\" Cats (1998)", "Musical"]
        );
        assert_eq!(split_csv("a,,b").unwrap(), ["a", "", "b"]);
        assert!(split_csv(r#"1,"open"#).is_err());
        assert!(split_csv(r#"1,"x"y,z"#).is_err());
    }
}
