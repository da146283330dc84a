"""Integration tests of the hlpt command line against the reference fixtures (tests/fixtures):
tokenize/detokenize against HF tokenizers, forward logits and greedy generation against HF
transformers, adapter logits, loss and gradients against PEFT and the HLPT reference, a short
training run with a resume, and the errors of bad input (exit status, stderr, empty stdout).

Comparisons with the fixtures to 1e-4 run the exact path, `--dtype f32`; the bf16 base is held to
its own tolerance (TestDtype). Everything else runs the default, `--dtype auto`.

Run from the repository root: python3 tests/integration/test_cli.py (HLPT_BUILD names the build
directory, default "build")."""
import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers_cli import (ADAPTER_BASE, ADAPTERS, BASE_MODELS, HLPT, cpu_has_bf16, fixture,  # noqa: E402
                         has_command, hlpt, load_json, read_safetensors, rel_l2, squeeze, write_safetensors)

TOL = 1e-4  # relative L2 on logits and gradients, absolute on the loss (tests/fixtures/README.md)
# The base's matrices rounded to bfloat16 (8 significant bits) and activations rounded at each
# product's input: relative L2 on logits.
TOL_BF16 = 2e-2


def setUpModule():
    if not os.access(HLPT, os.X_OK):
        raise RuntimeError("%s is not built (make -j2 first, or set HLPT_BUILD)" % HLPT)


class TempDirCase(unittest.TestCase):
    """A test case with a fresh temporary directory, removed afterwards."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hlpt-cli-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def ok(self, *args, **kw):
        r = hlpt(*args, **kw)
        self.assertEqual(r.rc, 0, r.describe())
        return r


def ids_arg(ids):
    return ",".join(str(i) for i in ids)


# ---------------------------------------------------------------------------------------------- #
# 1. tokenize / detokenize


def special_tokens(model):
    tok = load_json(fixture(model, "tokenizer.json"))
    return [t["content"] for t in tok.get("added_tokens", []) if t.get("special")]


class TestTokenize(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.available = has_command("tokenize") and has_command("detokenize")

    def setUp(self):
        if not self.available:
            self.skipTest("hlpt tokenize/detokenize are missing from this build (tools/cmd_tokenize.c)")

    def tokenize(self, model, text, *flags):
        # "--" keeps a text that starts with "-" from reading as an option.
        r = hlpt("tokenize", "--model", fixture(model), *flags, "--", text)
        self.assertEqual(r.rc, 0, r.describe())
        self.assertEqual(r.stderr, "", r.describe())
        return json.loads(r.stdout)

    def test_cases_match_hf(self):
        for model in BASE_MODELS:
            specials = special_tokens(model)
            cases = load_json(fixture(model, "tokenizer_cases.json"))
            self.assertGreater(len(cases), 40)
            bad = 0
            for i, case in enumerate(cases):
                # HF matched special-token literals in the text; --parse-special does the same.
                flags = ["--parse-special"] if any(s in case["text"] for s in specials) else []
                with self.subTest(model=model, case=i, text=case["text"][:40]):
                    got = self.tokenize(model, case["text"], *flags)
                    if got != case["ids"]:
                        bad += 1
                    self.assertEqual(got, case["ids"])
            print("tokenize %s: %d/%d cases identical to HF" % (model, len(cases) - bad, len(cases)))

    def test_detokenize_cases_match_hf(self):
        for model in BASE_MODELS:
            cases = load_json(fixture(model, "tokenizer_cases.json"))
            for i, case in enumerate(cases):
                with self.subTest(model=model, case=i, text=case["text"][:40]):
                    r = hlpt("detokenize", "--model", fixture(model), *case["ids"])
                    self.assertEqual(r.rc, 0, r.describe())
                    # The text, then one newline.
                    self.assertEqual(r.stdout, case["decoded"] + "\n")

    def test_special_literal_is_text_by_default(self):
        # A user's "<s>" is plain text unless --parse-special asks otherwise.
        model = "llama2-mha-f32"
        case = next(c for c in load_json(fixture(model, "tokenizer_cases.json")) if "<s>" in c["text"])
        cfg = load_json(fixture(model, "config.json"))
        with_flag = self.tokenize(model, case["text"], "--parse-special")
        plain = self.tokenize(model, case["text"])
        self.assertIn(cfg["bos_token_id"], with_flag)
        self.assertNotIn(cfg["bos_token_id"], plain)
        self.assertNotIn(cfg["eos_token_id"], plain)
        r = hlpt("detokenize", "--model", fixture(model), *plain)
        self.assertEqual(r.stdout, case["text"] + "\n", r.describe())

    def test_bos(self):
        for model in BASE_MODELS:
            bos = load_json(fixture(model, "config.json"))["bos_token_id"]
            for case in load_json(fixture(model, "tokenizer_cases.json"))[:3]:
                with self.subTest(model=model, text=case["text"]):
                    self.assertEqual(self.tokenize(model, case["text"], "--bos"), [bos] + case["ids"])
            with self.subTest(model=model, text=""):
                self.assertEqual(self.tokenize(model, "", "--bos"), [bos])

    def test_reference_prompts(self):
        # The forward references start with BOS, then the tokenizer's ids of the prompt.
        for model in BASE_MODELS:
            for c, case in enumerate(load_json(fixture(model, "ref.json"))["cases"]):
                with self.subTest(model=model, case=c):
                    self.assertEqual(self.tokenize(model, case["prompt"], "--bos"), case["input_ids"])

    def test_tokenizer_file(self):
        # --tokenizer FILE gives the same ids as --model DIR.
        for model in BASE_MODELS:
            for case in load_json(fixture(model, "tokenizer_cases.json"))[:5]:
                with self.subTest(model=model, text=case["text"]):
                    r = hlpt("tokenize", "--tokenizer", fixture(model, "tokenizer.json"), "--", case["text"])
                    self.assertEqual(r.rc, 0, r.describe())
                    self.assertEqual(json.loads(r.stdout), case["ids"])
                    r = hlpt("detokenize", "--tokenizer", fixture(model, "tokenizer.json"), *case["ids"])
                    self.assertEqual(r.stdout, case["decoded"] + "\n", r.describe())


# ---------------------------------------------------------------------------------------------- #
# 2-3. forward and greedy generation of the base models


class LogitsCase(TempDirCase):
    def check_logits(self, out, ref, label, tol=TOL):
        got, _ = read_safetensors(out)
        self.assertEqual(sorted(got), ["logits"], "%s: tensors of %s" % (label, out))
        lg = got["logits"]
        self.assertEqual(lg.dtype, "F32", label)
        self.assertEqual(lg.shape, ref.shape, label)
        err = rel_l2(lg.values, ref.values)
        print("%s: logits rel L2 %.3g (tol %g)" % (label, err, tol))
        self.assertLessEqual(err, tol, label)
        return err


class TestForward(LogitsCase):
    def test_base_logits(self):
        for model in BASE_MODELS:
            ref, _ = read_safetensors(fixture(model, "ref.safetensors"))
            for c in range(3):
                with self.subTest(model=model, case=c):
                    out = self.path("%s-%d.safetensors" % (model, c))
                    ids = ref["case%d.input_ids" % c].values
                    r = self.ok("forward", "--model", fixture(model), "--tokens", ids_arg(ids), "--out", out,
                                "--dtype", "f32")
                    self.assertEqual(r.stdout, "", r.describe())
                    self.check_logits(out, ref["case%d.logits" % c], "forward %s case%d" % (model, c))

    def test_adapter_logits(self):
        base = fixture(ADAPTER_BASE)
        for name in ADAPTERS:
            with self.subTest(adapter=name):
                ref, _ = read_safetensors(fixture(name, "ref.safetensors"))
                out = self.path(name + ".safetensors")
                self.ok("forward", "--model", base, "--adapter", fixture(name), "--tokens",
                        ids_arg(ref["input_ids"].values), "--out", out, "--dtype", "f32")
                self.check_logits(out, ref["logits"], "forward %s + %s" % (ADAPTER_BASE, name))


class TestGenerate(unittest.TestCase):
    def test_greedy_matches_hf(self):
        for model in BASE_MODELS:
            ref, _ = read_safetensors(fixture(model, "ref.safetensors"))
            for c, case in enumerate(load_json(fixture(model, "ref.json"))["cases"]):
                with self.subTest(model=model, case=c):
                    r = hlpt("generate", "--model", fixture(model), "--prompt", case["prompt"], "--ids",
                             "--ignore-eos", "--max-tokens", 24, "--dtype", "f32")
                    self.assertEqual(r.rc, 0, r.describe())
                    self.assertEqual(json.loads(r.stdout), ref["case%d.greedy" % c].values)

    def test_text_output_is_the_detokenized_ids(self):
        # Without --ids, the text printed is the decoding of the same greedy tokens.
        model = "llama2-mha-f32"
        prompt = load_json(fixture(model, "ref.json"))["cases"][1]["prompt"]
        common = ["--model", fixture(model), "--prompt", prompt, "--ignore-eos", "--max-tokens", 12]
        ids = hlpt("generate", "--ids", *common)
        text = hlpt("generate", *common)
        self.assertEqual(ids.rc, 0, ids.describe())
        self.assertEqual(text.rc, 0, text.describe())
        if has_command("detokenize"):
            d = hlpt("detokenize", "--model", fixture(model), *json.loads(ids.stdout))
            self.assertEqual(text.stdout, d.stdout)
        self.assertTrue(text.stdout.endswith("\n"))

    def test_sampling_is_seeded(self):
        model = "llama2-mha-f32"
        args = ["generate", "--model", fixture(model), "--prompt", "The quick brown fox", "--ids",
                "--ignore-eos", "--max-tokens", 16, "--temperature", 1.5, "--top-p", 0.95, "--top-k", 50]
        a = hlpt(*args, "--seed", 7)
        b = hlpt(*args, "--seed", 7)
        self.assertEqual(a.rc, 0, a.describe())
        self.assertEqual(a.stdout, b.stdout)
        ids = json.loads(a.stdout)
        self.assertEqual(len(ids), 16)
        vocab = load_json(fixture(model, "config.json"))["vocab_size"]
        self.assertTrue(all(0 <= i < vocab for i in ids), ids)
        # Different seeds give different samples (a flat-ish distribution at T=1.5, 16 tokens).
        others = {hlpt(*args, "--seed", s).stdout for s in (1, 2, 3)}
        self.assertGreater(len(others | {a.stdout}), 1)

    def test_adapter_changes_generation(self):
        # The adapter is applied: greedy tokens match a forward pass with the adapter, step by step.
        # Exact F32: in bf16 a decode step and a whole-sequence forward may take different product
        # kernels (include/hlpt/engine.h), and a near tie of two logits could then break either way.
        model = fixture(ADAPTER_BASE)
        prompt = load_json(fixture(ADAPTER_BASE, "ref.json"))["cases"][0]["prompt"]
        bos = load_json(fixture(ADAPTER_BASE, "config.json"))["bos_token_id"]
        ref, _ = read_safetensors(fixture(ADAPTER_BASE, "ref.safetensors"))
        prompt_ids = ref["case0.input_ids"].values
        self.assertEqual(prompt_ids[0], bos)
        with tempfile.TemporaryDirectory(prefix="hlpt-cli-") as tmp:
            for name in ADAPTERS:
                with self.subTest(adapter=name):
                    r = hlpt("generate", "--model", model, "--adapter", fixture(name), "--prompt", prompt,
                             "--ids", "--ignore-eos", "--max-tokens", 6, "--dtype", "f32")
                    self.assertEqual(r.rc, 0, r.describe())
                    gen = json.loads(r.stdout)
                    self.assertEqual(len(gen), 6)
                    out = os.path.join(tmp, name + ".safetensors")
                    f = hlpt("forward", "--model", model, "--adapter", fixture(name), "--tokens",
                             ids_arg(prompt_ids + gen), "--out", out, "--dtype", "f32")
                    self.assertEqual(f.rc, 0, f.describe())
                    lg = read_safetensors(out)[0]["logits"]
                    V = lg.shape[1]
                    T0 = len(prompt_ids)
                    for k, tok in enumerate(gen):
                        row = lg.values[(T0 - 1 + k) * V:(T0 + k) * V]
                        self.assertEqual(tok, max(range(V), key=row.__getitem__), "token %d" % k)


class TestDtype(LogitsCase):
    """--dtype: bf16 near the fixtures, f32 exact, auto one of the two, anything else a usage error."""

    model = "llama2-mha-f32"

    def forward(self, dtype, c, adapter=None):
        ref, _ = read_safetensors(fixture(self.model, "ref.safetensors"))
        out = self.path("%s-%d.safetensors" % (dtype, c))
        extra = ["--adapter", fixture(adapter)] if adapter else []
        r = hlpt("forward", "--model", fixture(self.model), "--tokens", ids_arg(ref["case%d.input_ids" % c].values),
                 "--out", out, "--dtype", dtype, *extra)
        return r, out, ref["case%d.logits" % c]

    def test_bf16_and_f32_logits(self):
        if not cpu_has_bf16():
            # A CPU without AVX512-BF16 or AMX refuses bf16 with a message, not a crash.
            r, out, _ = self.forward("bf16", 0)
            self.assertEqual(r.rc, 1, r.describe())
            self.assertIn("bf16", r.stderr, r.describe())
            self.assertFalse(os.path.exists(out))
            self.skipTest("skipped (this CPU has no AVX512-BF16 or AMX: bf16 refused as it should be)")
        for c in range(3):
            with self.subTest(case=c):
                r, out, ref = self.forward("bf16", c)
                self.assertEqual(r.rc, 0, r.describe())
                e16 = self.check_logits(out, ref, "forward --dtype bf16 %s case%d" % (self.model, c), TOL_BF16)
                r, out, ref = self.forward("f32", c)
                self.assertEqual(r.rc, 0, r.describe())
                e32 = self.check_logits(out, ref, "forward --dtype f32 %s case%d" % (self.model, c))
                # bf16 really ran: its error is far above f32's.
                self.assertGreater(e16, 10 * e32)

    def test_auto_is_bf16_where_the_cpu_has_it(self):
        r, auto, _ = self.forward("auto", 1)
        self.assertEqual(r.rc, 0, r.describe())
        r, want, _ = self.forward("bf16" if cpu_has_bf16() else "f32", 1)
        self.assertEqual(r.rc, 0, r.describe())
        self.assertEqual(read_safetensors(auto)[0]["logits"].values, read_safetensors(want)[0]["logits"].values)
        # And auto is the default.
        default = self.path("default.safetensors")
        ref, _ = read_safetensors(fixture(self.model, "ref.safetensors"))
        self.ok("forward", "--model", fixture(self.model), "--tokens", ids_arg(ref["case1.input_ids"].values),
                "--out", default)
        self.assertEqual(read_safetensors(default)[0]["logits"].values, read_safetensors(auto)[0]["logits"].values)

    def test_bf16_adapter_logits(self):
        if not cpu_has_bf16():
            self.skipTest("skipped (this CPU has no AVX512-BF16 or AMX)")
        for name in ADAPTERS:
            with self.subTest(adapter=name):
                ref, _ = read_safetensors(fixture(name, "ref.safetensors"))
                out = self.path(name + ".safetensors")
                self.ok("forward", "--model", fixture(ADAPTER_BASE), "--adapter", fixture(name), "--tokens",
                        ids_arg(ref["input_ids"].values), "--out", out, "--dtype", "bf16")
                self.check_logits(out, ref["logits"], "forward --dtype bf16 + %s" % name, TOL_BF16)

    def test_bad_dtype_is_a_usage_error(self):
        m = fixture(self.model)
        out = self.path("o.safetensors")
        cmds = {"forward": ["--tokens", "1,2,3", "--out", out],
                "generate": ["--prompt", "hi"],
                "grad": ["--adapter", fixture("hlpt-causal"), "--tokens", "1,2,3", "--labels", "-100,5,6", "--out", out],
                "train": ["--data", fixture("README.md"), "--out", self.path("t")]}
        for cmd, args in cmds.items():
            for bad in ("f16", ""):
                with self.subTest(cmd=cmd, dtype=bad):
                    r = hlpt(cmd, "--model", m, *args, "--dtype", bad)
                    self.assertEqual(r.rc, 2, r.describe())
                    self.assertEqual(r.stdout, "", r.describe())
                    self.assertIn("--dtype", r.stderr, r.describe())
                    self.assertIn("auto, bf16 or f32", r.stderr, r.describe())
            with self.subTest(cmd=cmd, help=True):
                r = hlpt(cmd, "--help")
                self.assertEqual(r.rc, 0, r.describe())
                self.assertIn("[--dtype auto|bf16|f32]", r.stdout)
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(self.path("t")))


# ---------------------------------------------------------------------------------------------- #
# 4. adapter loss and gradients


class TestGrad(TempDirCase):
    def test_loss_and_gradients(self):
        base = fixture(ADAPTER_BASE)
        for name in ADAPTERS:
            with self.subTest(adapter=name):
                ref, _ = read_safetensors(fixture(name, "ref.safetensors"))
                out = self.path(name + ".safetensors")
                r = self.ok("grad", "--model", base, "--adapter", fixture(name),
                            "--tokens", ids_arg(ref["input_ids"].values),
                            "--labels", ids_arg(ref["labels"].values), "--out", out, "--dtype", "f32")
                self.assertEqual(r.stdout, "", r.describe())
                got, _ = read_safetensors(out)
                loss = got["loss"]
                self.assertEqual((loss.dtype, loss.shape), ("F32", [1]))
                d = abs(loss.values[0] - ref["loss"].values[0])
                print("grad %s: loss %.6f vs %.6f, |diff| %.3g (tol %g)"
                      % (name, loss.values[0], ref["loss"].values[0], d, TOL))
                self.assertLessEqual(d, TOL)
                want = sorted(k for k in ref if k.startswith("grad."))
                have = sorted(k for k in got if k.startswith("grad."))
                self.assertEqual(have, want, "gradient tensor names")
                worst = (0.0, "")
                for k in want:
                    with self.subTest(adapter=name, tensor=k):
                        g, w = got[k], ref[k]
                        self.assertEqual(g.dtype, "F32")
                        self.assertEqual(squeeze(g.shape), squeeze(w.shape), k)
                        e = rel_l2(g.values, w.values)
                        worst = max(worst, (e, k))
                        self.assertLessEqual(e, TOL, "%s: rel L2 %.3g" % (k, e))
                print("grad %s: %d tensors, worst rel L2 %.3g (%s)" % (name, len(want), worst[0], worst[1]))


# ---------------------------------------------------------------------------------------------- #
# 5. training


def dataset_module_present():
    # hlpt_examples_load is the JSONL dataset reader of train.h (core/examples.c).
    for path in glob.glob("core/*.c"):
        with open(path, encoding="utf-8", errors="replace") as f:
            # A definition: at the start of a line, no semicolon after the parameter list opens.
            if re.search(r"^[A-Za-z].*\bhlpt_examples_load\s*\([^;]*$", f.read(), re.M):
                return True
    return False


EXAMPLES = [
    ("What is the capital of France?", " The capital of France is Paris."),
    ("Name a primary colour.", " Red is a primary colour."),
    ("How many legs has a spider?", " A spider has eight legs."),
    ("What do bees make?", " Bees make honey."),
    ("Which planet is the largest?", " Jupiter is the largest planet."),
    ("What is two plus two?", " Two plus two is four."),
    ("What colour is the sky?", " The sky is blue."),
    ("What does a cat say?", " A cat says meow."),
    ("Where do fish live?", " Fish live in water."),
    ("What is ice made of?", " Ice is frozen water."),
    ("How many days has a week?", " A week has seven days."),
    ("What do cows drink?", " Cows drink water."),
    ("Which season is the coldest?", " Winter is the coldest season."),
    ("What is the opposite of hot?", " The opposite of hot is cold."),
    ("What shape is a ball?", " A ball is round."),
    ("What do we breathe?", " We breathe air."),
]


class TestTrain(TempDirCase):
    @classmethod
    def setUpClass(cls):
        cls.available = dataset_module_present()

    def setUp(self):
        if not self.available:
            self.skipTest("the dataset reader (hlpt_examples_load in core/) is not in this tree")
        super().setUp()
        self.data = self.path("train.jsonl")
        with open(self.data, "w", encoding="utf-8") as f:
            for p, c in EXAMPLES:
                f.write(json.dumps({"prompt": p, "completion": c}) + "\n")
        self.model = fixture("llama2-mha-f32")

    def train(self, out, *extra):
        # 16 examples, 4 per step: 4 steps an epoch.
        r = hlpt("train", "--model", self.model, "--data", self.data, "--batch-size", 2, "--grad-accum", 2,
                 "--seed", 3, "--threads", 1, "--out", out, *extra, timeout=300)
        self.assertEqual(r.rc, 0, r.describe())
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertTrue(lines, "no progress lines on stdout\n" + r.describe())
        for p in lines:
            for key in ("step", "total_steps", "train_loss"):
                self.assertIn(key, p)
            self.assertTrue(math.isfinite(p["train_loss"]) and p["train_loss"] > 0, p)
        return r, lines

    def test_train_generate_resume(self):
        out = self.path("run")
        _, lines = self.train(out, "--max-steps", 4, "--epochs", 2)
        self.assertEqual([p["step"] for p in lines], [1, 2, 3, 4])
        self.assertTrue(all(p["total_steps"] == 4 for p in lines), lines)
        for f in ("adapter_config.json", "adapter_model.safetensors", "checkpoint.safetensors"):
            self.assertTrue(os.path.isfile(os.path.join(out, f)), f)
        cfg = load_json(os.path.join(out, "adapter_config.json"))
        self.assertEqual(cfg.get("method"), "hlpt", cfg)
        weights, _ = read_safetensors(os.path.join(out, "adapter_model.safetensors"))
        self.assertTrue(weights)
        self.assertTrue(all(math.isfinite(v) for t in weights.values() for v in t.values))

        # The trained adapter changes the logits.
        ids = ids_arg([1, 400, 500, 600])
        r0 = self.path("base.safetensors")
        r1 = self.path("adapted.safetensors")
        hlpt_ok = [hlpt("forward", "--model", self.model, "--tokens", ids, "--out", r0),
                   hlpt("forward", "--model", self.model, "--adapter", out, "--tokens", ids, "--out", r1)]
        for r in hlpt_ok:
            self.assertEqual(r.rc, 0, r.describe())
        diff = rel_l2(read_safetensors(r1)[0]["logits"].values, read_safetensors(r0)[0]["logits"].values)
        print("train: trained adapter moves the logits by rel L2 %.3g" % diff)
        self.assertGreater(diff, 1e-6)

        # The adapter loads for generation.
        g = hlpt("generate", "--model", self.model, "--adapter", out, "--prompt", EXAMPLES[0][0], "--ids",
                 "--ignore-eos", "--max-tokens", 5)
        self.assertEqual(g.rc, 0, g.describe())
        self.assertEqual(len(json.loads(g.stdout)), 5)

        # Resuming the step-4 checkpoint on a longer run continues at step 5.
        out2 = self.path("resumed")
        _, lines2 = self.train(out2, "--max-steps", 6, "--epochs", 2, "--resume",
                               os.path.join(out, "checkpoint.safetensors"))
        self.assertEqual([p["step"] for p in lines2], [5, 6])
        self.assertTrue(all(p["total_steps"] == 6 for p in lines2), lines2)
        g = hlpt("generate", "--model", self.model, "--adapter", out2, "--prompt", EXAMPLES[1][0], "--ids",
                 "--max-tokens", 3, "--ignore-eos")
        self.assertEqual(g.rc, 0, g.describe())

        # Resuming a finished run of the same length does no step and writes the same weights.
        out3 = self.path("again")
        r = hlpt("train", "--model", self.model, "--data", self.data, "--batch-size", 2, "--grad-accum", 2,
                 "--seed", 3, "--threads", 1, "--max-steps", 4, "--epochs", 2, "--out", out3, "--resume",
                 os.path.join(out, "checkpoint.safetensors"), timeout=300)
        self.assertEqual(r.rc, 0, r.describe())
        again, _ = read_safetensors(os.path.join(out3, "adapter_model.safetensors"))
        self.assertEqual(sorted(again), sorted(weights))
        for k in weights:
            self.assertEqual(again[k].values, weights[k].values, k)

    def test_validation(self):
        valid = self.path("valid.jsonl")
        with open(valid, "w", encoding="utf-8") as f:
            for p, c in EXAMPLES[:4]:
                f.write(json.dumps({"prompt": p, "completion": c}) + "\n")
        _, lines = self.train(self.path("v"), "--valid", valid, "--max-steps", 4, "--eval-every", 2)
        evals = [p for p in lines if "valid_loss" in p]
        self.assertEqual([p["step"] for p in evals], [2, 4], lines)
        for p in evals:
            self.assertTrue(math.isfinite(p["valid_loss"]) and p["valid_loss"] > 0, p)
            self.assertTrue(0 <= p["valid_acc"] <= 1, p)

    def test_methods(self):
        # Each method writes an adapter that forward loads, with the method in its config.
        for method in ("h2lpt", "lora", "prefix"):
            with self.subTest(method=method):
                out = self.path(method)
                self.train(out, "--method", method, "--max-steps", 1, "--rank", 2, "--virtual-tokens", 3)
                self.assertEqual(load_json(os.path.join(out, "adapter_config.json")).get("method"), method)
                self.ok("forward", "--model", self.model, "--adapter", out, "--tokens", "1,400,500",
                        "--out", self.path(method + ".safetensors"))

    def test_targets(self):
        # --targets picks the modules LoRA adapts: the config says so and the tensors follow.
        out = self.path("targets")
        self.train(out, "--method", "hlpt", "--max-steps", 1, "--targets", "gate_proj,up_proj")
        self.assertEqual(sorted(load_json(os.path.join(out, "adapter_config.json"))["target_modules"]),
                         ["gate_proj", "up_proj"])
        names, _ = read_safetensors(os.path.join(out, "adapter_model.safetensors"))
        lora = [n for n in names if "lora_A" in n]
        self.assertTrue(lora and all(".mlp.gate_proj." in n or ".mlp.up_proj." in n for n in lora), lora)
        r = hlpt("train", "--model", self.model, "--data", self.data, "--targets", "wq", "--out", self.path("bad"))
        self.assertEqual(r.rc, 2, r.describe())
        self.assertIn("unknown module 'wq'", r.stderr)

    def test_same_seed_same_run(self):
        _, a = self.train(self.path("a"), "--max-steps", 3)
        _, b = self.train(self.path("b"), "--max-steps", 3)
        self.assertEqual([p["train_loss"] for p in a], [p["train_loss"] for p in b])
        wa, _ = read_safetensors(self.path("a", "adapter_model.safetensors"))
        wb, _ = read_safetensors(self.path("b", "adapter_model.safetensors"))
        for k in wa:
            self.assertEqual(wa[k].values, wb[k].values, k)

    def test_resume_of_another_plan_fails(self):
        out = self.path("r4")
        self.train(out, "--max-steps", 2, "--rank", 8)
        r = hlpt("train", "--model", self.model, "--data", self.data, "--rank", 4, "--max-steps", 3,
                 "--resume", os.path.join(out, "checkpoint.safetensors"), "--out", self.path("r8"), timeout=300)
        self.assertEqual(r.rc, 1, r.describe())
        self.assertIn("checkpoint", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_bad_line_is_named(self):
        bad = self.path("bad.jsonl")
        with open(bad, "w", encoding="utf-8") as f:
            f.write(json.dumps({"prompt": "a", "completion": " b"}) + "\n")
            f.write('{"prompt": "a", "completion": \n')
        r = hlpt("train", "--model", self.model, "--data", bad, "--out", self.path("o"))
        self.assertEqual(r.rc, 1, r.describe())
        self.assertIn("2", r.stderr)  # the line number
        self.assertEqual(r.stdout, "")


# ---------------------------------------------------------------------------------------------- #
# 6. errors


class TestErrors(TempDirCase):
    """Bad input: a non-zero exit (2 for usage errors, 1 for the rest), a message on stderr naming
    the problem, nothing on stdout, and no crash."""

    model = fixture("llama2-mha-f32")

    def fails(self, rc, needles, *args):
        r = hlpt(*args)
        self.assertEqual(r.rc, rc, r.describe())
        self.assertEqual(r.stdout, "", r.describe())
        self.assertTrue(r.stderr.strip(), r.describe())
        for n in needles:
            self.assertIn(n.lower(), r.stderr.lower(), r.describe())
        return r

    def copy_model(self):
        d = self.path("model")
        shutil.copytree(self.model, d)
        return d

    def copy_adapter(self, name):
        d = self.path(name)
        shutil.copytree(fixture(name), d)
        return d

    def test_missing_model_dir(self):
        missing = self.path("no-such-model")
        out = self.path("o.safetensors")
        self.fails(1, [missing], "forward", "--model", missing, "--tokens", "1,2,3", "--out", out)
        self.fails(1, [missing], "generate", "--model", missing, "--prompt", "hi")
        self.fails(1, [missing], "grad", "--model", missing, "--adapter", fixture("hlpt-causal"),
                   "--tokens", "1,2,3", "--labels", "-100,5,6", "--out", out)
        self.fails(1, [missing], "train", "--model", missing, "--data", fixture("README.md"), "--out", self.path("t"))
        self.assertFalse(os.path.exists(out))

    def test_missing_adapter_dir(self):
        missing = self.path("no-such-adapter")
        self.fails(1, [missing], "forward", "--model", self.model, "--adapter", missing, "--tokens", "1,2",
                   "--out", self.path("o.safetensors"))

    def test_missing_required_option(self):
        # The message names the missing option, not only the usage.
        self.fails(2, ["--out", "missing"], "forward", "--model", self.model, "--tokens", "1,2,3")
        self.fails(2, ["--tokens", "missing"], "forward", "--model", self.model, "--out", self.path("o"))
        self.fails(2, ["--model", "missing"], "forward", "--tokens", "1,2", "--out", self.path("o"))
        self.fails(2, ["--prompt", "missing"], "generate", "--model", self.model)
        self.fails(2, ["--labels", "missing"], "grad", "--model", self.model, "--adapter", fixture("hlpt-causal"),
                   "--tokens", "1,2", "--out", self.path("o"))
        self.fails(2, ["--data", "missing"], "train", "--model", self.model, "--out", self.path("t"))

    def test_bad_token_list(self):
        self.fails(2, ["--tokens", "1,x,3"], "forward", "--model", self.model, "--tokens", "1,x,3",
                   "--out", self.path("o"))
        self.fails(2, ["--tokens"], "forward", "--model", self.model, "--tokens", "1,,3", "--out", self.path("o"))
        self.fails(2, ["--tokens"], "forward", "--model", self.model, "--tokens", "", "--out", self.path("o"))
        self.fails(2, ["--labels"], "grad", "--model", self.model, "--adapter", fixture("hlpt-causal"),
                   "--tokens", "1,2,3", "--labels", "-100,-5,3", "--out", self.path("o"))

    def test_token_id_out_of_vocab(self):
        vocab = load_json(fixture("llama2-mha-f32", "config.json"))["vocab_size"]
        out = self.path("o.safetensors")
        self.fails(1, [str(vocab), "range"], "forward", "--model", self.model, "--tokens", "1,%d,3" % vocab,
                   "--out", out)
        self.assertFalse(os.path.exists(out))
        self.fails(1, [str(vocab + 7), "range"], "grad", "--model", self.model, "--adapter",
                   fixture("hlpt-causal"), "--tokens", "1,2,3", "--labels", "-100,%d,3" % (vocab + 7), "--out", out)
        if has_command("detokenize"):
            self.fails(1, [str(vocab)], "detokenize", "--model", self.model, "1", str(vocab))
            self.fails(1, ["-5"], "detokenize", "--model", self.model, "1", "-5")

    def test_labels_count(self):
        self.fails(2, ["--labels", "--tokens"], "grad", "--model", self.model, "--adapter", fixture("hlpt-causal"),
                   "--tokens", "1,2,3", "--labels", "-100,5", "--out", self.path("o"))

    def test_unknown_option(self):
        for cmd in ("forward", "generate", "grad", "train", "tokenize", "detokenize"):
            with self.subTest(cmd=cmd):
                if cmd in ("tokenize", "detokenize") and not has_command(cmd):
                    self.skipTest("hlpt %s is missing from this build (tools/cmd_tokenize.c)" % cmd)
                self.fails(2, ["--frobnicate"], cmd, "--model", self.model, "--frobnicate")

    def test_unknown_command(self):
        self.fails(2, ["frobnicate"], "frobnicate", "--model", self.model)

    def test_no_command(self):
        r = hlpt()
        self.assertEqual(r.rc, 2, r.describe())
        self.assertEqual(r.stdout, "")
        self.assertIn("usage", r.stderr.lower())

    def test_truncated_weights(self):
        d = self.copy_model()
        w = os.path.join(d, "model.safetensors")
        size = os.path.getsize(w)
        for keep in (size // 2, size - 4, 6):
            with self.subTest(bytes_kept=keep):
                with open(w, "r+b") as f:
                    f.truncate(keep)
                self.fails(1, ["model.safetensors"], "forward", "--model", d, "--tokens", "1,2,3",
                           "--out", self.path("o"))
                self.fails(1, ["model.safetensors"], "generate", "--model", d, "--prompt", "hi")

    def test_missing_weights(self):
        d = self.copy_model()
        os.remove(os.path.join(d, "model.safetensors"))
        self.fails(1, ["model.safetensors"], "forward", "--model", d, "--tokens", "1,2,3", "--out", self.path("o"))

    def test_broken_config(self):
        d = self.copy_model()
        for text in ('{"hidden_size": 64,', "[]", ""):
            with self.subTest(config=text):
                with open(os.path.join(d, "config.json"), "w") as f:
                    f.write(text)
                self.fails(1, ["config.json"], "forward", "--model", d, "--tokens", "1,2,3", "--out", self.path("o"))

    def test_config_disagrees_with_weights(self):
        d = self.copy_model()
        cfg = load_json(os.path.join(d, "config.json"))
        cfg["intermediate_size"] = 200
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        r = self.fails(1, [], "forward", "--model", d, "--tokens", "1,2,3", "--out", self.path("o"))
        self.assertTrue("mlp" in r.stderr or "shape" in r.stderr.lower(), r.describe())

    def test_adapter_rank_mismatch(self):
        for name in ("hlpt-causal", "peft-lora-qv"):
            with self.subTest(adapter=name):
                d = self.copy_adapter(name)
                p = os.path.join(d, "adapter_config.json")
                cfg = load_json(p)
                cfg["r"] = 8
                with open(p, "w") as f:
                    json.dump(cfg, f)
                r = self.fails(1, [d], "forward", "--model", self.model, "--adapter", d, "--tokens", "1,2,3",
                               "--out", self.path("o"))
                # The message names the tensor whose shape disagrees.
                self.assertIn("lora_", r.stderr, r.describe())
                self.fails(1, [d], "generate", "--model", self.model, "--adapter", d, "--prompt", "hi")

    def test_adapter_tensor_missing(self):
        d = self.copy_adapter("hlpt-causal")
        p = os.path.join(d, "adapter_model.safetensors")
        tensors, _ = read_safetensors(p)
        victim = sorted(k for k in tensors if "lora_A" in k)[0]
        del tensors[victim]
        write_safetensors(p, {k: (t.dtype, t.shape, t.values) for k, t in tensors.items()})
        self.fails(1, [victim], "forward", "--model", self.model, "--adapter", d, "--tokens", "1,2,3",
                   "--out", self.path("o"))

    def test_tokenize_usage(self):
        if not has_command("tokenize"):
            self.skipTest("hlpt tokenize is missing from this build (tools/cmd_tokenize.c)")
        tok = fixture("llama2-mha-f32", "tokenizer.json")
        self.fails(2, ["TEXT"], "tokenize", "--model", self.model)
        self.fails(2, ["TEXT"], "tokenize", "--model", self.model, "a", "b")
        self.fails(2, ["--model", "--tokenizer"], "tokenize", "--model", self.model, "--tokenizer", tok, "a")
        self.fails(2, ["--model", "--tokenizer"], "tokenize", "a")
        missing = self.path("no-such.json")
        self.fails(1, [missing], "tokenize", "--tokenizer", missing, "a")
        self.fails(2, ["x1"], "detokenize", "--model", self.model, "1", "x1")

    def test_no_target_label(self):
        self.fails(1, ["-100"], "grad", "--model", self.model, "--adapter", fixture("hlpt-causal"),
                   "--tokens", "1,2,3", "--labels", "-100,-100,-100", "--out", self.path("o"))

    def test_adapter_of_another_base(self):
        # hlpt-causal was made for llama2-mha-f32 (hidden 64, ffn 176), not the llama3 fixture.
        self.fails(1, ["down_proj"], "forward", "--model", fixture("llama3-gqa-tied-bf16"), "--adapter",
                   fixture("hlpt-causal"), "--tokens", "1,2", "--out", self.path("o"))
        # A model directory is not an adapter directory.
        self.fails(1, ["adapter_config.json"], "forward", "--model", self.model, "--adapter",
                   fixture("llama3-gqa-tied-bf16"), "--tokens", "1,2", "--out", self.path("o"))

    def test_generation_past_the_context(self):
        ctx = load_json(fixture("llama2-mha-f32", "config.json"))["max_position_embeddings"]
        self.fails(1, ["context"], "generate", "--model", self.model, "--prompt", "hi", "--ignore-eos",
                   "--max-tokens", ctx + 10)

    def test_bad_sampling_options(self):
        base = ["generate", "--model", self.model, "--prompt", "hi"]
        self.fails(2, ["--temperature", "-1"], *base, "--temperature", "-1")
        self.fails(2, ["--temperature"], *base, "--temperature", "nan")
        self.fails(2, ["--top-p"], *base, "--top-p", "1.5")
        self.fails(2, ["--top-p"], *base, "--top-p", "0")
        self.fails(2, ["--top-k"], *base, "--top-k", "-3")
        self.fails(2, ["--max-tokens"], *base, "--max-tokens", "0")
        self.fails(2, ["--seed"], *base, "--seed", "-1")
        self.fails(2, ["--max-tokens"], *base, "--max-tokens")

    def test_bad_train_options(self):
        base = ["train", "--model", self.model, "--data", fixture("README.md"), "--out", self.path("t")]
        self.fails(2, ["--method"], *base, "--method", "qlora")
        self.fails(2, ["--gate"], *base, "--gate", "always")
        self.fails(2, ["--rank"], *base, "--rank", "0")
        self.fails(2, ["--lr"], *base, "--lr", "abc")
        self.assertFalse(os.path.exists(self.path("t")))

    def test_missing_data_file(self):
        missing = self.path("no-such.jsonl")
        self.fails(1, [missing], "train", "--model", self.model, "--data", missing, "--out", self.path("t"))

    def test_unwritable_out(self):
        out = self.path("no-such-dir", "o.safetensors")
        self.fails(1, ["no-such-dir"], "forward", "--model", self.model, "--tokens", "1,2,3", "--out", out)

    def test_help(self):
        for cmd in ("forward", "generate", "grad", "train"):
            with self.subTest(cmd=cmd):
                r = hlpt(cmd, "--help")
                self.assertEqual(r.rc, 0, r.describe())
                self.assertIn("usage: hlpt " + cmd, r.stdout)
        r = hlpt("--help")
        self.assertEqual(r.rc, 0, r.describe())
        for cmd in ("tokenize", "detokenize", "forward", "generate", "grad", "train"):
            self.assertIn(cmd, r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=1)
