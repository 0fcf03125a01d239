//! MovieLens in its three public layouts: ml-100k (`u.data`, `u.item`), ml-1m /
//! ml-10m (`::`-separated `.dat`, Latin-1), ml-20m / ml-25m / ml-latest (CSV).

use super::{field, Inputs, Place, Progress};
use crate::data::ingest::{BadLines, Collector, ItemMeta};
use crate::data::lines::decode_text;
use anyhow::{bail, Result};

/// The 19 genres of ml-100k's `u.item` flags, in column order (from the
/// dataset's README), used when no `u.genre` file is given.
const ML100K_GENRES: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// MovieLens's marker for a movie without genres.
const NO_GENRES: &str = "(no genres listed)";

fn genres(list: &str, sep: char) -> Vec<String> {
    list.split(sep).map(str::trim).filter(|g| !g.is_empty() && *g != NO_GENRES).map(str::to_string).collect()
}

/// One rating row: user, item, rating, timestamp in seconds.
fn push_rating(c: &mut Collector, bad: &mut BadLines, place: &Place, f: &[&str]) -> Result<()> {
    let parsed = (|| -> std::result::Result<(f32, i64), String> {
        let rating: f32 = field(f[2], "rating")?;
        if !(rating.is_finite() && rating >= 0.0) {
            return Err(format!("rating {} is not a non-negative number", f[2]));
        }
        Ok((rating, field(f[3], "timestamp")?))
    })();
    match parsed {
        Ok((rating, ts)) if !f[0].is_empty() && !f[1].is_empty() => c.push(f[0], f[1], ts * 1000, rating, None),
        Ok(_) => bad.report(&place.to_string(), "empty user or item id"),
        Err(e) => bad.report(&place.to_string(), e),
    }
}

pub fn read_100k(inputs: &Inputs, c: &mut Collector, bad: &mut BadLines, progress: &mut Progress) -> Result<()> {
    let mut genre_names: Vec<String> = ML100K_GENRES.iter().map(|g| g.to_string()).collect();
    if let Some(path) = &inputs.genre_list {
        let mut listed = Vec::new();
        progress.each_line(path, |line, place| {
            let text = decode_text(line);
            if text.trim().is_empty() {
                return Ok(());
            }
            match text.split_once('|') {
                Some((name, idx)) => match idx.trim().parse::<usize>() {
                    Ok(i) => {
                        listed.push((i, name.to_string()));
                        Ok(())
                    }
                    Err(_) => bad.report(&place.to_string(), format!("genre index {idx:?} is not a number")),
                },
                None => bad.report(&place.to_string(), "expected `name|index`"),
            }
        })?;
        listed.sort();
        genre_names = listed.into_iter().map(|(_, n)| n).collect();
    }
    for path in &inputs.metadata {
        progress.each_line(path, |line, place| {
            let text = decode_text(line);
            let f: Vec<&str> = text.split('|').collect();
            if f.len() != 5 + genre_names.len() {
                return bad.report(
                    &place.to_string(),
                    format!(
                        "expected {} `|`-separated fields (id, title, dates, URL, {} genre flags), found {}",
                        5 + genre_names.len(),
                        genre_names.len(),
                        f.len()
                    ),
                );
            }
            let mut cats = Vec::new();
            for (flag, name) in f[5..].iter().zip(&genre_names) {
                match *flag {
                    "1" => cats.push(name.clone()),
                    "0" => {}
                    other => {
                        return bad
                            .report(&place.to_string(), format!("genre flag for {name} is {other:?}, expected 0 or 1"))
                    }
                }
            }
            c.meta.insert(f[0].into(), ItemMeta { title: Some(f[1].to_string()), categories: cats });
            Ok(())
        })?;
    }
    for path in &inputs.interactions {
        progress.each_line(path, |line, place| {
            let text = decode_text(line);
            let f: Vec<&str> = text.split('\t').collect();
            if f.len() != 4 {
                return bad.report(
                    &place.to_string(),
                    format!("expected 4 tab-separated fields (user item rating timestamp), found {}", f.len()),
                );
            }
            push_rating(c, bad, place, &f)
        })?;
    }
    Ok(())
}

pub fn read_dat(inputs: &Inputs, c: &mut Collector, bad: &mut BadLines, progress: &mut Progress) -> Result<()> {
    for path in &inputs.metadata {
        progress.each_line(path, |line, place| {
            let text = decode_text(line);
            let f: Vec<&str> = text.split("::").collect();
            if f.len() != 3 {
                return bad.report(
                    &place.to_string(),
                    format!("expected 3 `::`-separated fields (MovieID::Title::Genres), found {}", f.len()),
                );
            }
            c.meta.insert(f[0].into(), ItemMeta { title: Some(f[1].to_string()), categories: genres(f[2], '|') });
            Ok(())
        })?;
    }
    for path in &inputs.interactions {
        progress.each_line(path, |line, place| {
            let text = decode_text(line);
            let f: Vec<&str> = text.split("::").collect();
            if f.len() != 4 {
                return bad.report(
                    &place.to_string(),
                    format!("expected 4 `::`-separated fields (UserID::MovieID::Rating::Timestamp), found {}", f.len()),
                );
            }
            push_rating(c, bad, place, &f)
        })?;
    }
    Ok(())
}

/// Split one CSV record (RFC 4180 quoting: `"a, b"`, `""` for a quote).
pub fn split_csv(line: &str) -> std::result::Result<Vec<String>, String> {
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

pub fn read_csv(inputs: &Inputs, c: &mut Collector, bad: &mut BadLines, progress: &mut Progress) -> Result<()> {
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
                return bad.report(&place.to_string(), format!("expected {need} comma-separated fields, found {n}"));
            }
            let f = [parts[cols[0]], parts[cols[1]], parts[cols[2]], parts[cols[3]]];
            push_rating(c, bad, place, &f)
        })?;
    }
    Ok(())
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

    #[test]
    fn no_genres_listed_means_no_genres() {
        assert!(genres(NO_GENRES, '|').is_empty());
        assert_eq!(genres("Action|Sci-Fi", '|'), ["Action", "Sci-Fi"]);
    }
}
