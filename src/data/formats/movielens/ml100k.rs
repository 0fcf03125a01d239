//! MovieLens 100K: `u.data` (tab-separated ratings), `u.item` (`|`-separated
//! movies with 19 genre flags) and optionally `u.genre` (the flags' names).

use super::super::{DatasetFormat, Files, Inputs, Progress};
use super::{push_rating, ratings_and_movies};
use crate::data::ingest::{BadLines, Collector, ItemMeta};
use crate::data::lines::decode_text;
use anyhow::Result;

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

pub struct Ml100k;

impl DatasetFormat for Ml100k {
    fn name(&self) -> &'static str {
        "ml-100k"
    }
    fn about(&self) -> &'static str {
        "MovieLens 100K: u.data + u.item (+ u.genre)"
    }
    fn expects(&self) -> &'static str {
        "u.data + u.item"
    }
    fn category_label(&self) -> &'static str {
        "genre"
    }
    fn recognises(&self, files: &Files) -> Result<bool> {
        Ok(files.named("u.data").is_some())
    }
    fn inputs(&self, files: &Files) -> Result<Inputs> {
        Ok(Inputs { genre_list: files.named("u.genre"), ..ratings_and_movies(files, "u.data", "u.item")? })
    }
    fn read(&self, inputs: &Inputs, c: &mut Collector, bad: &mut BadLines, progress: &mut Progress) -> Result<()> {
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
                            return bad.report(
                                &place.to_string(),
                                format!("genre flag for {name} is {other:?}, expected 0 or 1"),
                            )
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
}
