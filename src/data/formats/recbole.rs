//! RecBole atomic files: tab-separated with a typed header (`user_id:token`,
//! `rating:float`, `class:token_seq`, ...). `token_seq` fields are space-separated.

use super::files::base_name;
use super::{field, DatasetFormat, Files, Inputs, Place, Progress};
use crate::data::ingest::{BadLines, Collector, ItemMeta};
use crate::data::lines::decode_text;
use anyhow::{bail, Context, Result};

/// Header column names without their `:type`.
fn header(text: &str) -> Vec<String> {
    text.split('\t').map(|c| c.split(':').next().unwrap_or("").trim().to_string()).collect()
}

fn find(names: &[String], candidates: &[&str]) -> Option<usize> {
    candidates.iter().find_map(|c| names.iter().position(|n| n == c))
}

fn require(names: &[String], candidates: &[&str], place: &Place) -> Result<usize> {
    match find(names, candidates) {
        Some(i) => Ok(i),
        None => bail!("{place}: missing column `{}` (header has: {})", candidates[0], names.join(", ")),
    }
}

pub struct Recbole;

impl DatasetFormat for Recbole {
    fn name(&self) -> &'static str {
        "recbole"
    }
    fn about(&self) -> &'static str {
        "RecBole atomic files: NAME.inter + NAME.item"
    }
    fn expects(&self) -> &'static str {
        "NAME.inter + NAME.item"
    }
    fn category_label(&self) -> &'static str {
        "genre"
    }
    fn recognises(&self, files: &Files) -> Result<bool> {
        Ok(!files.ending(".inter").is_empty())
    }
    fn inputs(&self, files: &Files) -> Result<Inputs> {
        let inter = files.ending(".inter");
        if inter.len() != 1 {
            bail!("expected one RecBole .inter file among the inputs, found {}", inter.len());
        }
        let stem = base_name(&inter[0]).trim_end_matches(".inter").to_string();
        let item = files
            .named(&format!("{stem}.item"))
            .with_context(|| format!("no {stem}.item beside {} (it holds titles and genres)", inter[0].display()))?;
        Ok(Inputs { interactions: inter, metadata: vec![item], genre_list: None })
    }

    fn read(&self, inputs: &Inputs, c: &mut Collector, bad: &mut BadLines, progress: &mut Progress) -> Result<()> {
        struct ItemCols {
            id: usize,
            title: Option<usize>,
            year: Option<usize>,
            class: Option<usize>,
        }
        for path in &inputs.metadata {
            let mut cols: Option<ItemCols> = None;
            progress.each_line(path, |line, place| {
                let text = decode_text(line);
                let Some(k) = &cols else {
                    let names = header(&text);
                    cols = Some(ItemCols {
                        id: require(&names, &["item_id"], place)?,
                        title: find(&names, &["movie_title", "title", "name"]),
                        year: find(&names, &["release_year", "year"]),
                        class: find(&names, &["class", "genre", "categories", "category"]),
                    });
                    return Ok(());
                };
                if text.trim().is_empty() {
                    return Ok(());
                }
                let f: Vec<&str> = text.split('\t').collect();
                let need = [Some(k.id), k.title, k.year, k.class].into_iter().flatten().max().unwrap() + 1;
                if f.len() < need {
                    return bad.report(
                        &place.to_string(),
                        format!("expected {need} tab-separated fields, found {}", f.len()),
                    );
                }
                let title = k.title.map(|t| {
                    let year =
                        k.year.map(|y| f[y].trim()).filter(|y| y.len() == 4 && y.chars().all(|ch| ch.is_ascii_digit()));
                    match year {
                        Some(y) => format!("{} ({y})", f[t].trim()),
                        None => f[t].trim().to_string(),
                    }
                });
                let categories =
                    k.class.map(|i| f[i].split_whitespace().map(str::to_string).collect()).unwrap_or_default();
                c.meta.insert(f[k.id].into(), ItemMeta { title, categories });
                Ok(())
            })?;
        }
        for path in &inputs.interactions {
            let mut cols: Option<[usize; 4]> = None;
            let mut has_rating = true;
            progress.each_line(path, |line, place| {
                let text = decode_text(line);
                let Some(k) = &cols else {
                    let names = header(&text);
                    has_rating = find(&names, &["rating"]).is_some();
                    cols = Some([
                        require(&names, &["user_id"], place)?,
                        require(&names, &["item_id"], place)?,
                        find(&names, &["rating"]).unwrap_or(0),
                        require(&names, &["timestamp"], place)?,
                    ]);
                    return Ok(());
                };
                if text.trim().is_empty() {
                    return Ok(());
                }
                let f: Vec<&str> = text.split('\t').collect();
                let need = k.iter().max().unwrap() + 1;
                if f.len() < need {
                    return bad.report(
                        &place.to_string(),
                        format!("expected {need} tab-separated fields, found {}", f.len()),
                    );
                }
                let rating = if has_rating { field::<f32>(f[k[2]], "rating") } else { Ok(0.0) };
                // RecBole writes timestamps as floats (`timestamp:float`).
                let ts = field::<f64>(f[k[3]], "timestamp");
                match (rating, ts) {
                    (Ok(r), Ok(t)) if r.is_finite() && t.is_finite() => {
                        c.push(f[k[0]], f[k[1]], (t * 1000.0).round() as i64, r, None)
                    }
                    (Err(e), _) | (_, Err(e)) => bad.report(&place.to_string(), e),
                    _ => bad.report(&place.to_string(), "rating or timestamp is not finite"),
                }
            })?;
        }
        Ok(())
    }
}
