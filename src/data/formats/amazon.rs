//! Amazon Review Data (2018): reviews and product metadata as JSON lines,
//! often gzip-compressed.

use super::files::{JsonRoles, Keys};
use super::{CategoryStructure, DatasetFormat, Files, Inputs, Progress};
use crate::data::ingest::{BadLines, Collector, ItemMeta};
use anyhow::Result;
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Deserialize)]
struct Review<'a> {
    #[serde(rename = "reviewerID", borrow)]
    reviewer: Cow<'a, str>,
    #[serde(borrow)]
    asin: Cow<'a, str>,
    overall: f32,
    #[serde(rename = "unixReviewTime")]
    time: i64,
    #[serde(rename = "reviewText", default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Meta {
    asin: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    category: Vec<String>,
    #[serde(default)]
    main_cat: Option<String>,
}

/// Categories below the top-level department (which nearly every product of a
/// file shares), most general first; the department or `main_cat` when that
/// is all there is.
fn categories(m: &Meta) -> Vec<String> {
    let path: Vec<String> = m.category.iter().map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect();
    if path.len() > 1 {
        path[1..].to_vec()
    } else if let Some(first) = path.first() {
        vec![first.clone()]
    } else {
        m.main_cat.iter().map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()
    }
}

pub struct Amazon;

const ROLES: JsonRoles = JsonRoles {
    format: "amazon",
    is_review: |k: &Keys| k.contains("reviewerID") && k.contains("asin"),
    is_meta: |k: &Keys| k.contains("asin"),
    review_keys: "reviewerID, asin, overall, unixReviewTime",
};

impl DatasetFormat for Amazon {
    fn name(&self) -> &'static str {
        "amazon"
    }
    fn about(&self) -> &'static str {
        "Amazon Review 2018: reviews JSON lines + metadata JSON lines"
    }
    fn expects(&self) -> &'static str {
        "Amazon JSON lines (reviews with reviewerID and asin, metadata with asin)"
    }
    fn category_label(&self) -> &'static str {
        "category"
    }
    /// Amazon lists a product's categories from the department down.
    fn category_structure(&self) -> CategoryStructure {
        CategoryStructure::Path
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
            progress.each_json(path, bad, "an Amazon metadata record", |m: Meta| {
                let title = m.title.as_ref().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
                let categories = categories(&m);
                c.meta.insert(m.asin.as_str().into(), ItemMeta { title, categories });
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
                    Ok(r) => c.push(&r.reviewer, &r.asin, r.time * 1000, r.overall, r.text.as_deref()),
                    Err(e) => bad.report(&place.to_string(), format!("not an Amazon review record: {e}")),
                }
            })?;
        }
        Ok(())
    }
}
