//! The timeline store: a folder holding every user's interactions in time
//! order with their feature ids, the vocabularies that map ids back to
//! strings, item titles, review text, and a manifest.
//!
//! ```text
//! manifest.json          format, sources (name, bytes, SHA-256), filters, counts, features, version
//! timelines.safetensors  user_offsets i64 [U+1] (CSR over interactions), item i32 [N],
//!                        timestamp i64 [N] (seconds), rating i32 [N] (rating-vocabulary id),
//!                        rating_value f32 [N], category i32 [N] (the item's primary genre/category),
//!                        item_category_offsets i64 [I+1], item_category i32 [..],
//!                        review_offsets i64 [N+1] (only with reviews)
//! vocab.json             {"user": [...], "item": [...], "category": [...], "rating": [...]} raw strings by id
//! items.jsonl            one line per item id: {"title": ..., "categories": [...]}
//! reviews.bin            UTF-8 review texts back to back (only with reviews)
//! ```
//! A store is built in a hidden sibling folder and renamed into place when
//! complete; `manifest.json` is written last, and readers require it.

use anyhow::{bail, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const STORE_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const ARRAYS: &str = "timelines.safetensors";
pub const VOCAB: &str = "vocab.json";
pub const ITEMS: &str = "items.jsonl";
pub const REVIEWS: &str = "reviews.bin";

/// Interaction filters applied before numbering.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Filters {
    pub min_user_interactions: u32,
    pub min_item_interactions: u32,
}

/// What a format knows about an item besides its id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemMeta {
    pub title: Option<String>,
    /// Genres or categories, the primary one first.
    pub categories: Vec<String>,
}

/// The ordered, numbered arrays of a timeline store.
pub struct Timelines {
    pub users: Vec<String>,
    pub items: Vec<String>,
    pub item_meta: Vec<ItemMeta>,
    /// `"<none>"` first, then every genre/category name, sorted.
    pub categories: Vec<String>,
    /// Distinct rating values, ascending, in canonical text form.
    pub ratings: Vec<String>,
    /// Review offsets point into the reviews file that `finish` wrote.
    pub arrays: Arrays,
    pub filter_rounds: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceFile {
    pub name: String,
    pub role: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// Interactions that carry review text.
    pub reviews: usize,
    /// Malformed input lines skipped (with --skip-bad-lines).
    pub skipped_lines: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub store_version: u32,
    pub format: String,
    /// What the `category` feature is called for this format (genre / category).
    pub category_label: String,
    /// `set`: an item's categories are independent labels (MovieLens genres,
    /// Google categories); `path`: a hierarchy, most general first (Amazon).
    pub category_structure: String,
    pub sources: Vec<SourceFile>,
    pub filters: Filters,
    pub filter_rounds: u32,
    pub counts: Counts,
    /// Vocabulary size of each per-interaction feature.
    pub features: BTreeMap<String, usize>,
    pub timestamp_unit: String,
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vocab {
    pub user: Vec<String>,
    pub item: Vec<String>,
    pub category: Vec<String>,
    pub rating: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ItemLine {
    title: Option<String>,
    categories: Vec<String>,
}

fn bytes_of<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain-old-data numeric slices viewed as bytes (little-endian host).
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

fn sync_write(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Write a complete store into `dir` (a fresh staging folder). `reviews.bin`
/// must already be there when the timelines have reviews.
pub fn write(dir: &Path, t: &Timelines, manifest: &Manifest) -> Result<()> {
    let mut arrays: Vec<(&str, TensorView)> = vec![
        (
            "user_offsets",
            TensorView::new(Dtype::I64, vec![t.arrays.user_offsets.len()], bytes_of(&t.arrays.user_offsets))?,
        ),
        ("item", TensorView::new(Dtype::I32, vec![t.arrays.item.len()], bytes_of(&t.arrays.item))?),
        ("timestamp", TensorView::new(Dtype::I64, vec![t.arrays.timestamp.len()], bytes_of(&t.arrays.timestamp))?),
        ("rating", TensorView::new(Dtype::I32, vec![t.arrays.rating.len()], bytes_of(&t.arrays.rating))?),
        (
            "rating_value",
            TensorView::new(Dtype::F32, vec![t.arrays.rating_value.len()], bytes_of(&t.arrays.rating_value))?,
        ),
        ("category", TensorView::new(Dtype::I32, vec![t.arrays.category.len()], bytes_of(&t.arrays.category))?),
        (
            "item_category_offsets",
            TensorView::new(
                Dtype::I64,
                vec![t.arrays.item_category_offsets.len()],
                bytes_of(&t.arrays.item_category_offsets),
            )?,
        ),
        (
            "item_category",
            TensorView::new(Dtype::I32, vec![t.arrays.item_category.len()], bytes_of(&t.arrays.item_category))?,
        ),
    ];
    if let Some(off) = &t.arrays.review_offsets {
        arrays.push(("review_offsets", TensorView::new(Dtype::I64, vec![off.len()], bytes_of(off))?));
    }
    let path = dir.join(ARRAYS);
    safetensors::serialize_to_file(arrays, None, &path).with_context(|| format!("writing {}", path.display()))?;
    crate::fsutil::share(&path)?;
    std::fs::File::open(&path)?.sync_all()?;

    let vocab = Vocab {
        user: t.users.clone(),
        item: t.items.clone(),
        category: t.categories.clone(),
        rating: t.ratings.clone(),
    };
    sync_write(&dir.join(VOCAB), &serde_json::to_vec(&vocab)?)?;
    let mut items = Vec::new();
    for m in &t.item_meta {
        serde_json::to_writer(&mut items, &ItemLine { title: m.title.clone(), categories: m.categories.clone() })?;
        items.push(b'\n');
    }
    sync_write(&dir.join(ITEMS), &items)?;
    sync_write(&dir.join(MANIFEST), &serde_json::to_vec_pretty(manifest)?)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The arrays of a store (see the module documentation for their layout),
/// shared by the writer ([`Timelines`]) and the reader ([`Store`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arrays {
    /// CSR offsets over interactions, `users + 1`.
    pub user_offsets: Vec<i64>,
    pub item: Vec<i32>,
    /// Seconds.
    pub timestamp: Vec<i64>,
    /// Rating-vocabulary ids.
    pub rating: Vec<i32>,
    pub rating_value: Vec<f32>,
    /// Primary genre/category per interaction (that of its item).
    pub category: Vec<i32>,
    pub item_category_offsets: Vec<i64>,
    pub item_category: Vec<i32>,
    /// Review text per interaction: byte offsets into `reviews.bin` (N + 1 of
    /// them; an empty range = no text). None when the format has no text.
    pub review_offsets: Option<Vec<i64>>,
}

/// A store loaded into memory.
pub struct Store {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub vocab: Vocab,
    pub items: Vec<ItemMeta>,
    pub arrays: Arrays,
    reviews: Option<memmap2::Mmap>,
}

fn read_array<T: Copy + Default>(
    st: &safetensors::SafeTensors,
    name: &str,
    dtype: Dtype,
    file: &Path,
) -> Result<Vec<T>> {
    let view = st.tensor(name).with_context(|| format!("{}: missing array `{name}`", file.display()))?;
    if view.dtype() != dtype {
        bail!("{}: array `{name}` is {:?}, expected {dtype:?}", file.display(), view.dtype());
    }
    let data = view.data();
    let n = data.len() / std::mem::size_of::<T>();
    let mut out = vec![T::default(); n];
    // SAFETY: `out` has exactly `data.len()` bytes of plain numeric storage.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), out.as_mut_ptr() as *mut u8, data.len()) };
    Ok(out)
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self> {
        let mpath = dir.join(MANIFEST);
        let text = std::fs::read(&mpath).with_context(|| {
            format!("{} is not a timeline store (no {MANIFEST}; a prepare that did not finish leaves none): run `uorch data prepare`", dir.display())
        })?;
        let manifest: Manifest = serde_json::from_slice(&text).with_context(|| {
            format!(
                "{}: unreadable manifest (written by another uorch version, or damaged): prepare the store again",
                mpath.display()
            )
        })?;
        if manifest.store_version != STORE_VERSION {
            bail!(
                "{}: store version {} but this uorch reads version {STORE_VERSION}: prepare it again",
                mpath.display(),
                manifest.store_version
            );
        }
        let vocab: Vocab = serde_json::from_slice(&std::fs::read(dir.join(VOCAB))?)
            .with_context(|| format!("{}: unreadable", dir.join(VOCAB).display()))?;
        let items_text = std::fs::read_to_string(dir.join(ITEMS))?;
        let items = items_text
            .lines()
            .map(|l| serde_json::from_str::<ItemLine>(l).map(|i| ItemMeta { title: i.title, categories: i.categories }))
            .collect::<std::result::Result<Vec<_>, _>>()
            .with_context(|| format!("{}: unreadable", dir.join(ITEMS).display()))?;
        let apath = dir.join(ARRAYS);
        let file = std::fs::File::open(&apath).with_context(|| format!("opening {}", apath.display()))?;
        // SAFETY: stores are written once and renamed into place, never modified.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let st = safetensors::SafeTensors::deserialize(&map)
            .with_context(|| format!("{}: not a safetensors file", apath.display()))?;
        let has_reviews = st.names().contains(&"review_offsets");
        let reviews = if has_reviews {
            let f = std::fs::File::open(dir.join(REVIEWS))?;
            // SAFETY: as above; an empty file cannot be mapped, hence the check.
            if f.metadata()?.len() > 0 {
                Some(unsafe { memmap2::Mmap::map(&f)? })
            } else {
                None
            }
        } else {
            None
        };
        let arrays = Arrays {
            user_offsets: read_array(&st, "user_offsets", Dtype::I64, &apath)?,
            item: read_array(&st, "item", Dtype::I32, &apath)?,
            timestamp: read_array(&st, "timestamp", Dtype::I64, &apath)?,
            rating: read_array(&st, "rating", Dtype::I32, &apath)?,
            rating_value: read_array(&st, "rating_value", Dtype::F32, &apath)?,
            category: read_array(&st, "category", Dtype::I32, &apath)?,
            item_category_offsets: read_array(&st, "item_category_offsets", Dtype::I64, &apath)?,
            item_category: read_array(&st, "item_category", Dtype::I32, &apath)?,
            review_offsets: if has_reviews {
                Some(read_array(&st, "review_offsets", Dtype::I64, &apath)?)
            } else {
                None
            },
        };
        let store = Self { dir: dir.to_path_buf(), arrays, reviews, manifest, vocab, items };
        store.check()?;
        Ok(store)
    }

    /// Shapes agree with each other and the manifest.
    fn check(&self) -> Result<()> {
        let c = &self.manifest.counts;
        let n = self.arrays.item.len();
        let ok = self.arrays.user_offsets.len() == c.users + 1
            && *self.arrays.user_offsets.last().unwrap_or(&-1) == n as i64
            && n == c.interactions
            && [
                self.arrays.timestamp.len(),
                self.arrays.rating.len(),
                self.arrays.rating_value.len(),
                self.arrays.category.len(),
            ]
            .iter()
            .all(|&l| l == n)
            && self.items.len() == c.items
            && self.arrays.item_category_offsets.len() == c.items + 1
            && self.arrays.review_offsets.as_ref().is_none_or(|o| o.len() == n + 1);
        if !ok {
            bail!(
                "{}: arrays do not match the manifest's counts: the store is damaged, prepare it again",
                self.dir.display()
            );
        }
        Ok(())
    }

    pub fn users(&self) -> usize {
        self.arrays.user_offsets.len() - 1
    }

    /// Interaction index range of user `u`.
    pub fn range(&self, u: usize) -> std::ops::Range<usize> {
        self.arrays.user_offsets[u] as usize..self.arrays.user_offsets[u + 1] as usize
    }

    /// Genre/category ids of item `i`.
    pub fn item_categories(&self, i: usize) -> &[i32] {
        &self.arrays.item_category
            [self.arrays.item_category_offsets[i] as usize..self.arrays.item_category_offsets[i + 1] as usize]
    }

    /// Review text of interaction `k`, if it has one.
    pub fn review(&self, k: usize) -> Option<&str> {
        let off = self.arrays.review_offsets.as_ref()?;
        let (a, b) = (off[k] as usize, off[k + 1] as usize);
        if a == b {
            return None;
        }
        std::str::from_utf8(&self.reviews.as_ref()?[a..b]).ok()
    }

    /// The item's title, or its raw id when the metadata had none.
    pub fn title(&self, i: usize) -> &str {
        self.items[i].title.as_deref().unwrap_or(&self.vocab.item[i])
    }

    /// Dense user index of a raw user id.
    pub fn user_index(&self, raw: &str) -> Option<usize> {
        self.vocab.user.iter().position(|u| u == raw)
    }
}
