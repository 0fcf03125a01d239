//! The Porter stemmer as NLTK runs it by default (`PorterStemmer()`, its
//! "NLTK extensions" mode), which Google's `rouge-score` applies to every
//! token longer than 3 characters when asked for stemming. Written from the
//! published algorithm (Porter, 1980) and NLTK's documented departures from
//! it; `tests/golden/rouge.json` holds NLTK's stems of a word list, which
//! the tests compare with.
//!
//! Input: a lower-case ASCII word (rouge-score's tokens are `[a-z0-9]+`).
//! A word's measure m counts its vowel-consonant sequences (`[C](VC)^m[V]`);
//! `y` is a vowel after a consonant.

/// NLTK's irregular forms: looked up before any rule runs.
const IRREGULAR: &[(&str, &str)] = &[
    ("sky", "sky"),
    ("skies", "sky"),
    ("dying", "die"),
    ("lying", "lie"),
    ("tying", "tie"),
    ("news", "news"),
    ("innings", "inning"),
    ("inning", "inning"),
    ("outings", "outing"),
    ("outing", "outing"),
    ("cannings", "canning"),
    ("canning", "canning"),
    ("howe", "howe"),
    ("proceed", "proceed"),
    ("exceed", "exceed"),
    ("succeed", "succeed"),
];

pub fn stem(word: &str) -> String {
    if let Some((_, s)) = IRREGULAR.iter().find(|(w, _)| *w == word) {
        return s.to_string();
    }
    if word.len() <= 2 {
        return word.to_string();
    }
    let mut w = word.as_bytes().to_vec();
    let steps: [fn(Vec<u8>) -> Vec<u8>; 8] = [step1a, step1b, step1c, step2, step3, step4, step5a, step5b];
    for step in steps {
        w = step(w);
    }
    String::from_utf8(w).expect("ASCII in, ASCII out")
}

fn is_consonant(w: &[u8], i: usize) -> bool {
    match w[i] {
        b'a' | b'e' | b'i' | b'o' | b'u' => false,
        b'y' => i == 0 || !is_consonant(w, i - 1),
        _ => true,
    }
}

fn measure(w: &[u8]) -> usize {
    (1..w.len()).filter(|&i| !is_consonant(w, i - 1) && is_consonant(w, i)).count()
}

fn contains_vowel(w: &[u8]) -> bool {
    (0..w.len()).any(|i| !is_consonant(w, i))
}

fn ends_double_consonant(w: &[u8]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// Consonant-vowel-consonant at the end, the last not w, x or y; NLTK also
/// counts a two-letter vowel-consonant word.
fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], b'w' | b'x' | b'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

fn positive(stem: &[u8]) -> bool {
    measure(stem) > 0
}

fn above_one(stem: &[u8]) -> bool {
    measure(stem) > 1
}

type Condition<'a> = &'a dyn Fn(&[u8]) -> bool;

/// The first rule whose suffix `w` ends with decides: its replacement when
/// the rest passes its condition, else `w` unchanged (later rules are not
/// tried: the longest suffix wins).
fn rules(w: Vec<u8>, list: &[(&str, &str, Condition)]) -> Vec<u8> {
    for (suffix, replacement, ok) in list {
        if w.ends_with(suffix.as_bytes()) {
            let stem = &w[..w.len() - suffix.len()];
            return if ok(stem) { [stem, replacement.as_bytes()].concat() } else { w };
        }
    }
    w
}

fn replace(w: &[u8], suffix: usize, with: &str) -> Vec<u8> {
    [&w[..w.len() - suffix], with.as_bytes()].concat()
}

/// Plurals.
fn step1a(w: Vec<u8>) -> Vec<u8> {
    if w.len() == 4 && w.ends_with(b"ies") {
        return replace(&w, 3, "ie");
    }
    let any: Condition = &|_| true;
    rules(w, &[("sses", "ss", any), ("ies", "i", any), ("ss", "ss", any), ("s", "", any)])
}

/// Past tenses and gerunds.
fn step1b(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ied") {
        return replace(&w, 3, if w.len() == 4 { "ie" } else { "i" });
    }
    if w.ends_with(b"eed") {
        let stem = &w[..w.len() - 3];
        return if positive(stem) { [stem, b"ee"].concat() } else { w };
    }
    let stem = ["ed", "ing"]
        .iter()
        .find(|s| w.ends_with(s.as_bytes()) && contains_vowel(&w[..w.len() - s.len()]))
        .map(|s| w[..w.len() - s.len()].to_vec());
    let Some(stem) = stem else { return w };
    for (suffix, with) in [("at", "ate"), ("bl", "ble"), ("iz", "ize")] {
        if stem.ends_with(suffix.as_bytes()) {
            return replace(&stem, suffix.len(), with);
        }
    }
    if ends_double_consonant(&stem) {
        let last = stem[stem.len() - 1];
        return if matches!(last, b'l' | b's' | b'z') { stem } else { stem[..stem.len() - 1].to_vec() };
    }
    if measure(&stem) == 1 && ends_cvc(&stem) {
        return [&stem[..], b"e"].concat();
    }
    stem
}

/// A final y after a consonant (not the word's only other letter) → i.
fn step1c(w: Vec<u8>) -> Vec<u8> {
    rules(w, &[("y", "i", &|s: &[u8]| s.len() > 1 && is_consonant(s, s.len() - 1))])
}

fn step2(w: Vec<u8>) -> Vec<u8> {
    // NLTK applies "alli" → "al" first and, when it applies, step 2 again.
    if w.ends_with(b"alli") && positive(&w[..w.len() - 4]) {
        return step2(replace(&w, 4, "al"));
    }
    let p: Condition = &positive;
    // "logi" → "log" with the "l" counted in the stem (so "geologi" stems).
    let logi_stem = w.len().checked_sub(3).map(|n| w[..n].to_vec());
    let logi: Condition = &|_| logi_stem.as_deref().is_some_and(positive);
    rules(
        w,
        &[
            ("ational", "ate", p),
            ("tional", "tion", p),
            ("enci", "ence", p),
            ("anci", "ance", p),
            ("izer", "ize", p),
            ("bli", "ble", p),
            ("alli", "al", p),
            ("entli", "ent", p),
            ("eli", "e", p),
            ("ousli", "ous", p),
            ("ization", "ize", p),
            ("ation", "ate", p),
            ("ator", "ate", p),
            ("alism", "al", p),
            ("iveness", "ive", p),
            ("fulness", "ful", p),
            ("ousness", "ous", p),
            ("aliti", "al", p),
            ("iviti", "ive", p),
            ("biliti", "ble", p),
            ("fulli", "ful", p),
            ("logi", "log", logi),
        ],
    )
}

fn step3(w: Vec<u8>) -> Vec<u8> {
    let p: Condition = &positive;
    rules(
        w,
        &[
            ("icate", "ic", p),
            ("ative", "", p),
            ("alize", "al", p),
            ("iciti", "ic", p),
            ("ical", "ic", p),
            ("ful", "", p),
            ("ness", "", p),
        ],
    )
}

fn step4(w: Vec<u8>) -> Vec<u8> {
    let m: Condition = &above_one;
    let ion: Condition = &|s: &[u8]| above_one(s) && matches!(s.last(), Some(b's' | b't'));
    rules(
        w,
        &[
            ("al", "", m),
            ("ance", "", m),
            ("ence", "", m),
            ("er", "", m),
            ("ic", "", m),
            ("able", "", m),
            ("ible", "", m),
            ("ant", "", m),
            ("ement", "", m),
            ("ment", "", m),
            ("ent", "", m),
            ("ion", "", ion),
            ("ou", "", m),
            ("ism", "", m),
            ("ate", "", m),
            ("iti", "", m),
            ("ous", "", m),
            ("ive", "", m),
            ("ize", "", m),
        ],
    )
}

/// A final e after m > 1, or after m = 1 without a final cvc.
fn step5a(w: Vec<u8>) -> Vec<u8> {
    if let Some(stem) = w.strip_suffix(b"e") {
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w
}

/// A final double l after m > 1 → l.
fn step5b(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ll") && above_one(&w[..w.len() - 1]) {
        return w[..w.len() - 1].to_vec();
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_follows_the_papers_examples() {
        // Porter (1980): m=0 tr, ee, tree, y, by; m=1 trouble, oats, trees, ivy;
        // m=2 troubles, private, oaten, orrery.
        for (w, m) in [("tr", 0), ("ee", 0), ("tree", 0), ("by", 0), ("trouble", 1), ("oats", 1), ("ivy", 1)] {
            assert_eq!(measure(w.as_bytes()), m, "{w}");
        }
        for w in ["troubles", "private", "oaten", "orrery"] {
            assert_eq!(measure(w.as_bytes()), 2, "{w}");
        }
    }

    #[test]
    fn the_papers_step_examples() {
        for (w, s) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("cats", "cat"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("filing", "file"),
            ("relational", "relat"),
            ("generalization", "gener"),
            ("electricity", "electr"),
            ("adjustment", "adjust"),
            ("controlling", "control"),
        ] {
            assert_eq!(stem(w), s, "{w}");
        }
    }
}
