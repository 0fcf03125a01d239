//! MovieLens in its three public layouts, one file each: ml-100k (`u.data`,
//! `u.item`), ml-1m / ml-10m (`::`-separated `.dat`, Latin-1), ml-20m / ml-25m
//! / ml-latest (CSV). What they share is here.

pub mod csv;
pub mod dat;
pub mod ml100k;

use super::{field, Files, Inputs, Place};
use crate::data::ingest::{BadLines, Collector};
use anyhow::{Context, Result};

/// MovieLens's marker for a movie without genres.
const NO_GENRES: &str = "(no genres listed)";

pub(super) fn genres(list: &str, sep: char) -> Vec<String> {
    list.split(sep).map(str::trim).filter(|g| !g.is_empty() && *g != NO_GENRES).map(str::to_string).collect()
}

/// One rating row: user, item, rating, timestamp in seconds.
pub(super) fn push_rating(c: &mut Collector, bad: &mut BadLines, place: &Place, f: &[&str]) -> Result<()> {
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

/// A ratings file and the movies file beside it.
fn ratings_and_movies(files: &Files, ratings: &str, movies: &str) -> Result<Inputs> {
    let interactions = files.named(ratings).with_context(|| format!("no {ratings} among the inputs"))?;
    let metadata = files
        .named(movies)
        .with_context(|| format!("no {movies} beside {} (it holds titles and genres)", interactions.display()))?;
    Ok(Inputs { interactions: vec![interactions], metadata: vec![metadata], genre_list: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_genres_listed_means_no_genres() {
        assert!(genres(NO_GENRES, '|').is_empty());
        assert_eq!(genres("Action|Sci-Fi", '|'), ["Action", "Sci-Fi"]);
    }
}
