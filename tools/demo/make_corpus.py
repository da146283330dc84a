#!/usr/bin/env python3
"""Builds the pretraining corpus of the demo base model: one sample a line, UTF-8.

Three parts, shuffled together with random.Random(seed):
  * every WordNet synset (noun, verb, adjective, adverb) as a dictionary entry: its words, part
    of speech, definition and example sentences; and for every noun with a hypernym, one sentence
    "A <word> is a kind of <hypernym>.";
  * the facts behind the wordnet task's questions (train, valid and test alike: the task asks the
    model to say what it knows, in a new format), each in several declarative phrasings, repeated;
    no question is ever written, so the base model never sees the task's format;
  * arithmetic in plain statements and tiny worked sums ("12 + 35 = 47.", "7 times 8 is 56.",
    "First 4 * 3 = 12. Then 12 + 5 = 17. So the result is 17.", "Take 80, 7 and 5. 80 * 5 = 400.
    400 + 7 = 407. The result is 407."), all numbers whole and below 1000; never a word problem or
    the phrase the tasks end with.
Standard library only; the same seed gives the same bytes.

    python3 tools/demo/make_corpus.py --out build/demo/corpus.txt
"""
import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wn  # noqa: E402
import make_tasks  # noqa: E402

SEED = 4321
POS_WORD = {"n": "noun", "v": "verb", "a": "adjective", "r": "adverb"}
FACT_REPEATS = 3
ARITH_LINES = 400000


def entry(s):
    text = "%s (%s): %s" % (", ".join(wn.words(l) for l in s.lemmas), POS_WORD[s.pos], s.definition)
    if s.examples:
        text += "; " + "; ".join('"%s"' % e for e in s.examples)
    return text + "."


def cap(s):
    return s[0].upper() + s[1:] if s else s


def define_facts(w, d, pos):
    if pos == "n":
        return ["%s means %s." % (cap(w), d),
                "%s: that is what the word %s means." % (cap(d), w),
                make_tasks.define_sentence(w, d, pos),
                "%s is called %s %s." % (cap(d), make_tasks.article(w), w)]
    if pos == "v":
        return ["To %s means to %s." % (w, d),
                "%s: that is what the verb %s means." % (cap(d), w),
                make_tasks.define_sentence(w, d, pos),
                "To %s is to %s." % (d, w)]
    return ["%s means %s." % (cap(w), d),
            "%s: that is what the word %s means." % (cap(d), w),
            make_tasks.define_sentence(w, d, pos),
            "Something %s is %s." % (d, w)]


def kind_facts(w, h):
    return [make_tasks.kind_sentence(w, h),
            "%s: a kind of %s." % (cap(w), h),
            "Every %s is %s %s." % (w, make_tasks.article(h), h),
            "The %s is a type of %s." % (w, h)]


def wordnet_lines(synsets):
    out = []
    for s in synsets.values():
        out.append(entry(s))
        if s.pos == "n" and s.hypernyms:
            h = synsets[s.hypernyms[0]]
            w = wn.words(s.lemmas[0])
            out.append("%s %s is a kind of %s." % (cap(make_tasks.article(w.lower())), w, wn.words(h.lemmas[0])))
    total = sum(make_tasks.SIZES["wordnet"])
    for q in make_tasks.wordnet_selection(synsets, total):
        pos, off = q["key"].split(".")
        s = synsets[(pos, off)]
        facts = define_facts(q["word"], s.definition, pos) if q["kind"] == "define" else kind_facts(q["word"], q["answer"])
        out.extend(facts * FACT_REPEATS)
    return out


def _num(r, digits_max=3):
    d = r.randint(1, digits_max)
    return r.randint(0 if d == 1 else 10 ** (d - 1), 10 ** d - 1)


def arith_fact(r):
    """One statement (text, value) whose numbers are whole and below 1000."""
    k = r.random()
    if k < 0.3:
        a = _num(r)
        b = r.randint(0, 999 - a) if r.random() < 0.5 else _num(r, len(str(999 - a)))
        b = min(b, 999 - a)
        op, c = "+", a + b
    elif k < 0.55:
        a = _num(r)
        b = r.randint(0, a)
        op, c = "-", a - b
    elif k < 0.85:
        a = r.randint(0, 12) if r.random() < 0.7 else r.randint(0, 31)
        b = r.randint(0, 999 // max(a, 1))
        if r.random() < 0.5:
            a, b = b, a
        op, c = "*", a * b
    else:
        b = r.randint(1, 12) if r.random() < 0.7 else r.randint(1, 31)
        c = r.randint(0, 999 // b)
        a = b * c
        op = "/"
    style = r.random()
    if style < 0.6:
        t = "%d %s %d = %d" % (a, op, b, c)
    elif style < 0.85:
        word = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}[op]
        t = "%d %s %d is %d" % (a, word, b, c)
    else:
        word = {"+": "The sum of %d and %d", "-": "The difference of %d and %d",
                "*": "The product of %d and %d", "/": "%d shared into %d equal parts gives"}[op]
        t = (word % (a, b)) + (" %d" % c if op == "/" else " is %d" % c)
    return t, c, op


def chain(r):
    """A tiny worked sum: two or three steps, each using the last result."""
    steps = r.randint(2, 3)
    a, b = r.randint(2, 12), r.randint(2, 40)
    v = a * b if r.random() < 0.6 else a + b
    parts = ["%d %s %d = %d" % (a, "*" if v == a * b else "+", b, v)]
    for _ in range(steps - 1):
        ch = r.random()
        if ch < 0.35 and v < 999:
            d = r.randint(1, 999 - v) if r.random() < 0.3 else r.randint(1, min(99, 999 - v))
            parts.append("%d + %d = %d" % (v, d, v + d)); v += d
        elif ch < 0.7 and v > 1:
            d = r.randint(1, v - 1) if r.random() < 0.3 else r.randint(1, min(99, v - 1))
            parts.append("%d - %d = %d" % (v, d, v - d)); v -= d
        elif ch < 0.85 and 0 < v <= 99:
            d = r.randint(2, max(2, min(9, 999 // v)))
            if v * d < 1000:
                parts.append("%d * %d = %d" % (v, d, v * d)); v *= d
        else:
            ds = [d for d in range(2, 13) if v % d == 0 and v > 0]
            if ds:
                d = r.choice(ds)
                parts.append("%d / %d = %d" % (v, d, v // d)); v //= d
    style = r.random()
    if style < 0.4:
        return "First %s. Then %s. So the result is %d." % (parts[0], ". Then ".join(parts[1:]), v)
    if style < 0.7:
        return ", and ".join(parts) + "."
    return "; ".join(parts) + ", which makes %d." % v


def in_context(r):
    """Numbers named first, then used: two or three steps whose operands are taken from the list
    (in any order) or from the last result, so that the model learns to pick numbers out of text."""
    a, b = r.randint(2, 12), r.randint(2, 60)
    if r.random() < 0.5:
        v, first = a * b, "%d * %d = %d" % (a, b, a * b)
    else:
        a, b = r.randint(1, 300), r.randint(1, 300)
        v, first = a + b, "%d + %d = %d" % (a, b, a + b)
    named, steps = [a, b], [first]
    for _ in range(r.randint(1, 2)):
        ch = r.random()
        if ch < 0.4 and v < 999:
            d = r.randint(1, min(99, 999 - v))
            steps.append("%d + %d = %d" % (v, d, v + d)); v += d
        elif ch < 0.8 and v > 1:
            d = r.randint(1, min(99, v - 1))
            steps.append("%d - %d = %d" % (v, d, v - d)); v -= d
        else:
            ds = [d for d in range(2, 13) if v % d == 0]
            if not ds:
                continue
            d = r.choice(ds)
            steps.append("%d / %d = %d" % (v, d, v // d)); v //= d
        named.append(d)
    shown = named[:]
    r.shuffle(shown)
    listed = ", ".join(str(x) for x in shown[:-1]) + " and %d" % shown[-1]
    style = r.random()
    if style < 0.4:
        return "Take %s. %s. The result is %d." % (listed, ". ".join(steps), v)
    if style < 0.7:
        return "With the numbers %s: %s, so we get %d." % (listed, ", then ".join(steps), v)
    return "From %s we work out %s; the result is %d." % (listed, " and ".join(steps), v)


def arith_lines(r, n):
    out = []
    for _ in range(n):
        k = r.random()
        if k < 0.25:
            out.append(chain(r))
        elif k < 0.6:
            out.append(in_context(r))
        else:
            out.append(" ".join(arith_fact(r)[0] + "." for _ in range(r.randint(3, 6))))
    return out


def build(path, seed=SEED, arith=ARITH_LINES, wordnet_dir=wn.WORDNET_DIR):
    r = random.Random(seed)
    synsets = wn.load(wordnet_dir)
    lines = wordnet_lines(synsets) + arith_lines(r, arith)
    r.shuffle(lines)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for line in lines:
            assert "\n" not in line
            fh.write(line + "\n")
    return len(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/demo/corpus.txt")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--arith", type=int, default=ARITH_LINES, help="lines of arithmetic")
    ap.add_argument("--wordnet", default=wn.WORDNET_DIR)
    a = ap.parse_args()
    n = build(a.out, a.seed, a.arith, a.wordnet)
    print("%s: %d lines, %d bytes" % (a.out, n, os.path.getsize(a.out)))


if __name__ == "__main__":
    main()
