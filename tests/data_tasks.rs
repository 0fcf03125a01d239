//! Splits, windows, sharding, task examples and TextPrompt rendering on small
//! stores whose answers are worked out by hand.

use std::path::Path;
use uorch::data::catalog::Catalog;
use uorch::data::formats::Format;
use uorch::data::ingest::Filters;
use uorch::data::prepare::{prepare, PrepareOptions};
use uorch::data::split::{epoch_batches, eval_cases, training_windows, Sharding, Split, WindowSpec};
use uorch::data::store::Store;
use uorch::data::tasks::{examples, favorite_category, Target, Task};
use uorch::task::prompt::{render_history, task_prompt, TokenCounter};

/// Movies 1..=10; user 1 rates all ten in order (time = 100 * id), user 2 two, user 3 one.
fn movielens_store(dir: &Path) -> Store {
    let genres =
        ["Comedy", "Drama", "Comedy|Drama", "Action", "Action", "Drama", "Comedy", "Action|Comedy", "Drama", "Horror"];
    let mut movies = String::from("movieId,title,genres\n");
    for (i, g) in genres.iter().enumerate() {
        movies.push_str(&format!("{},\"Film {}, The (199{})\",{g}\n", i + 1, i + 1, i));
    }
    let mut ratings = String::from("userId,movieId,rating,timestamp\n");
    for m in 1..=10 {
        ratings.push_str(&format!("1,{m},{}.0,{}\n", 1 + m % 5, 100 * m));
    }
    ratings.push_str("2,3,4.5,50\n2,1,2.0,60\n3,4,3.0,70\n");
    std::fs::write(dir.join("movies.csv"), movies).unwrap();
    std::fs::write(dir.join("ratings.csv"), ratings).unwrap();
    let out = dir.join("store");
    prepare(&PrepareOptions {
        inputs: vec![dir.to_path_buf()],
        out: out.clone(),
        format: Some(Format::named("movielens-csv").expect("a registered format")),
        filters: Filters { min_user_interactions: 1, min_item_interactions: 1 },
        skip_bad_lines: false,
        force: false,
        progress: false,
    })
    .unwrap();
    Store::open(&out).unwrap()
}

fn rel(s: &Store, user: &str, r: std::ops::Range<usize>) -> (usize, usize) {
    let start = s.range(s.user_index(user).unwrap()).start;
    (r.start - start, r.end - start)
}

#[test]
fn windows_cover_the_training_part_from_its_end_backwards() {
    let d = tempfile::tempdir().unwrap();
    let s = movielens_store(d.path());
    let w = training_windows(&s, WindowSpec { length: 3, stride: 2 });
    // Only user 1 has >= 2 training interactions (10 - 2 held out = 8).
    let got: Vec<(usize, usize)> = w.iter().map(|w| rel(&s, "1", w.start..w.end)).collect();
    assert_eq!(got, [(0, 4), (2, 6), (4, 8)]);
    let long = training_windows(&s, WindowSpec { length: 50, stride: 10 });
    assert_eq!(long.iter().map(|w| rel(&s, "1", w.start..w.end)).collect::<Vec<_>>(), [(0, 8)]);
    let dense = training_windows(&s, WindowSpec { length: 3, stride: 1 });
    assert_eq!(dense.len(), 5);
}

#[test]
fn evaluation_cases_hold_out_the_last_and_second_to_last() {
    let d = tempfile::tempdir().unwrap();
    let s = movielens_store(d.path());
    let test = eval_cases(&s, Split::Test, 3);
    assert_eq!(test.len(), 2, "users 1 and 2 (user 3 has no history)");
    assert_eq!(rel(&s, "1", test[0].history.clone()), (6, 9));
    assert_eq!(test[0].target - s.range(0).start, 9);
    assert_eq!(rel(&s, "2", test[1].history.clone()), (0, 1));
    let valid = eval_cases(&s, Split::Valid, 3);
    assert_eq!(valid.len(), 1);
    assert_eq!(rel(&s, "1", valid[0].history.clone()), (5, 8));
    // Next-item targets are the held-out movies: user 1's last is movie 10.
    let ex = examples(&s, Task::NextItem, Split::Test, 3).unwrap();
    assert_eq!(ex[0].target, Target::Item(s.vocab.item.iter().position(|x| x == "10").unwrap() as i32));
}

#[test]
fn favorite_genre_counts_every_genre_and_breaks_ties_by_recency() {
    let d = tempfile::tempdir().unwrap();
    let s = movielens_store(d.path());
    let cat = |name: &str| s.vocab.category.iter().position(|c| c == name).unwrap() as i32;
    let u = s.range(s.user_index("1").unwrap()).start;
    // Movies 1..=4: Comedy 2, Drama 2, Action 1; Drama (movie 3) and Comedy
    // (movie 3) tie on count and recency → smaller id: Comedy.
    assert_eq!(favorite_category(&s, u..u + 4), cat("Comedy"));
    // Movies 4..=7: Action 2, Drama 1, Comedy 1 → Action.
    assert_eq!(favorite_category(&s, u + 3..u + 7), cat("Action"));
    // Movies 6..=9: Drama 2 (6, 9), Comedy 2 (7, 8), Action 1 → tie, Drama seen last.
    assert_eq!(favorite_category(&s, u + 5..u + 9), cat("Drama"));
    let ex = examples(&s, Task::FavoriteCategory, Split::Test, 4).unwrap();
    assert_eq!(ex[0].target, Target::Category(cat("Drama")));
}

#[test]
fn text_prompt_renders_titles_genres_and_ratings_oldest_first() {
    let d = tempfile::tempdir().unwrap();
    let s = movielens_store(d.path());
    let u = s.range(s.user_index("2").unwrap());
    let cat = Catalog::of_store(&s);
    assert_eq!(
        render_history(&cat, &s.interactions(u.clone())),
        "Film 3, The (1992) [Comedy, Drama] rated 4.5/5; Film 1, The (1990) [Comedy] rated 2/5"
    );
    let ex = &examples(&s, Task::NextItem, Split::Test, 50).unwrap()[1];
    assert_eq!(
        task_prompt(&s, &cat, Task::NextItem, ex),
        "A user's movie history, oldest first: Film 3, The (1992) [Comedy, Drama] rated 4.5/5.\nQuestion: Which movie will the user choose next?\nAnswer:"
    );
}

#[test]
fn token_counts_come_from_the_given_tokenizer() {
    let d = tempfile::tempdir().unwrap();
    let s = movielens_store(d.path());
    // A word-level tokenizer with a whitespace pre-tokenizer: one token per run
    // of word characters or of punctuation.
    let tok = d.path().join("tokenizer.json");
    std::fs::write(
        &tok,
        r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
            "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"[UNK]":0,"Film":1},"unk_token":"[UNK]"}}"#,
    )
    .unwrap();
    let counter = TokenCounter::from_file(&tok).unwrap();
    let text = render_history(&Catalog::of_store(&s), &s.interactions(s.range(s.user_index("2").unwrap())));
    // Count the same pieces independently.
    let mut expected = 0;
    let mut prev: Option<bool> = None;
    for ch in text.chars() {
        let kind = if ch.is_whitespace() { None } else { Some(ch.is_alphanumeric() || ch == '_') };
        if kind.is_some() && kind != prev {
            expected += 1;
        }
        prev = kind;
    }
    assert_eq!(counter.count(&text).unwrap(), expected);
    assert!(TokenCounter::from_file(&d.path().join("movies.csv")).is_err());
}

#[test]
fn rank_shards_of_the_training_windows_partition_them() {
    let d = tempfile::tempdir().unwrap();
    let s = movielens_store(d.path());
    let n = training_windows(&s, WindowSpec { length: 2, stride: 1 }).len();
    // Ends 8, 7, ..., 3 (the one ending at 3 starts at the first interaction).
    assert_eq!(n, 6);
    let mut seen = Vec::new();
    for rank in 0..3 {
        let b = epoch_batches(n, Sharding { world: 3, rank, batch_size: 2, seed: 5, shuffle: true }, 0);
        assert!(b.iter().all(|batch| batch.len() == 2));
        assert_eq!(b.len(), 1);
        seen.extend(b.into_iter().flatten());
    }
    seen.sort();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
}

#[test]
fn review_examples_skip_targets_without_text_and_need_a_store_with_reviews() {
    let d = tempfile::tempdir().unwrap();
    let s = movielens_store(d.path());
    let e = examples(&s, Task::Review, Split::Test, 5).unwrap_err().to_string();
    assert!(e.contains("review generation needs review text"), "{e}");

    let a = tempfile::tempdir().unwrap();
    let mut reviews = String::new();
    for (u, asin, t, text) in [
        ("U1", "P1", 1, "first"),
        ("U1", "P2", 2, "second"),
        ("U1", "P3", 3, ""),
        ("U2", "P1", 1, "x"),
        ("U2", "P2", 2, "liked it"),
    ] {
        reviews.push_str(&format!(
            r#"{{"reviewerID":"{u}","asin":"{asin}","overall":4.0,"unixReviewTime":{t},"reviewText":"{text}"}}"#
        ));
        reviews.push('\n');
    }
    std::fs::write(a.path().join("reviews.json"), reviews).unwrap();
    let out = a.path().join("store");
    prepare(&PrepareOptions {
        inputs: vec![a.path().join("reviews.json")],
        out: out.clone(),
        format: None,
        filters: Filters { min_user_interactions: 1, min_item_interactions: 1 },
        skip_bad_lines: false,
        force: false,
        progress: false,
    })
    .unwrap();
    let s = Store::open(&out).unwrap();
    let ex = examples(&s, Task::Review, Split::Test, 5).unwrap();
    // U1's last review is empty: no example; U2's is "liked it".
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].target, Target::Review("liked it".into()));
}

#[test]
fn the_favorite_category_question_lists_every_option_in_the_catalogs_order() {
    let d = tempfile::tempdir().unwrap();
    let store = crate::common::prepare_ml100k(d.path());
    let cat = Catalog::of_store(&Store::open(&store).unwrap());
    let q = uorch::task::prompt::question(&cat, Task::FavoriteCategory, None);
    assert_eq!(cat.categories.len(), 20, "<none>, MovieLens-100K's 18 genres and `unknown`: {:?}", cat.categories);
    let options = format!("Options: {}.", cat.categories[1..].join(", "));
    assert!(q.contains(&options), "{q}");
    assert!(q.contains("Drama") && q.contains("Film-Noir") && !q.contains("<none>"), "{q}");
}

fn spec(task: Task, window: usize, candidates: usize) -> uorch::task::ask::TaskSpec {
    uorch::task::ask::TaskSpec {
        task,
        window,
        text_window: window,
        candidates,
        max_new_tokens: 8,
        seed: 1,
        scoring: Default::default(),
        chat_template: false,
    }
}

#[test]
fn next_item_negatives_never_come_from_anything_the_user_did_before() {
    let d = tempfile::tempdir().unwrap();
    let s = movielens_store(d.path());
    let cat = Catalog::of_store(&s);
    // A window of 2 shows user 1 only movies 8 and 9, but all of 1..9 came before the held-out 10.
    let qs = uorch::task::examples::evaluation(&s, &cat, &spec(Task::NextItem, 2, 10), Split::Test, 0);
    let candidates = |user: &str| -> Vec<String> {
        let q = qs.iter().find(|q| s.vocab.user[q.user] == user).expect("a question for the user");
        let uorch::task::ask::Question::NextItem { candidates } = &q.question else { panic!("next-item") };
        candidates.iter().map(|&i| cat.items[i].clone()).collect()
    };
    assert_eq!(candidates("1"), ["10"], "every other movie is in user 1's earlier history");
    // User 2 saw movie 3, then is asked about movie 1: nine candidates, never 3.
    let c2 = candidates("2");
    assert_eq!(c2.len(), 9, "{c2:?}");
    assert!(c2.contains(&"1".to_string()) && !c2.contains(&"3".to_string()), "{c2:?}");
}

#[test]
fn favorite_genre_training_labels_count_exactly_the_window_the_encoder_reads() {
    let d = tempfile::tempdir().unwrap();
    let s = movielens_store(d.path());
    // Windows of 3 over user 1's training part (movies 1..8) hold 4 interactions (3 + the
    // next item's target); the label and the history are the last 3.
    let train = uorch::task::examples::training(&s, Task::FavoriteCategory, 3, 2).unwrap();
    for ex in &train {
        assert_eq!(ex.history.len(), 3, "{:?}", ex.history);
        let uorch::task::ask::TargetText::Category(c) = ex.target else { panic!("a category") };
        assert_eq!(c as i32, favorite_category(&s, ex.history.clone()));
    }
    // The first window (movies 1..4): movies 2..4 are Drama, Comedy|Drama, Action:
    // Drama twice; counting movie 1 (Comedy) too would tie Comedy with Drama.
    let first = &train[0];
    assert_eq!(rel(&s, "1", first.history.clone()), (1, 4));
    let uorch::task::ask::TargetText::Category(c) = first.target else { unreachable!() };
    assert_eq!(s.vocab.category[c], "Drama");
}

#[test]
fn test_users_are_drawn_uniformly_with_the_seed_not_taken_from_the_front() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(&crate::common::prepare_ml100k(d.path())).unwrap();
    let cat = Catalog::of_store(&s);
    let ask = spec(Task::FavoriteCategory, 20, 0);
    let all = uorch::task::examples::evaluation(&s, &cat, &ask, Split::Test, 0);
    assert!(all.len() > 900, "all {} users with a genre", all.len());
    let users = |spec: &uorch::task::ask::TaskSpec| -> Vec<usize> {
        uorch::task::examples::evaluation(&s, &cat, spec, Split::Test, 100).iter().map(|q| q.user).collect()
    };
    let drawn = users(&ask);
    assert_eq!(drawn.len(), 100);
    assert!(drawn.windows(2).all(|w| w[0] < w[1]), "in store order");
    assert_eq!(drawn, users(&ask), "the same seed draws the same users");
    assert_ne!(drawn, users(&uorch::task::ask::TaskSpec { seed: 2, ..ask.clone() }));
    // Uniform over the ~940 users: about half of the draw lies in each half (a front
    // slice would put all 100 in the first).
    let half = all[all.len() / 2].user;
    let low = drawn.iter().filter(|&&u| u < half).count();
    assert!((30..=70).contains(&low), "{low} of 100 in the first half");
}

#[test]
fn validation_questions_ask_about_the_second_to_last_interaction_of_their_own_draw_of_users() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(&crate::common::prepare_ml100k(d.path())).unwrap();
    let cat = Catalog::of_store(&s);
    let ask = spec(Task::FavoriteCategory, 20, 0);
    let valid = uorch::task::examples::evaluation(&s, &cat, &ask, Split::Valid, 100);
    let test = uorch::task::examples::evaluation(&s, &cat, &ask, Split::Test, 100);
    assert_eq!(valid.len(), 100);
    for q in &valid {
        // The history stops before the second-to-last interaction, which it
        // does not include: the validation target is held out of training too.
        assert_eq!(q.positions.end, s.range(q.user).end - 2, "user {}", q.user);
        assert_eq!(q.history.len(), 20.min(q.positions.end - s.range(q.user).start));
    }
    let users = |qs: &[uorch::task::examples::EvalExample]| qs.iter().map(|q| q.user).collect::<Vec<_>>();
    assert_ne!(users(&valid), users(&test), "another stream of the seed draws the validation users");
}
