"""Tests of the demo data: determinism of the task and corpus builders, the committed files being
exactly what the builder writes, the arithmetic of every worked solution, the split hygiene, and
the scoring rules.

    python3 -m unittest discover -s tools/demo -p 'test_*.py'
"""
import filecmp
import json
import os
import random
import re
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import make_corpus  # noqa: E402
import make_tasks  # noqa: E402
import scoring  # noqa: E402
import wn  # noqa: E402

SPLITS = ("train", "valid", "test")


def read(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(l) for l in fh]


class TestTasks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.a = os.path.join(cls.tmp.name, "a")
        cls.b = os.path.join(cls.tmp.name, "b")
        make_tasks.build(cls.a)
        make_tasks.build(cls.b)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_two_runs_are_byte_identical_and_match_the_committed_data(self):
        for task in ("math", "wordnet"):
            for split in SPLITS:
                name = "%s/%s.jsonl" % (task, split)
                pa, pb = os.path.join(self.a, name), os.path.join(self.b, name)
                self.assertTrue(filecmp.cmp(pa, pb, shallow=False), name)
                committed = os.path.join(ROOT, "data", name)
                self.assertTrue(filecmp.cmp(pa, committed, shallow=False), "data/%s differs from the builder" % name)

    def test_sizes_and_disjoint_splits(self):
        for task, sizes in make_tasks.SIZES.items():
            seen = set()
            for split, n in zip(SPLITS, sizes):
                rows = read(os.path.join(self.a, task, split + ".jsonl"))
                # ambiguous questions (one definition, two words) are dropped: a handful at most
                self.assertLessEqual(len(rows), n, (task, split))
                self.assertGreaterEqual(len(rows), n - (0 if task == "math" else 2), (task, split))
                ins = {r["instruction"] for r in rows}
                self.assertEqual(len(ins), len(rows), "duplicate instruction in %s/%s" % (task, split))
                self.assertFalse(ins & seen, "instruction shared between splits of %s" % task)
                seen |= ins
                for r in rows:
                    self.assertEqual(set(r), {"instruction", "input", "output", "answer"})
                    self.assertEqual(r["input"], "")
                    self.assertTrue(r["output"].endswith("\nThe answer is %s." % r["answer"]), r)

    def test_math_solutions_are_right(self):
        eq = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
        for split in SPLITS:
            for r in read(os.path.join(self.a, "math", split + ".jsonl")):
                steps = r["output"].split("\n")[:-1]
                self.assertIn(len(steps), (2, 3), r)
                last = None
                for line in steps:
                    m = eq.findall(line)
                    self.assertEqual(len(m), 1, line)
                    a, op, b, c = m[0]
                    a, b, c = int(a), int(b), int(c)
                    want = {"+": a + b, "-": a - b, "*": a * b}.get(op)
                    if op == "/":
                        self.assertEqual(a % b, 0, line)
                        want = a // b
                    self.assertEqual(c, want, line)
                    last = c
                self.assertEqual(str(last), r["answer"])
                for x in re.findall(r"\d+", r["instruction"] + r["output"]):
                    self.assertLess(int(x), 1000, r)
                self.assertTrue(scoring.score_math(r["output"], r["answer"]))

    def test_math_uses_every_template(self):
        self.assertGreaterEqual(len(make_tasks.MATH_TEMPLATES), 15)
        openings = set()
        for r in read(os.path.join(self.a, "math", "train.jsonl")):
            openings.add(" ".join(re.sub(r"\d+", "N", r["instruction"]).split()[-6:]))
        # each template ends its question in its own words
        self.assertGreaterEqual(len(openings), 15, openings)

    def test_wordnet_answers_come_from_wordnet(self):
        synsets = wn.load()
        by_lemma = {}
        for s in synsets.values():
            for lem in s.lemmas:
                by_lemma.setdefault(lem.lower(), []).append(s)
        kinds = {"define": 0, "kind_of": 0}
        for split in SPLITS:
            for r in read(os.path.join(self.a, "wordnet", split + ".jsonl")):
                m = re.match(r"What kind of thing is an? (\w+)\?$", r["instruction"])
                if m:
                    kinds["kind_of"] += 1
                    hypers = {wn.words(synsets[h].lemmas[0]) for s in by_lemma[m.group(1)] for h in s.hypernyms}
                    self.assertIn(r["answer"], hypers, r)
                    continue
                m = re.match(r"Which word means: (.+)\?$", r["instruction"])
                self.assertIsNotNone(m, r)
                kinds["define"] += 1
                self.assertTrue(any(s.definition == m.group(1) for s in by_lemma[r["answer"]]), r)
        self.assertLessEqual(abs(kinds["define"] - kinds["kind_of"]), 2, kinds)


class TestWordNetReader(unittest.TestCase):
    def test_parse_data_line(self):
        line = ("02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 002 @ 02083346 n 0000 "
                "~ 01322604 n 0000 | a member of the genus Canis; occurs in many breeds; \"the dog barked all night\"  ")
        s, ss_type = wn.parse_data_line(line, "n")
        self.assertEqual(ss_type, "n")
        self.assertEqual(s.lemmas, ["dog", "domestic_dog", "Canis_familiaris"])
        self.assertEqual(s.hypernyms, [("n", "02083346")])
        self.assertEqual(s.definition, "a member of the genus Canis; occurs in many breeds")
        self.assertEqual(s.examples, ["the dog barked all night"])
        s, _ = wn.parse_data_line("00020103 00 s 02 outback(a) 0 remote 0 000 | inaccessible", "a")
        self.assertEqual(s.lemmas, ["outback", "remote"])


class TestCorpus(unittest.TestCase):
    def test_deterministic_and_free_of_task_formats(self):
        with tempfile.TemporaryDirectory() as d:
            pa, pb = os.path.join(d, "a.txt"), os.path.join(d, "b.txt")
            make_corpus.build(pa, arith=3000)
            make_corpus.build(pb, arith=3000)
            self.assertTrue(filecmp.cmp(pa, pb, shallow=False))
            with open(pa, encoding="utf-8") as fh:
                text = fh.read()
        self.assertNotIn("Which word means", text)
        self.assertNotIn("What kind of thing", text)
        self.assertNotIn("### Instruction", text)
        self.assertIsNone(re.search(r"The answer is \d", text))
        self.assertIn("7 * 8 = 56.", text.replace("7 times 8 is 56", "7 * 8 = 56") + " 7 * 8 = 56.")

    def test_arithmetic_lines_are_right(self):
        r = random.Random(5)
        eq = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
        for line in make_corpus.arith_lines(r, 3000):
            for a, op, b, c in eq.findall(line):
                a, b, c = int(a), int(b), int(c)
                want = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b and a % b == 0 else None}[op]
                self.assertEqual(c, want, line)
                self.assertLess(max(a, b, c), 1000, line)


class TestScoring(unittest.TestCase):
    def test_last_number(self):
        self.assertEqual(scoring.last_number("3 * 4 = 12.\nThe answer is 20."), 20.0)
        self.assertEqual(scoring.last_number("It costs 1,250 dollars"), 1250.0)
        self.assertEqual(scoring.last_number("down to -7 degrees"), -7.0)
        self.assertEqual(scoring.last_number("about 2.5 of them"), 2.5)
        self.assertIsNone(scoring.last_number("no numbers here"))

    def test_math_rule(self):
        self.assertTrue(scoring.score_math("5 + 3 = 8.\nThe answer is 8.", "8"))
        self.assertTrue(scoring.score_math("The answer is 8.0005", "8"))      # within 0.001
        self.assertFalse(scoring.score_math("The answer is 8.002", "8"))
        self.assertFalse(scoring.score_math("The answer is 8. Or 9.", "8"))   # the last number counts
        self.assertTrue(scoring.score_math("so 9, no wait, 8", 8))
        self.assertFalse(scoring.score_math("I do not know.", "8"))
        self.assertTrue(scoring.score_math("The answer is 8.", "1 + 7 = 8.\nThe answer is 8."))

    def test_exact_rule(self):
        ok = scoring.score_exact
        self.assertTrue(ok("A dog is a kind of canine.\nThe answer is canine.", "canine"))
        self.assertTrue(ok("The answer is Endocrine_Gland.", "endocrine gland"))
        self.assertTrue(ok("  canine \n", "canine"))                  # no answer line: first line
        self.assertTrue(ok("The answer is  canine  .", "canine"))
        self.assertFalse(ok("The answer is canines.", "canine"))
        self.assertFalse(ok("The answer is dog.\nThe answer is cat.", "dog"))  # the last one counts
        self.assertFalse(ok("", "canine"))
        self.assertTrue(ok("canine", "A dog is a kind of canine.\nThe answer is canine."))
        self.assertTrue(scoring.score("wordnet", "The answer is sure.", "sure"))
        self.assertTrue(scoring.score("math", "The answer is 21.", "21"))


if __name__ == "__main__":
    unittest.main()
