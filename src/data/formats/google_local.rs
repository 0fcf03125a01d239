//! Google Local Reviews (2021): reviews (times in milliseconds) and business
//! metadata as JSON lines, often gzip-compressed.

use super::files::{JsonRoles, Keys};
use super::{DatasetFormat, Files, Inputs, Progress};
use crate::data::ingest::{BadLines, Collector, ItemMeta};
use anyhow::Result;
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Deserialize)]
struct Review<'a> {
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow)]
    gmap_id: Cow<'a, str>,
    rating: f32,
    /// Milliseconds since the epoch.
    time: i64,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Meta {
    gmap_id: String,
    #[serde(default)]
    name: Option<String>,
    /// Google lists the main category first.
    #[serde(default)]
    category: Option<Vec<String>>,
}

pub struct GoogleLocal;

const ROLES: JsonRoles = JsonRoles {
    format: "google-local",
    is_review: |k: &Keys| k.contains("gmap_id") && k.contains("user_id"),
    is_meta: |k: &Keys| k.contains("gmap_id"),
    review_keys: "user_id, gmap_id, rating, time",
};

impl DatasetFormat for GoogleLocal {
    fn name(&self) -> &'static str {
        "google-local"
    }
    fn about(&self) -> &'static str {
        "Google Local Review 2021: reviews JSON lines + metadata JSON lines"
    }
    fn expects(&self) -> &'static str {
        "Google Local JSON lines (reviews with user_id and gmap_id, metadata with gmap_id)"
    }
    fn category_label(&self) -> &'static str {
        "category"
    }
    fn has_reviews(&self) -> bool {
        true
    }
    fn recognises(&self, files: &Files) -> Result<bool> {
        ROLES.recognises(files)
    }
    fn inputs(&self, files: &Files) -> Result<Inputs> {
        ROLES.inputs(files)
    }

    fn read(&self, inputs: &Inputs, c: &mut Collector, bad: &mut BadLines, progress: &mut Progress) -> Result<()> {
        for path in &inputs.metadata {
            progress.each_json(path, bad, "a Google Local metadata record", |m: Meta| {
                let title = m.name.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
                let categories = m
                    .category
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect();
                c.meta.insert(m.gmap_id.as_str().into(), ItemMeta { title, categories });
                Ok(())
            })?;
        }
        for path in &inputs.interactions {
            progress.each_line(path, |line, place| {
                if line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(());
                }
                // Borrowed strings: parsed here rather than through `each_json`.
                match serde_json::from_slice::<Review>(line) {
                    Ok(r) => c.push(&r.user_id, &r.gmap_id, r.time, r.rating, r.text.as_deref()),
                    Err(e) => bad.report(&place.to_string(), format!("not a Google Local review record: {e}")),
                }
            })?;
        }
        Ok(())
    }
}
