//! MovieLens 1M / 10M: `ratings.dat` and `movies.dat`, `::`-separated, Latin-1.

use super::super::{DatasetFormat, Files, Inputs, Progress};
use super::{genres, push_rating, ratings_and_movies};
use crate::data::ingest::{BadLines, Collector, ItemMeta};
use crate::data::lines::decode_text;
use anyhow::Result;

pub struct MovielensDat;

impl DatasetFormat for MovielensDat {
    fn name(&self) -> &'static str {
        "movielens-dat"
    }
    fn about(&self) -> &'static str {
        "MovieLens 1M / 10M: ratings.dat + movies.dat, `::`-separated"
    }
    fn expects(&self) -> &'static str {
        "ratings.dat + movies.dat"
    }
    fn category_label(&self) -> &'static str {
        "genre"
    }
    fn recognises(&self, files: &Files) -> Result<bool> {
        Ok(files.named("ratings.dat").is_some())
    }
    fn inputs(&self, files: &Files) -> Result<Inputs> {
        ratings_and_movies(files, "ratings.dat", "movies.dat")
    }
    fn read(&self, inputs: &Inputs, c: &mut Collector, bad: &mut BadLines, progress: &mut Progress) -> Result<()> {
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
                        format!(
                            "expected 4 `::`-separated fields (UserID::MovieID::Rating::Timestamp), found {}",
                            f.len()
                        ),
                    );
                }
                push_rating(c, bad, place, &f)
            })?;
        }
        Ok(())
    }
}
