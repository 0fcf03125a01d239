//! `uorch data prepare` / `stats` on the real MovieLens-100K and on small files
//! in every supported format, including malformed ones.

use crate::common::{project_root, stderr, stdout, uorch};
use std::io::Write;
use std::path::{Path, PathBuf};
use uorch::data::store::Store;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn write_gz(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    p
}

/// Run `uorch data prepare` with no filtering.
fn run_prepare(inputs: &[&Path], out: &Path, extra: &[&str]) -> std::process::Output {
    uorch()
        .args(["data", "prepare"])
        .args(inputs)
        .arg("--out")
        .arg(out)
        .args(["--min-user-interactions", "1", "--min-item-interactions", "1"])
        .args(extra)
        .output()
        .unwrap()
}

/// Prepare; panics with the CLI's stderr on failure.
fn prepare(inputs: &[&Path], out: &Path, extra: &[&str]) -> String {
    let o = run_prepare(inputs, out, extra);
    assert!(o.status.success(), "prepare failed:\n{}", stderr(&o));
    stdout(&o)
}

/// Prepare expecting failure, and check nothing was left behind.
fn prepare_fails(inputs: &[&Path], out: &Path, extra: &[&str]) -> String {
    let o = run_prepare(inputs, out, extra);
    assert!(!o.status.success(), "prepare should fail:\n{}", stdout(&o));
    assert!(!out.exists(), "a failed prepare left {}", out.display());
    let parent = out.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "staging folder left behind");
    stderr(&o)
}

fn stats_json(store: &Path) -> serde_json::Value {
    let o = uorch().args(["data", "stats"]).arg(store).arg("--json").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn counts(store: &Path) -> (u64, u64, u64) {
    let s = stats_json(store);
    (s["users"].as_u64().unwrap(), s["items"].as_u64().unwrap(), s["interactions"].as_u64().unwrap())
}

/// A user's history as (title, rating text) pairs, oldest first.
fn history(s: &Store, raw_user: &str) -> Vec<(String, String)> {
    let u = s.user_index(raw_user).unwrap();
    s.range(u)
        .map(|k| (s.title(s.arrays.item[k] as usize).to_string(), s.vocab.rating[s.arrays.rating[k] as usize].clone()))
        .collect()
}

fn categories(s: &Store, raw_item: &str) -> Vec<String> {
    let i = s.vocab.item.iter().position(|x| x == raw_item).unwrap();
    s.item_categories(i).iter().map(|&c| s.vocab.category[c as usize].clone()).collect()
}

#[test]
fn real_movielens_100k_prepares_to_exactly_943_users_1682_items_100000_interactions() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("ml100k");
    prepare(&[&project_root().join("assets/ml-100k")], &out, &[]);
    assert_eq!(counts(&out), (943, 1682, 100_000));
    let s = Store::open(&out).unwrap();
    assert_eq!(s.manifest.format, "recbole");
    let toy = s.vocab.item.iter().position(|x| x == "1").unwrap();
    assert_eq!(s.title(toy), "Toy Story (1995)");
    assert_eq!(categories(&s, "1"), ["Animation", "Children's", "Comedy"]);
    // Every user's timeline is in time order.
    for u in 0..s.users() {
        let r = s.range(u);
        assert!(s.arrays.timestamp[r].windows(2).all(|w| w[0] <= w[1]));
    }
    // The default 5-core filter keeps every user (all have >= 20) but drops rare items.
    let out5 = d.path().join("ml100k-5core");
    let o = uorch()
        .args(["data", "prepare"])
        .arg(project_root().join("assets/ml-100k"))
        .arg("--out")
        .arg(&out5)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (u, i, n) = counts(&out5);
    assert_eq!(u, 943);
    assert!(i < 1682 && n < 100_000, "{i} {n}");
}

#[test]
fn ml_100k_files_with_latin1_titles_and_genre_flags() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("ml-100k");
    std::fs::create_dir(&src).unwrap();
    let flags = |on: &[usize]| (0..19).map(|i| if on.contains(&i) { "1" } else { "0" }).collect::<Vec<_>>().join("|");
    let mut item = Vec::new();
    item.extend_from_slice(format!("1|Toy Story (1995)|01-Jan-1995||http://x|{}\n", flags(&[3, 4, 5])).as_bytes());
    item.extend_from_slice(b"2|Caf\xe9 Society (1995)|01-Jan-1995||http://x|");
    item.extend_from_slice(format!("{}\n", flags(&[8])).as_bytes());
    write(&src, "u.item", &item);
    write(&src, "u.data", b"7\t2\t4\t881250950\n7\t1\t5\t881250949\n3\t1\t3\t881250000\n");
    let out = d.path().join("store");
    prepare(&[&src], &out, &[]);
    assert_eq!(counts(&out), (2, 2, 3));
    let s = Store::open(&out).unwrap();
    assert_eq!(s.manifest.format, "ml-100k");
    assert_eq!(
        history(&s, "7"),
        [("Toy Story (1995)".to_string(), "5".to_string()), ("Café Society (1995)".to_string(), "4".to_string())]
    );
    assert_eq!(categories(&s, "1"), ["Animation", "Children's", "Comedy"]);
    assert_eq!(categories(&s, "2"), ["Drama"]);
}

#[test]
fn movielens_dat_latin1_with_double_colon_fields() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "movies.dat",
        b"1::Toy Story (1995)::Animation|Children's|Comedy\n2::Mis\xe9rables, Les (1995)::Drama|Musical\n",
    );
    write(d.path(), "ratings.dat", b"1::2::5::978300760\n1::1::3::978302109\n2::1::4::978301968\n");
    let out = d.path().join("store");
    prepare(&[&d.path().join("movies.dat"), &d.path().join("ratings.dat")], &out, &[]);
    assert_eq!(counts(&out), (2, 2, 3));
    let s = Store::open(&out).unwrap();
    assert_eq!(s.manifest.format, "movielens-dat");
    assert_eq!(
        history(&s, "1"),
        [("Misérables, Les (1995)".to_string(), "5".to_string()), ("Toy Story (1995)".to_string(), "3".to_string())]
    );
    assert_eq!(categories(&s, "2"), ["Drama", "Musical"]);
}

#[test]
fn movielens_csv_with_quoted_titles_half_stars_and_no_genres() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "movies.csv",
        "movieId,title,genres\n1,\"American President, The (1995)\",Comedy|Drama|Romance\n2,\"\"\"Great Performances\"\" Cats (1998)\",Musical\n3,Unknown Film (2015),(no genres listed)\n".as_bytes(),
    );
    write(
        d.path(),
        "ratings.csv",
        b"userId,movieId,rating,timestamp\n1,1,3.5,1112486027\n1,3,4.0,1112484676\n2,2,0.5,1094785740\n",
    );
    let out = d.path().join("store");
    prepare(&[d.path()], &out, &[]);
    assert_eq!(counts(&out), (2, 3, 3));
    let s = Store::open(&out).unwrap();
    assert_eq!(s.manifest.format, "movielens-csv");
    assert_eq!(
        history(&s, "1"),
        [
            ("Unknown Film (2015)".to_string(), "4".to_string()),
            ("American President, The (1995)".to_string(), "3.5".to_string())
        ]
    );
    assert_eq!(history(&s, "2"), [("\"Great Performances\" Cats (1998)".to_string(), "0.5".to_string())]);
    assert!(categories(&s, "3").is_empty());
    assert_eq!(s.vocab.rating, ["0.5", "3.5", "4"]);
}

const AMAZON_REVIEWS: &str = r#"{"overall": 5.0, "verified": true, "reviewTime": "09 13, 2009", "reviewerID": "A1", "asin": "B01", "reviewerName": "x", "reviewText": "Loved it, twice.", "summary": "great", "unixReviewTime": 1252800000}
{"overall": 2.0, "reviewerID": "A1", "asin": "B02", "summary": "meh", "unixReviewTime": 1252700000}
{"overall": 4.0, "reviewerID": "A2", "asin": "B01", "reviewText": "Caf\u00e9 scenes \u2014 good", "unixReviewTime": 1300000000}
"#;
const AMAZON_META: &str = r#"{"asin": "B01", "title": "Casablanca", "category": ["Movies & TV", "Movies", "Classics"], "main_cat": "Movies & TV"}
{"asin": "B02", "title": "", "category": [], "main_cat": "Movies & TV"}
"#;

#[test]
fn amazon_2018_gzip_json_lines_with_missing_review_text() {
    let d = tempfile::tempdir().unwrap();
    let r = write_gz(d.path(), "Movies_and_TV_5.json.gz", AMAZON_REVIEWS);
    let m = write_gz(d.path(), "meta_Movies_and_TV.json.gz", AMAZON_META);
    let out = d.path().join("store");
    prepare(&[&r, &m], &out, &[]);
    let st = stats_json(&out);
    assert_eq!(
        (st["users"].as_u64(), st["items"].as_u64(), st["interactions"].as_u64(), st["reviews"].as_u64()),
        (Some(2), Some(2), Some(3), Some(2))
    );
    let s = Store::open(&out).unwrap();
    assert_eq!(s.manifest.format, "amazon");
    assert_eq!(s.manifest.category_label, "category");
    // A1: B02 (earlier, no text, empty title → raw id) then B01.
    assert_eq!(history(&s, "A1"), [("B02".to_string(), "2".to_string()), ("Casablanca".to_string(), "5".to_string())]);
    let a1 = s.range(s.user_index("A1").unwrap());
    assert_eq!(s.review(a1.start), None);
    assert_eq!(s.review(a1.start + 1), Some("Loved it, twice."));
    let a2 = s.range(s.user_index("A2").unwrap());
    assert_eq!(s.review(a2.start), Some("Café scenes — good"));
    assert_eq!(categories(&s, "B01"), ["Movies", "Classics"]);
    assert_eq!(categories(&s, "B02"), ["Movies & TV"]);
}

#[test]
fn google_local_millisecond_times_and_null_text() {
    let d = tempfile::tempdir().unwrap();
    let r = write_gz(
        d.path(),
        "review-Vermont.json.gz",
        concat!(
            r#"{"user_id": "101", "name": "A", "time": 1609459200123, "rating": 5, "text": "Best maple syrup", "pics": null, "resp": null, "gmap_id": "0x1"}"#,
            "\n",
            r#"{"user_id": "101", "name": "A", "time": 1609459200001, "rating": 3, "text": null, "pics": null, "resp": null, "gmap_id": "0x2"}"#,
            "\n",
            r#"{"user_id": "205", "name": "B", "time": 1612137600000, "rating": 4, "text": "Nice", "gmap_id": "0x1"}"#,
            "\n"
        ),
    );
    let m = write(
        d.path(),
        "meta-Vermont.json",
        concat!(
            r#"{"name": "Sugar House", "address": "x", "gmap_id": "0x1", "category": ["Farm", "Food producer"], "avg_rating": 4.8}"#, "\n",
            r#"{"name": "Diner", "gmap_id": "0x2", "category": null}"#, "\n"
        )
        .as_bytes(),
    );
    let out = d.path().join("store");
    prepare(&[&r, &m], &out, &[]);
    assert_eq!(counts(&out), (2, 2, 3));
    let s = Store::open(&out).unwrap();
    assert_eq!(s.manifest.format, "google-local");
    // Same second, ordered by the milliseconds: 0x2 (…001) before 0x1 (…123).
    assert_eq!(
        history(&s, "101"),
        [("Diner".to_string(), "3".to_string()), ("Sugar House".to_string(), "5".to_string())]
    );
    let u = s.range(s.user_index("101").unwrap());
    assert_eq!(s.arrays.timestamp[u.start], 1609459200);
    assert_eq!(s.review(u.start), None);
    assert_eq!(s.review(u.start + 1), Some("Best maple syrup"));
    assert_eq!(categories(&s, "0x1"), ["Farm", "Food producer"]);
}

#[test]
fn preparing_the_same_input_twice_gives_byte_identical_stores() {
    let d = tempfile::tempdir().unwrap();
    let r = write_gz(d.path(), "reviews.json.gz", AMAZON_REVIEWS);
    let m = write(d.path(), "meta.json", AMAZON_META.as_bytes());
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    prepare(&[&r, &m], &a, &[]);
    prepare(&[&r, &m], &b, &[]);
    let mut names: Vec<_> = std::fs::read_dir(&a).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    for n in names {
        assert_eq!(std::fs::read(a.join(&n)).unwrap(), std::fs::read(b.join(&n)).unwrap(), "{n:?} differs");
    }
}

#[test]
fn malformed_lines_name_file_line_and_problem_or_are_counted_when_skipping() {
    let d = tempfile::tempdir().unwrap();
    // (format, its files and their bytes, the error expected)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a [u8])>, &'a str);
    let cases: Vec<Case> = vec![
        ("csv", vec![("movies.csv", b"movieId,title,genres\n1,A (1995),Drama\n"), ("ratings.csv", b"userId,movieId,rating,timestamp\n1,1,4.0,100\n1,1,four,101\n")], "ratings.csv:3: rating \"four\" is not a valid f32"),
        ("dat", vec![("movies.dat", b"1::A (1995)::Drama\n"), ("ratings.dat", b"1::1::5::978300760\n1::1::5\n")], "ratings.dat:2: expected 4 `::`-separated fields"),
        ("100k", vec![("u.item", b"1|A|x|x|x|0|0\n"), ("u.data", b"1\t1\t5\t1\n")], "u.item:1: expected 24 `|`-separated fields"),
        ("recbole", vec![("x.item", b"item_id:token\tmovie_title:token_seq\n1\tA\n"), ("x.inter", b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t4\t881250949\n1\t1\t5\tyesterday\n")], "x.inter:3: timestamp \"yesterday\" is not a valid f64"),
        ("amazon", vec![("reviews.json", b"{\"reviewerID\": \"A\", \"asin\": \"B\", \"overall\": 5.0, \"unixReviewTime\": 1}\n{\"reviewerID\": \"A\", \"asin\": \"B\"\n")], "reviews.json:2: not an Amazon review record"),
        ("google", vec![("review.json", b"{\"user_id\": \"1\", \"gmap_id\": \"g\", \"rating\": 5, \"time\": 1}\n{\"user_id\": \"1\", \"gmap_id\": \"g\", \"rating\": 5}\n")], "review.json:2: not a Google Local review record: missing field `time`"),
    ];
    for (name, files, expected) in cases {
        let src = d.path().join(name);
        std::fs::create_dir(&src).unwrap();
        for (f, bytes) in &files {
            write(&src, f, bytes);
        }
        let out = d.path().join(format!("{name}-store"));
        let err = prepare_fails(&[&src], &out, &[]);
        assert!(err.contains(expected), "{name}: expected `{expected}` in:\n{err}");
        assert!(err.contains("--skip-bad-lines"), "{name}: {err}");
        if name != "100k" {
            // Skipping: the good lines make a store and the bad one is counted.
            let msg = prepare(&[&src], &out, &["--skip-bad-lines"]);
            assert!(msg.contains("skipped 1 malformed lines"), "{name}: {msg}");
            assert_eq!(Store::open(&out).unwrap().manifest.counts.skipped_lines, 1);
        }
    }
}

#[test]
fn missing_files_columns_and_empty_results_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "ratings.csv", b"userId,movieId,rating,timestamp\n1,1,4,1\n");
    let err = prepare_fails(&[d.path()], &d.path().join("s1"), &[]);
    assert!(err.contains("no movies.csv beside"), "{err}");

    write(d.path(), "movies.csv", b"movieId,name,genres\n1,A,Drama\n");
    let err = prepare_fails(&[d.path()], &d.path().join("s2"), &[]);
    assert!(err.contains("movies.csv:1: missing column `title` (header has: movieId, name, genres)"), "{err}");

    write(d.path(), "movies.csv", b"movieId,title,genres\n1,A,Drama\n");
    let o = uorch().args(["data", "prepare"]).arg(d.path()).arg("--out").arg(d.path().join("s3")).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no interactions left after filtering"), "{}", stderr(&o));
    assert!(!d.path().join("s3").exists());

    let other = tempfile::tempdir().unwrap();
    write(other.path(), "notes.txt", b"hello\n");
    let err = prepare_fails(&[other.path()], &other.path().join("s4"), &[]);
    assert!(err.contains("cannot tell the dataset format of [notes.txt]"), "{err}");

    let err = prepare_fails(&[&d.path().join("nope.csv")], &d.path().join("s5"), &[]);
    assert!(err.contains("nope.csv: no such file or folder"), "{err}");
}

#[test]
fn an_existing_store_is_kept_unless_forced_and_a_half_store_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "movies.csv", b"movieId,title,genres\n1,A,Drama\n");
    write(d.path(), "ratings.csv", b"userId,movieId,rating,timestamp\n1,1,4,1\n");
    let out = d.path().join("store");
    prepare(&[d.path()], &out, &[]);
    let o = uorch().args(["data", "prepare"]).arg(d.path()).arg("--out").arg(&out).output().unwrap();
    assert!(stderr(&o).contains("already exists: pass --force"), "{}", stderr(&o));
    prepare(&[d.path()], &out, &["--force"]);
    // A folder without a manifest (what an interrupted writer would leave) is not a store.
    std::fs::remove_file(out.join("manifest.json")).unwrap();
    let o = uorch().args(["data", "stats"]).arg(&out).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not a timeline store"), "{}", stderr(&o));
}

#[test]
fn a_store_reads_in_python_with_numpy_alone() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("ml");
    prepare(&[&project_root().join("assets/ml-100k")], &out, &[]);
    let o = std::process::Command::new(project_root().join(".uorch/venv/bin/python"))
        .arg(project_root().join("tests/store_read.py"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let py: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (py["users"].as_u64(), py["items"].as_u64(), py["interactions"].as_u64()),
        (Some(943), Some(1682), Some(100_000))
    );
    let s = Store::open(&out).unwrap();
    let expected: Vec<serde_json::Value> = s
        .range(0)
        .take(3)
        .map(|k| {
            let i = s.arrays.item[k] as usize;
            serde_json::json!([
                s.vocab.user[0],
                s.vocab.item[i],
                s.title(i),
                s.arrays.timestamp[k],
                s.vocab.rating[s.arrays.rating[k] as usize]
            ])
        })
        .collect();
    assert_eq!(py["first"], serde_json::Value::Array(expected));
}

#[test]
fn prepare_never_writes_over_what_it_reads_nor_into_a_strangers_folder() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "movies.csv", b"movieId,title,genres\n1,A,Drama\n");
    write(d.path(), "ratings.csv", b"userId,movieId,rating,timestamp\n1,1,4,1\n");
    // The input folder itself, even with --force: it would be moved aside and deleted.
    let o = run_prepare(&[d.path()], d.path(), &["--force"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("which this command reads: choose another --out"), "{}", stderr(&o));
    assert!(d.path().join("ratings.csv").exists() && d.path().join("movies.csv").exists());
    // A folder of someone else's files, without --force.
    let other = d.path().join("other");
    std::fs::create_dir(&other).unwrap();
    write(&other, "notes.txt", b"mine\n");
    let o = run_prepare(&[&d.path().join("ratings.csv"), &d.path().join("movies.csv")], &other, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("holds files this command did not write: pass --force"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(other.join("notes.txt")).unwrap(), "mine\n");
    // An empty folder is fine.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    prepare(&[&d.path().join("ratings.csv"), &d.path().join("movies.csv")], &empty, &[]);
    assert!(empty.join("manifest.json").exists());
}

#[test]
fn prepare_json_reports_what_the_manifest_records() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("s");
    let o = uorch()
        .args(["data", "prepare"])
        .arg(project_root().join("assets/ml-100k"))
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(v["counts"], manifest["counts"]);
    assert_eq!(v["counts"]["users"], 943);
    assert_eq!((v["format"].as_str(), v["rows_read"].as_u64()), (Some("recbole"), Some(100_000)));
    for phase in ["read", "filter+order", "checksum", "write"] {
        assert!(v["phases_s"][phase].as_f64().is_some_and(|s| s >= 0.0), "{phase}: {v}");
    }
}
