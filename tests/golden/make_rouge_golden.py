"""Golden ROUGE scores and Porter stems from Google's `rouge-score` (pip,
0.1.2) and the NLTK Porter stemmer it uses (`PorterStemmer()`, NLTK 3.x).

- `stems`: NLTK's stem of every word of a list that exercises each rule:
  the MovieLens-100K titles' words, generated stem + suffix words, and
  seeded random letter strings.
- `pairs`: prediction / reference texts (non-ASCII, punctuation, case,
  digits, empty text, repeats) with rouge-score's ROUGE-1, ROUGE-2 and
  ROUGE-L precision, recall and F1 for each, without and with the stemmer.

Run by hand after set-up (any Python with rouge-score):

    python3 -m venv /tmp/rouge && /tmp/rouge/bin/pip install rouge-score==0.1.2
    /tmp/rouge/bin/python tests/golden/make_rouge_golden.py

Output (committed): tests/golden/rouge.json.
"""
import json
import os
import random
import re

import nltk
import rouge_score
from nltk.stem import porter
from rouge_score import rouge_scorer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

STEMS = ["relat", "gener", "control", "hop", "fil", "agre", "happi", "cr", "analog", "geo", "formal", "digit",
         "sens", "adjust", "electr", "condit", "valu", "radic", "hope", "caress", "pon", "motor", "bake", "troubl",
         "fall", "sky", "tie", "plaster", "oat", "ivy", "effect", "rational", "vile", "hesit", "decis", "triplic",
         "feud", "revival", "allow", "oper", "dependa", "homolog", "communism", "activ", "bowdler", "prob",
         "meet", "feed", "size", "fizz", "tann", "fail", "conflat", "sing", "dy", "ly", "by", "sl"]
SUFFIXES = ["", "s", "es", "ies", "ss", "sses", "ed", "ied", "eed", "ing", "ational", "tional", "enci", "anci",
            "izer", "bli", "abli", "alli", "entli", "eli", "ousli", "ization", "ation", "ator", "alism",
            "iveness", "fulness", "ousness", "aliti", "iviti", "biliti", "fulli", "logi", "ologi", "icate",
            "ative", "alize", "iciti", "ical", "ful", "ness", "al", "ance", "ence", "er", "ic", "able", "ible",
            "ant", "ement", "ment", "ent", "ion", "sion", "tion", "ou", "ism", "ate", "iti", "ous", "ive",
            "ize", "e", "ll", "y", "ey", "at", "bl", "iz"]

PAIRS = [
    ("the cat sat on the mat", "the cat is on the mat"),
    ("Great movie!! It's 10/10", "great, MOVIE: it is a 10 out of 10"),
    ("A café in Zürich, naïve and charming", "a cafe in zurich: naive, charming"),
    ("Straße und Brücke", "strasse und bruecke"),
    ("İstanbul'da bir film", "istanbul da bir film"),
    ("東京物語 is a masterpiece", "Tokyo Story is a masterpiece 東京"),
    ("Loved it 😀😀 best ever", "loved it, the best ever"),
    ("\u212aelvin scale fiction", "kelvin scale fiction"),
    ("running runners ran quickly through the generalizations",
     "the runner runs quickly; generalization ran through"),
    ("The acting was wonderfully understated and the ending devastating.",
     "Understated acting, a devastating ending: wonderful."),
    ("", "anything at all"),
    ("!!", ""),
    ("", ""),
    ("repeat repeat repeat repeat", "repeat"),
    ("a a b", "a b c d"),
    ("b a", "a b"),
    ("controlling relational hopping skies dying", "controlled relations hop sky die"),
    ("x1 2y z3z 45", "X1 2Y z3z 46"),
    ("tabs\tand\nnewlines  and   spaces", "tabs and newlines and spaces"),
    ("Ünïcödé wörds with ÄCCENTS everywhere", "unicode words with accents everywhere"),
]


def words():
    out = []
    with open(os.path.join(ROOT, "assets", "ml-100k", "ml-100k.item"), encoding="utf-8", errors="replace") as f:
        next(f)
        for line in f:
            out += re.split(r"[^a-z0-9]+", line.split("\t")[1].lower())
    out += [s + x for s in STEMS for x in SUFFIXES]
    rng = random.Random(0)
    out += ["".join(rng.choice("aeiouybcdlmnrstwxz") for _ in range(rng.randint(3, 12))) for _ in range(3000)]
    seen, unique = set(), []
    for w in out:
        if w and w not in seen:
            seen.add(w)
            unique.append(w)
    return unique


def main():
    stemmer = porter.PorterStemmer()
    stems = [[w, stemmer.stem(w)] for w in words()]
    pairs = []
    for pred, ref in PAIRS:
        entry = {"prediction": pred, "reference": ref}
        for name, stem in [("plain", False), ("stemmed", True)]:
            s = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=stem).score(ref, pred)
            entry[name] = {k: [v.precision, v.recall, v.fmeasure] for k, v in s.items()}
        pairs.append(entry)
    out = {"rouge_score": getattr(rouge_score, "__version__", "0.1.2"), "nltk": nltk.__version__,
           "stems": stems, "pairs": pairs}
    with open(os.path.join(HERE, "rouge.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{len(stems)} stems, {len(pairs)} pairs -> tests/golden/rouge.json")


main()
