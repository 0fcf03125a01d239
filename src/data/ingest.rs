//! Collecting interactions from any format, then filtering (iterated k-core),
//! ordering and numbering them into the arrays a timeline store holds.

use super::store::Arrays;
pub use super::store::{Filters, ItemMeta, Timelines};
use anyhow::{bail, Context, Result};
use rustc_hash::FxHashMap;
use std::io::Write;
use std::path::Path;

/// Raw string ids → dense numbers in order of first sight. Ids written as
/// canonical decimal integers (most MovieLens ids) are hashed as numbers,
/// which is several times cheaper than hashing the text.
#[derive(Default)]
pub struct Interner {
    numeric: FxHashMap<u64, u32>,
    text: FxHashMap<Box<str>, u32>,
    pub names: Vec<Box<str>>,
}

/// `s` as a number when it is one written canonically ("0" or no leading zero).
fn canonical_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 19 || (b[0] == b'0' && b.len() > 1) {
        return None;
    }
    let mut v = 0u64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    Some(v)
}

impl Interner {
    pub fn id(&mut self, s: &str) -> u32 {
        let next = self.names.len() as u32;
        let id = match canonical_u64(s) {
            Some(n) => *self.numeric.entry(n).or_insert(next),
            None => match self.text.get(s) {
                Some(&i) => i,
                None => {
                    self.text.insert(s.into(), next);
                    next
                }
            },
        };
        if id == next {
            self.names.push(s.into());
        }
        id
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        match canonical_u64(s) {
            Some(n) => self.numeric.get(&n).copied(),
            None => self.text.get(s).copied(),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// How malformed lines are treated: an error at the first one, or counted.
pub struct BadLines {
    pub skip: bool,
    pub count: u64,
    pub first: Vec<String>,
}

impl BadLines {
    pub fn new(skip: bool) -> Self {
        Self { skip, count: 0, first: Vec::new() }
    }

    /// A malformed line at `place` (`file:line`): an error, or counted when skipping.
    pub fn report(&mut self, place: &str, problem: impl std::fmt::Display) -> Result<()> {
        let msg = format!("{place}: {problem}");
        if !self.skip {
            bail!("{msg} (pass --skip-bad-lines to count and skip such lines)");
        }
        self.count += 1;
        if self.first.len() < 5 {
            self.first.push(msg);
        }
        Ok(())
    }
}

/// Review texts, spilled to a file as they arrive so memory stays bounded.
struct ReviewSpill {
    file: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
    written: u64,
}

/// No review text for an interaction.
const NO_TEXT: u32 = u32::MAX;

/// Interactions as read, in input order.
pub struct Collector {
    pub users: Interner,
    pub items: Interner,
    user: Vec<u32>,
    item: Vec<u32>,
    /// Milliseconds since the epoch (formats in seconds are scaled).
    time_ms: Vec<i64>,
    rating: Vec<f32>,
    review_start: Vec<u64>,
    review_len: Vec<u32>,
    spill: Option<ReviewSpill>,
    pub meta: FxHashMap<Box<str>, ItemMeta>,
}

impl Collector {
    /// `spill_dir`: where review text is buffered (inside the store being built).
    pub fn new(spill_dir: Option<&Path>, expected_rows: usize) -> Result<Self> {
        let spill = match spill_dir {
            None => None,
            Some(dir) => {
                let path = dir.join("reviews.spill");
                let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                Some(ReviewSpill { file: std::io::BufWriter::with_capacity(1 << 20, file), path, written: 0 })
            }
        };
        Ok(Self {
            users: Interner::default(),
            items: Interner::default(),
            user: Vec::with_capacity(expected_rows),
            item: Vec::with_capacity(expected_rows),
            time_ms: Vec::with_capacity(expected_rows),
            rating: Vec::with_capacity(expected_rows),
            review_start: Vec::new(),
            review_len: Vec::new(),
            spill,
            meta: FxHashMap::default(),
        })
    }

    pub fn len(&self) -> usize {
        self.user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }

    pub fn push(&mut self, user: &str, item: &str, time_ms: i64, rating: f32, review: Option<&str>) -> Result<()> {
        let u = self.users.id(user);
        let i = self.items.id(item);
        self.user.push(u);
        self.item.push(i);
        self.time_ms.push(time_ms);
        self.rating.push(rating);
        if let Some(spill) = &mut self.spill {
            match review.filter(|t| !t.trim().is_empty()) {
                Some(text) => {
                    spill.file.write_all(text.as_bytes())?;
                    self.review_start.push(spill.written);
                    self.review_len.push(text.len() as u32);
                    spill.written += text.len() as u64;
                }
                None => {
                    self.review_start.push(0);
                    self.review_len.push(NO_TEXT);
                }
            }
        }
        Ok(())
    }
}

pub const NO_CATEGORY: &str = "<none>";

/// Canonical text of a rating: `4` for whole numbers, else shortest decimal.
pub fn rating_text(r: f32) -> String {
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

/// Order raw ids numerically when all are integers, else as strings.
fn sorted_ids(names: &[&str]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    let numeric: Option<Vec<u64>> = names.iter().map(|n| n.parse::<u64>().ok()).collect();
    match numeric {
        Some(nums) => order.sort_by_key(|&i| (nums[i], names[i])),
        None => order.sort_by_key(|&i| names[i]),
    }
    order
}

/// Iterated k-core: drop users and items below their minimum counts until
/// nothing changes. Returns the keep mask and the number of rounds.
fn k_core(c: &Collector, f: Filters) -> (Vec<bool>, u32) {
    let mut keep = vec![true; c.len()];
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut uc = vec![0u32; c.users.len()];
        let mut ic = vec![0u32; c.items.len()];
        for (k, &on) in keep.iter().enumerate() {
            if on {
                uc[c.user[k] as usize] += 1;
                ic[c.item[k] as usize] += 1;
            }
        }
        let mut changed = false;
        for (k, on) in keep.iter_mut().enumerate() {
            if *on
                && (uc[c.user[k] as usize] < f.min_user_interactions
                    || ic[c.item[k] as usize] < f.min_item_interactions)
            {
                *on = false;
                changed = true;
            }
        }
        if !changed {
            return (keep, rounds);
        }
    }
}

impl Collector {
    /// Filter, number and order everything. Users and items are numbered in
    /// ascending raw-id order; each user's interactions are ordered by time,
    /// ties by item number, then by input order. Review text, when the format
    /// has it, is written to `reviews_out` in that order.
    pub fn finish(self, filters: Filters, reviews_out: Option<&Path>) -> Result<Timelines> {
        let (keep, filter_rounds) = k_core(&self, filters);
        let kept = keep.iter().filter(|k| **k).count();
        if kept == 0 {
            bail!(
                "no interactions left after filtering ({} read; --min-user-interactions {} --min-item-interactions {}): lower the minimums",
                self.len(),
                filters.min_user_interactions,
                filters.min_item_interactions
            );
        }
        // Renumber kept users and items in raw-id order.
        let renumber = |interner: &Interner, ids: &[u32]| -> (Vec<u32>, Vec<String>) {
            let mut present = vec![false; interner.len()];
            for (k, &id) in ids.iter().enumerate() {
                if keep[k] {
                    present[id as usize] = true;
                }
            }
            let live: Vec<usize> = (0..interner.len()).filter(|&i| present[i]).collect();
            let names: Vec<&str> = live.iter().map(|&i| &*interner.names[i]).collect();
            let order = sorted_ids(&names);
            let mut map = vec![u32::MAX; interner.len()];
            let mut out = Vec::with_capacity(order.len());
            for (new, &pos) in order.iter().enumerate() {
                map[live[pos]] = new as u32;
                out.push(names[pos].to_string());
            }
            (map, out)
        };
        let (user_map, users) = renumber(&self.users, &self.user);
        let (item_map, items) = renumber(&self.items, &self.item);

        // Bucket interactions by user (a counting sort, stable in input order),
        // then order each user's few interactions by (time, item, input order).
        let mut starts = vec![0usize; users.len() + 1];
        for (k, &u) in self.user.iter().enumerate() {
            if keep[k] {
                starts[user_map[u as usize] as usize + 1] += 1;
            }
        }
        for u in 0..users.len() {
            starts[u + 1] += starts[u];
        }
        let mut order = vec![0u32; starts[users.len()]];
        let mut fill = starts.clone();
        for (k, &u) in self.user.iter().enumerate() {
            if keep[k] {
                let slot = &mut fill[user_map[u as usize] as usize];
                order[*slot] = k as u32;
                *slot += 1;
            }
        }
        for w in starts.windows(2) {
            order[w[0]..w[1]].sort_unstable_by_key(|&k| {
                let k = k as usize;
                (self.time_ms[k], item_map[self.item[k] as usize], k)
            });
        }

        // Categories of kept items, and their vocabulary.
        let item_meta: Vec<ItemMeta> =
            items.iter().map(|raw| self.meta.get(raw.as_str()).cloned().unwrap_or_default()).collect();
        let mut categories: Vec<String> = item_meta.iter().flat_map(|m| m.categories.iter().cloned()).collect();
        categories.sort();
        categories.dedup();
        categories.retain(|c| c != NO_CATEGORY);
        categories.insert(0, NO_CATEGORY.to_string());
        let cat_id: FxHashMap<&str, i32> = categories.iter().enumerate().map(|(i, c)| (c.as_str(), i as i32)).collect();
        let mut item_category_offsets = vec![0i64];
        let mut item_category = Vec::new();
        let mut primary = Vec::with_capacity(items.len());
        for m in &item_meta {
            let mut seen = Vec::new();
            for c in &m.categories {
                let id = cat_id[c.as_str()];
                if !seen.contains(&id) {
                    seen.push(id);
                }
            }
            primary.push(seen.first().copied().unwrap_or(0));
            item_category.extend_from_slice(&seen);
            item_category_offsets.push(item_category.len() as i64);
        }

        // Rating vocabulary.
        let mut values: Vec<f32> = order.iter().map(|&k| self.rating[k as usize]).collect();
        values.sort_by(f32::total_cmp);
        values.dedup();
        let ratings: Vec<String> = values.iter().map(|v| rating_text(*v)).collect();

        let n = order.len();
        let mut user_offsets = vec![0i64; users.len() + 1];
        let (mut item, mut timestamp, mut rating, mut rating_value, mut category) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for &k in &order {
            let k = k as usize;
            user_offsets[user_map[self.user[k] as usize] as usize + 1] += 1;
            let it = item_map[self.item[k] as usize];
            item.push(it as i32);
            timestamp.push(self.time_ms[k].div_euclid(1000));
            let r = self.rating[k];
            rating.push(values.binary_search_by(|v| v.total_cmp(&r)).expect("rating in vocabulary") as i32);
            rating_value.push(r);
            category.push(primary[it as usize]);
        }
        for u in 0..users.len() {
            user_offsets[u + 1] += user_offsets[u];
        }

        let review_offsets = match (self.spill, reviews_out) {
            (None, _) | (_, None) => None,
            (Some(mut spill), Some(out)) => {
                spill.file.flush()?;
                drop(spill.file);
                let f = std::fs::File::open(&spill.path)?;
                // SAFETY: the spill file is private to this process and no longer written.
                let text = if spill.written == 0 { None } else { Some(unsafe { memmap2::Mmap::map(&f)? }) };
                let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
                let mut offsets = Vec::with_capacity(n + 1);
                let mut end = 0i64;
                offsets.push(0i64);
                for &k in &order {
                    let k = k as usize;
                    if self.review_len[k] != NO_TEXT {
                        let start = self.review_start[k] as usize;
                        let text = text.as_ref().expect("text was written");
                        w.write_all(&text[start..start + self.review_len[k] as usize])?;
                        end += self.review_len[k] as i64;
                    }
                    offsets.push(end);
                }
                w.flush()?;
                w.get_ref().sync_all()?;
                std::fs::remove_file(&spill.path)?;
                Some(offsets)
            }
        };

        Ok(Timelines {
            users,
            items,
            item_meta,
            categories,
            ratings,
            arrays: Arrays {
                user_offsets,
                item,
                timestamp,
                rating,
                rating_value,
                category,
                item_category_offsets,
                item_category,
                review_offsets,
            },
            filter_rounds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(rows: &[(&str, &str, i64)]) -> Collector {
        let mut c = Collector::new(None, 0).unwrap();
        for (u, i, t) in rows {
            c.push(u, i, *t * 1000, 4.0, None).unwrap();
        }
        c
    }

    #[test]
    fn interner_gives_numeric_and_text_ids_one_id_space() {
        let mut i = Interner::default();
        assert_eq!((i.id("12"), i.id("abc"), i.id("012"), i.id("12"), i.id("abc")), (0, 1, 2, 0, 1));
        assert_eq!(i.names.len(), 3);
        assert_eq!(i.get("012"), Some(2));
        assert_eq!(i.get("13"), None);
        assert_eq!(canonical_u64("0"), Some(0));
        assert_eq!(canonical_u64("99999999999999999999"), None);
    }

    #[test]
    fn k_core_iterates_until_every_user_and_item_meets_the_minimum() {
        // Item c has 1 interaction: removing it leaves user 3 with 1, which then
        // drops item b to 1 ... a second round is needed.
        let c = collect(&[
            ("1", "a", 1),
            ("1", "b", 2),
            ("2", "a", 1),
            ("2", "b", 2),
            ("3", "b", 1),
            ("3", "c", 2),
            ("4", "a", 3),
            ("4", "d", 4),
        ]);
        let t = c.finish(Filters { min_user_interactions: 2, min_item_interactions: 2 }, None).unwrap();
        assert_eq!(t.users, ["1", "2"]);
        assert_eq!(t.items, ["a", "b"]);
        assert_eq!(t.arrays.item.len(), 4);
        assert!(t.filter_rounds >= 2);
    }

    #[test]
    fn order_is_by_numeric_id_then_time_then_item_then_input() {
        let c = collect(&[("10", "5", 7), ("9", "3", 2), ("10", "2", 7), ("10", "1", 3), ("9", "3", 2)]);
        let t = c.finish(Filters { min_user_interactions: 1, min_item_interactions: 1 }, None).unwrap();
        assert_eq!(t.users, ["9", "10"]);
        assert_eq!(t.items, ["1", "2", "3", "5"]);
        assert_eq!(t.arrays.user_offsets, [0, 2, 5]);
        // user 10: t=3 item 1, then t=7 ties broken by item: 2 before 5.
        let names: Vec<&str> = t.arrays.item.iter().map(|&i| t.items[i as usize].as_str()).collect();
        assert_eq!(names, ["3", "3", "1", "2", "5"]);
        assert_eq!(t.arrays.timestamp, [2, 2, 3, 7, 7]);
    }

    #[test]
    fn empty_result_after_filtering_is_an_error() {
        let c = collect(&[("1", "a", 1)]);
        let e =
            c.finish(Filters { min_user_interactions: 2, min_item_interactions: 1 }, None).err().unwrap().to_string();
        assert!(e.contains("no interactions left after filtering"), "{e}");
    }

    #[test]
    fn ratings_and_categories_get_sorted_vocabularies() {
        let mut c = Collector::new(None, 0).unwrap();
        c.meta.insert(
            "a".into(),
            ItemMeta { title: Some("A".into()), categories: vec!["Drama".into(), "Comedy".into()] },
        );
        c.push("1", "a", 0, 4.5, None).unwrap();
        c.push("1", "b", 1, 1.0, None).unwrap();
        let t = c.finish(Filters { min_user_interactions: 1, min_item_interactions: 1 }, None).unwrap();
        assert_eq!(t.ratings, ["1", "4.5"]);
        assert_eq!(t.categories, ["<none>", "Comedy", "Drama"]);
        assert_eq!(t.arrays.rating, [1, 0]);
        // Item a's primary category is its first listed (Drama = 2); b has none.
        assert_eq!(t.arrays.category, [2, 0]);
        assert_eq!(t.arrays.item_category, [2, 1]);
        assert_eq!(t.arrays.item_category_offsets, [0, 2, 2]);
    }
}
