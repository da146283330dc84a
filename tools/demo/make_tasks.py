#!/usr/bin/env python3
"""Builds the demo tasks: data/math and data/wordnet, train/valid/test JSONL in the Alpaca format.

math: templated word problems of two or three steps (GSM8K/SVAMP style) with a short worked
solution ending "The answer is N."; every intermediate and final number is a whole number below
1000. wordnet: questions read from the WordNet database (a definition -> its word; a noun -> the
first word of its hypernym), restricted to words that are common in WordNet's tagged corpus.
Everything is drawn from random.Random(seed), lists are sorted before drawing, and the JSON is
written with sorted keys, so two runs give byte-identical files. Standard library only.

    python3 tools/demo/make_tasks.py --out data
"""
import argparse
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wn  # noqa: E402

SEED = 1234
SIZES = {"math": (2000, 200, 200), "wordnet": (2000, 200, 200)}
ALPACA_PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately "
                 "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")

# ---------------------------------------------------------------------------------------------
# math

NAMES = [("Ann", "she", "her"), ("Ben", "he", "his"), ("Cara", "she", "her"), ("Dan", "he", "his"),
         ("Eve", "she", "her"), ("Finn", "he", "his"), ("Gina", "she", "her"), ("Hugo", "he", "his"),
         ("Ivy", "she", "her"), ("Jack", "he", "his"), ("Kim", "she", "her"), ("Leo", "he", "his"),
         ("Mia", "she", "her"), ("Nate", "he", "his"), ("Olga", "she", "her"), ("Paul", "he", "his"),
         ("Rosa", "she", "her"), ("Sam", "he", "his"), ("Tina", "she", "her"), ("Omar", "he", "his"),
         ("Lily", "she", "her"), ("Max", "he", "his"), ("Nora", "she", "her"), ("Tom", "he", "his"),
         ("Zoe", "she", "her"), ("Raj", "he", "his"), ("Emma", "she", "her"), ("Carl", "he", "his")]


def _cap(s):
    return s[0].upper() + s[1:]


def _eq(a, sym, b):
    c = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[sym]
    return c, "%d %s %d = %d" % (a, sym, b, c)


def _ok(*xs):
    return all(isinstance(x, int) and 0 <= x < 1000 for x in xs)


def t_shop_total(r):
    n, he, his = r.choice(NAMES)
    item, other = r.choice([("pens", "a notebook"), ("apples", "a cake"), ("stickers", "a toy car"),
                            ("cups", "a teapot"), ("socks", "a hat"), ("candles", "a lamp")])
    k, p, q = r.randint(2, 9), r.randint(2, 15), r.randint(3, 40)
    a, e1 = _eq(k, "*", p)
    b, e2 = _eq(a, "+", q)
    ins = "%s buys %d %s that cost %d dollars each and %s that costs %d dollars. How many dollars does %s spend in all?" % (
        n, k, item, p, other, q, he)
    out = ["The %s cost %s dollars." % (item, e1), "In all %s spends %s dollars." % (he, e2)]
    return ins, out, b


def t_shop_change(r):
    n, he, his = r.choice(NAMES)
    item = r.choice(["shirts", "books", "games", "plants", "tickets", "mugs"])
    k, p = r.randint(2, 8), r.randint(3, 20)
    cost = k * p
    money = cost + r.randint(1, 60)
    a, e1 = _eq(k, "*", p)
    b, e2 = _eq(money, "-", a)
    ins = "%s has %d dollars. %s buys %d %s for %d dollars each. How much money does %s have left?" % (
        n, money, _cap(he), k, item, p, he)
    out = ["The %s cost %s dollars." % (item, e1), "%s has %s dollars left." % (_cap(he), e2)]
    return ins, out, b


def t_share(r):
    n, he, his = r.choice(NAMES)
    item = r.choice(["apples", "marbles", "cards", "sweets", "stickers", "nuts"])
    k = r.randint(2, 9)
    each = r.randint(2, 20)
    total = k * each
    x = r.randint(1, total - 1)
    y = total - x
    a, e1 = _eq(x, "+", y)
    b, e2 = _eq(a, "/", k)
    ins = "%s has %d %s and gets %d more. %s shares them equally among %d friends. How many %s does each friend get?" % (
        n, x, item, y, _cap(he), k, item)
    out = ["%s has %s %s." % (_cap(he), e1, item), "Each friend gets %s %s." % (e2, item)]
    return ins, out, b


def t_speed(r):
    veh = r.choice(["car", "train", "bus", "truck", "boat"])
    v, h, extra = r.randint(2, 9) * 10, r.randint(2, 6), r.randint(5, 90)
    a, e1 = _eq(v, "*", h)
    b, e2 = _eq(a, "+", extra)
    ins = "A %s travels at %d miles per hour for %d hours. Then it goes %d more miles. How many miles does it travel in total?" % (
        veh, v, h, extra)
    out = ["In %d hours it goes %s miles." % (h, e1), "In total it travels %s miles." % e2]
    return ins, out, b


def t_ages(r):
    n, he, his = r.choice(NAMES)
    rel = r.choice(["mother", "father", "aunt", "uncle", "grandmother", "grandfather"])
    age, k, yrs = r.randint(3, 15), r.randint(2, 6), r.randint(2, 20)
    a, e1 = _eq(age, "*", k)
    b, e2 = _eq(a, "+", yrs)
    ins = "%s is %d years old. %s %s is %d times as old as %s. How old will %s %s be in %d years?" % (
        n, age, _cap(his), rel, k, "her" if he == "she" else "him", his, rel, yrs)
    out = ["%s %s is %s years old now." % (_cap(his), rel, e1), "In %d years the %s will be %s years old." % (yrs, rel, e2)]
    return ins, out, b


def t_saving(r):
    n, he, his = r.choice(NAMES)
    per, weeks = r.randint(3, 25), r.randint(2, 9)
    saved = per * weeks
    spend = r.randint(1, saved - 1)
    a, e1 = _eq(per, "*", weeks)
    b, e2 = _eq(a, "-", spend)
    thing = r.choice(["a ball", "a book", "a scarf", "a kite", "a puzzle", "a game"])
    ins = "%s saves %d dollars each week for %d weeks. Then %s spends %d dollars on %s. How many dollars does %s have now?" % (
        n, per, weeks, he, spend, thing, he)
    out = ["%s saves %s dollars." % (_cap(he), e1), "%s has %s dollars now." % (_cap(he), e2)]
    return ins, out, b


def t_boxes(r):
    item = r.choice(["pencils", "eggs", "bottles", "cans", "crayons", "bulbs"])
    bad = r.choice(["broken", "broken", "cracked", "lost"])
    k, per = r.randint(2, 9), r.randint(6, 30)
    tot = k * per
    x = r.randint(1, min(tot - 1, 40))
    a, e1 = _eq(k, "*", per)
    b, e2 = _eq(a, "-", x)
    ins = "There are %d boxes with %d %s in each box. %d of the %s are %s. How many %s are not %s?" % (
        k, per, item, x, item, bad, item, bad)
    out = ["There are %s %s." % (e1, item), "%s %s are not %s." % (_cap(e2), item, bad)]
    return ins, out, b


def t_garden(r):
    plant = r.choice(["tomato plants", "rose bushes", "carrots", "trees", "sunflowers"])
    rows, per, more = r.randint(2, 9), r.randint(3, 15), r.randint(2, 9)
    a, e1 = _eq(rows, "*", per)
    b, e2 = _eq(more, "*", per)
    c, e3 = _eq(a, "+", b)
    ins = "A garden has %d rows of %d %s. The gardener plants %d more rows of %d %s. How many %s are in the garden now?" % (
        rows, per, plant, more, per, plant, plant)
    out = ["At first there are %s %s." % (e1, plant), "The new rows have %s %s." % (e2, plant),
           "Now there are %s %s." % (e3, plant)]
    return ins, out, c


def t_bake(r):
    n, he, his = r.choice(NAMES)
    food = r.choice(["cookies", "muffins", "buns", "tarts"])
    trays, per = r.randint(2, 6), r.randint(6, 24)
    tot = trays * per
    e_ = r.randint(1, 6)
    g = r.randint(1, tot - e_ - 1)
    who = r.choice(["brother", "sister", "friends", "neighbours", "class"])
    a, e1 = _eq(trays, "*", per)
    b, e2 = _eq(a, "-", e_)
    c, e3 = _eq(b, "-", g)
    ins = "%s bakes %d trays of %d %s. %s eats %d and gives %d to %s %s. How many %s are left?" % (
        n, trays, per, food, _cap(he), e_, g, his, who, food)
    out = ["%s bakes %s %s." % (_cap(he), e1, food), "After eating, %s are left." % e2,
           "After giving some away, %s %s are left." % (e3, food)]
    return ins, out, c


def t_reading(r):
    n, he, his = r.choice(NAMES)
    per, days = r.randint(5, 30), r.randint(2, 7)
    read = per * days
    pages = read + r.randint(5, 200)
    a, e1 = _eq(per, "*", days)
    b, e2 = _eq(pages, "-", a)
    ins = "A book has %d pages. %s reads %d pages a day for %d days. How many pages does %s still have to read?" % (
        pages, n, per, days, he)
    out = ["%s reads %s pages." % (_cap(he), e1), "%s still has %s pages to read." % (_cap(he), e2)]
    return ins, out, b


def t_bus(r):
    start = r.randint(10, 60)
    off1 = r.randint(1, start - 1)
    on1 = r.randint(1, 30)
    mid = start - off1 + on1
    off2 = r.randint(1, mid - 1)
    a, e1 = _eq(start, "-", off1)
    b, e2 = _eq(a, "+", on1)
    c, e3 = _eq(b, "-", off2)
    ins = "A bus has %d people on it. At the first stop %d people get off and %d people get on. At the second stop %d people get off. How many people are on the bus now?" % (
        start, off1, on1, off2)
    out = ["After %d get off, %s people are on the bus." % (off1, e1), "After %d get on, %s people." % (on1, e2),
           "After the second stop, %s people are on the bus." % e3]
    return ins, out, c


def t_school(r):
    k, per = r.randint(2, 9), r.randint(15, 35)
    tot = k * per
    absent = r.randint(1, min(30, tot - 1))
    a, e1 = _eq(k, "*", per)
    b, e2 = _eq(a, "-", absent)
    ins = "A school has %d classes with %d students in each class. %d students are absent today. How many students are present?" % (
        k, per, absent)
    out = ["The school has %s students." % e1, "%s students are present." % _cap(e2)]
    return ins, out, b


def t_two_prices(r):
    n, he, his = r.choice(NAMES)
    (i1, i2) = r.choice([("apples", "oranges"), ("pens", "pencils"), ("rice", "beans"), ("milk", "juice")])
    p1, p2, k1, k2 = r.randint(2, 12), r.randint(2, 12), r.randint(2, 9), r.randint(2, 9)
    a, e1 = _eq(k1, "*", p1)
    b, e2 = _eq(k2, "*", p2)
    c, e3 = _eq(a, "+", b)
    ins = "A bag of %s costs %d dollars and a bag of %s costs %d dollars. %s buys %d bags of %s and %d bags of %s. How many dollars does %s pay?" % (
        i1, p1, i2, p2, n, k1, i1, k2, i2, he)
    out = ["The %s cost %s dollars." % (i1, e1), "The %s cost %s dollars." % (i2, e2),
           "%s pays %s dollars." % (_cap(he), e3)]
    return ins, out, c


def t_fewer(r):
    (n1, _, _), (n2, _, _) = r.sample(NAMES, 2)
    item = r.choice(["marbles", "shells", "stamps", "coins", "beads"])
    x = r.randint(20, 200)
    d = r.randint(1, x - 1)
    a, e1 = _eq(x, "-", d)
    b, e2 = _eq(x, "+", a)
    ins = "%s has %d %s. %s has %d fewer %s than %s. How many %s do they have together?" % (
        n1, x, item, n2, d, item, n1, item)
    out = ["%s has %s %s." % (n2, e1, item), "Together they have %s %s." % (e2, item)]
    return ins, out, b


def t_wage(r):
    n, he, his = r.choice(NAMES)
    rate, h1, h2 = r.randint(5, 20), r.randint(1, 8), r.randint(1, 8)
    d1, d2 = r.sample(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"], 2)
    a, e1 = _eq(h1, "+", h2)
    b, e2 = _eq(a, "*", rate)
    ins = "%s earns %d dollars an hour. %s works %d hours on %s and %d hours on %s. How many dollars does %s earn?" % (
        n, rate, _cap(he), h1, d1, h2, d2, he)
    out = ["%s works %s hours." % (_cap(he), e1), "%s earns %s dollars." % (_cap(he), e2)]
    return ins, out, b


def t_times_as_many(r):
    (n1, h1, _), (n2, _, _) = r.sample(NAMES, 2)
    item = r.choice(["stamps", "books", "toy cars", "stickers", "comics"])
    base, k = r.randint(3, 40), r.randint(2, 5)
    give = r.randint(1, base * k - 1)
    a, e1 = _eq(base, "*", k)
    b, e2 = _eq(a, "-", give)
    ins = "%s has %d times as many %s as %s. %s has %d %s. %s gives away %d %s. How many %s does %s have now?" % (
        n1, k, item, n2, n2, base, item, n1, give, item, item, n1)
    out = ["%s has %s %s." % (n1, e1, item), "Now %s has %s %s." % (h1, e2, item)]
    return ins, out, b


def t_bill(r):
    k = r.randint(2, 6)
    each = r.randint(5, 40)
    tot = k * each
    tip = r.randint(1, tot - 1)
    meal = tot - tip
    word = {2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six"}[k]
    a, e1 = _eq(meal, "+", tip)
    b, e2 = _eq(a, "/", k)
    ins = "%s friends eat a meal that costs %d dollars and leave a tip of %d dollars. They split the total equally. How many dollars does each friend pay?" % (
        word, meal, tip)
    out = ["The total is %s dollars." % e1, "Each friend pays %s dollars." % e2]
    return ins, out, b


def t_tank(r):
    start, rate, mins = r.randint(5, 200), r.randint(2, 30), r.randint(2, 9)
    a, e1 = _eq(rate, "*", mins)
    b, e2 = _eq(start, "+", a)
    ins = "A tank has %d liters of water. A pump adds %d liters each minute. How many liters are in the tank after %d minutes?" % (
        start, rate, mins)
    out = ["The pump adds %s liters." % e1, "The tank has %s liters." % e2]
    return ins, out, b


def t_eggs(r):
    n, he, his = r.choice(NAMES)
    lay = r.randint(10, 40)
    eat = r.randint(1, 6)
    bake = r.randint(1, lay - eat - 1)
    price = r.randint(2, 9)
    a, e1 = _eq(lay, "-", eat)
    b, e2 = _eq(a, "-", bake)
    c, e3 = _eq(b, "*", price)
    ins = "%s's hens lay %d eggs a day. %s eats %d and uses %d for baking. %s sells the rest for %d dollars each. How many dollars does %s make a day?" % (
        n, lay, _cap(he), eat, bake, _cap(he), price, he)
    out = ["After eating, %s eggs are left." % e1, "After baking, %s eggs are left." % e2,
           "%s makes %s dollars." % (_cap(he), e3)]
    return ins, out, c


def t_pack(r):
    n, he, his = r.choice(NAMES)
    food = r.choice(["cupcakes", "cookies", "bagels", "donuts"])
    size, boxes, price = r.randint(2, 12), r.randint(2, 15), r.randint(2, 9)
    tot = size * boxes
    a, e1 = _eq(tot, "/", size)
    b, e2 = _eq(a, "*", price)
    ins = "%s has %d %s. %s puts them into boxes of %d and sells each box for %d dollars. How many dollars does %s get?" % (
        n, tot, food, _cap(he), size, price, he)
    out = ["%s fills %s boxes." % (_cap(he), e1), "%s gets %s dollars." % (_cap(he), e2)]
    return ins, out, b


def t_temperature(r):
    t0, up, down = r.randint(5, 30), r.randint(2, 20), r.randint(1, 15)
    if down >= t0 + up:
        down = r.randint(1, t0 + up - 1)
    a, e1 = _eq(t0, "+", up)
    b, e2 = _eq(a, "-", down)
    ins = "In the morning it is %d degrees. By noon it is %d degrees warmer. In the evening it is %d degrees colder than at noon. What is the temperature in the evening?" % (
        t0, up, down)
    out = ["At noon it is %s degrees." % e1, "In the evening it is %s degrees." % e2]
    return ins, out, b


MATH_TEMPLATES = [t_shop_total, t_shop_change, t_share, t_speed, t_ages, t_saving, t_boxes, t_garden,
                  t_bake, t_reading, t_bus, t_school, t_two_prices, t_fewer, t_wage, t_times_as_many,
                  t_bill, t_tank, t_eggs, t_pack, t_temperature]

_EQ = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def check_math(ins, out_lines, answer):
    """Every equation in the solution is right, every number is a whole number below 1000."""
    text = ins + " " + " ".join(out_lines)
    for a, s, b, c in _EQ.findall(" ".join(out_lines)):
        a, b, c = int(a), int(b), int(c)
        want = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else -1}[s]
        if want != c or (s == "/" and a % b):
            return False
    nums = [int(x) for x in re.findall(r"\d+", text)]
    return _ok(answer, *nums)


def make_math(n, rng):
    seen, rows = set(), []
    i = 0
    while len(rows) < n:
        t = MATH_TEMPLATES[i % len(MATH_TEMPLATES)]
        i += 1
        ins, out, ans = t(rng)
        if ins in seen or not check_math(ins, out, ans):
            continue
        seen.add(ins)
        rows.append({"instruction": ins, "input": "", "output": "\n".join(out + ["The answer is %d." % ans]),
                     "answer": str(ans)})
    rng.shuffle(rows)
    return rows

# ---------------------------------------------------------------------------------------------
# wordnet

_SIMPLE = re.compile(r"^[a-z]{3,14}$")


def best_lemma(s):
    """The lemma of s with the highest tag count (first on ties), and its count."""
    j = max(range(len(s.lemmas)), key=lambda k: (s.counts[k], -k))
    return s.lemmas[j], s.counts[j]


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def wordnet_pools(synsets):
    """Candidate questions of each kind, most common words first. Returns (define, kind_of) lists
    of dicts with kind, word, synset key, instruction, answer; a word appears once per kind."""
    define, kind_of = [], []
    # the most frequent sense of each lemma (by tag count) decides which synset a bare word names
    top_sense = {}
    for s in synsets.values():
        for lem, c in zip(s.lemmas, s.counts):
            k = (s.pos, lem.lower())
            if c > top_sense.get(k, (0, None))[0]:
                top_sense[k] = (c, s.key)
    used_def = set()
    for s in synsets.values():
        if s.pos not in ("n", "v", "a"):
            continue
        lem, c = best_lemma(s)
        if c < 3 or not _SIMPLE.match(lem) or top_sense.get((s.pos, lem))[1] != s.key:
            continue
        d = s.definition
        if not d or len(d) > 90 or re.search(r"\b%s" % re.escape(lem[:max(4, len(lem) - 2)]), d.lower()):
            continue
        if (lem, s.pos) in used_def:
            continue
        used_def.add((lem, s.pos))
        define.append({"kind": "define", "word": lem, "count": c, "key": "%s.%s" % s.key,
                       "instruction": "Which word means: %s?" % d, "answer": lem})
    for s in synsets.values():
        if s.pos != "n" or not s.hypernyms:
            continue
        lem, c = best_lemma(s)
        if c < 3 or not _SIMPLE.match(lem) or top_sense.get(("n", lem))[1] != s.key:
            continue
        h = synsets[s.hypernyms[0]]
        hl = h.lemmas[0]
        if not re.match(r"^[a-z]+(_[a-z]+)?$", hl) or hl == lem or lem in hl.split("_"):
            continue
        kind_of.append({"kind": "kind_of", "word": lem, "count": c, "key": "%s.%s" % s.key,
                        "hypernym_key": "%s.%s" % s.hypernyms[0],
                        "instruction": "What kind of thing is %s %s?" % (article(lem), lem),
                        "answer": wn.words(hl)})
    order = lambda q: (-q["count"], q["key"])  # noqa: E731
    define.sort(key=order)
    kind_of.sort(key=order)
    return define, kind_of


def wordnet_selection(synsets, total):
    """The questions used by the task: the most common half of total of each kind."""
    define, kind_of = wordnet_pools(synsets)
    half = total // 2
    if len(define) < half or len(kind_of) < total - half:
        raise SystemExit("wordnet: too few candidate questions (%d, %d)" % (len(define), len(kind_of)))
    return define[:half] + kind_of[:total - half]


def define_sentence(word, definition, pos):
    """The declarative form of a definition, as the pretraining corpus writes it."""
    if pos == "v":
        return "The word for to %s is %s." % (definition, word)
    return "The word for %s is %s." % (definition, word)


def kind_sentence(word, hypernym):
    a = article(word)
    return "%s %s is a kind of %s." % (a[0].upper() + a[1:], word, hypernym)


def wordnet_output(q, synsets):
    """The reference answer: the fact stated as the corpus states it, then the answer line."""
    pos, off = q["key"].split(".")
    if q["kind"] == "define":
        fact = define_sentence(q["word"], synsets[(pos, off)].definition, pos)
    else:
        fact = kind_sentence(q["word"], q["answer"])
    return "%s\nThe answer is %s." % (fact, q["answer"])


def make_wordnet(total, rng, synsets):
    rows = [{"instruction": q["instruction"], "input": "", "output": wordnet_output(q, synsets), "answer": q["answer"]}
            for q in wordnet_selection(synsets, total)]
    rng.shuffle(rows)
    return rows

# ---------------------------------------------------------------------------------------------


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


def build(out_dir, seed=SEED, wordnet_dir=wn.WORDNET_DIR):
    written = []
    synsets = wn.load(wordnet_dir)
    for task in ("math", "wordnet"):
        ntr, nva, nte = SIZES[task]
        rng = random.Random("%s-%d" % (task, seed))
        if task == "math":
            rows = make_math(ntr + nva + nte, rng)
        else:
            rows = make_wordnet(ntr + nva + nte, rng, synsets)
        d = os.path.join(out_dir, task)
        os.makedirs(d, exist_ok=True)
        # a question asked twice with different answers (WordNet has a few synsets sharing one
        # definition) cannot be scored: it is dropped after the split, so the rest stay put
        times = {}
        for row in rows:
            times[row["instruction"]] = times.get(row["instruction"], 0) + 1
        for name, part in (("train", rows[:ntr]), ("valid", rows[ntr:ntr + nva]), ("test", rows[ntr + nva:])):
            p = os.path.join(d, name + ".jsonl")
            write_jsonl(p, [row for row in part if times[row["instruction"]] == 1])
            written.append(p)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--wordnet", default=wn.WORDNET_DIR)
    a = ap.parse_args()
    for p in build(a.out, a.seed, a.wordnet):
        print(p)


if __name__ == "__main__":
    main()
