"""Serving over the real hlptd: OpenAI completions and chat completions with a per-request adapter,
models, the adapter registry (import, export, delete), and /metrics.

References are independent of the daemon: greedy text is compared with `hlpt generate` (the core
library run offline on the same model and adapter directory), batched requests with the same
request sent alone, streams with non-streamed answers, chat with the plain completion of the
ChatML text that training renders. The daemon runs its default `--dtype auto`; DtypeTest starts it
with each dtype named."""
import base64
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers_cli import cpu_has_bf16  # noqa: E402
from hlptd import BUILD, MODEL, PG_SKIP, PG_URL, ROOT, Daemon, multipart  # noqa: E402

FIXTURES = os.path.join(ROOT, "tests", "fixtures")
HLPT = os.path.join(ROOT, BUILD, "hlpt") if not os.path.isabs(BUILD) else os.path.join(BUILD, "hlpt")
BASE = os.path.basename(MODEL)
PROMPTS = ["Hello", "The cat sat on", "1 2 3 4", "Once upon a time"]


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def adapter_files(name):
    d = os.path.join(FIXTURES, name)
    return read(os.path.join(d, "adapter_config.json"), "r"), read(os.path.join(d, "adapter_model.safetensors"))


def offline(prompt, adapter=None, max_tokens=12, dtype="auto"):
    """Greedy text from the core library without the daemon."""
    cmd = [HLPT, "generate", "--model", MODEL, "--prompt", prompt, "--max-tokens", str(max_tokens),
           "--temperature", "0", "--ignore-eos", "--dtype", dtype]
    if adapter:
        cmd += ["--adapter", adapter]
    out = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout
    assert out.endswith(b"\n")
    return out[:-1].decode("utf-8")


def sse_events(d, path, body, timeout=30):
    """POSTs body and returns the `data:` payloads of the event stream, in order."""
    status, headers, data = d.request("POST", path, json.dumps(body), {"Content-Type": "application/json"},
                                      timeout=timeout)
    assert status == 200, (status, data)
    assert headers["content-type"].startswith("text/event-stream"), headers
    events = []
    for block in data.decode("utf-8").split("\n\n"):
        if not block:
            continue
        lines = [l[len("data: "):] for l in block.split("\n") if l.startswith("data: ")]
        events.append("\n".join(lines))
    return events


class ServingTest(unittest.TestCase):
    pg = False  # ServingTestOnPostgres: the store in PostgreSQL (--store)

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(pg=cls.pg)
        try:
            cls.d.start()
        except Exception:
            cls.d.cleanup()
            raise
        # Two adapters: hlpt's own (gated LoRA + prefix), imported as multipart the way `hlpt
        # adapters import` sends it, and a plain PEFT LoRA, imported as JSON with base64 weights.
        cfg, w = adapter_files("hlpt-causal")
        status, cls.hlpt_ad = cls.import_multipart("causal", cfg, w)
        assert status == 200, cls.hlpt_ad
        cfg, w = adapter_files("peft-lora-qv")
        status, cls.peft_ad = cls.d.json("POST", "/v1/adapters", {
            "name": "peft-qv", "config": json.loads(cfg), "weights_base64": base64.b64encode(w).decode()})
        assert status == 200, cls.peft_ad
        # And a sequence-gate adapter, whose requests re-feed their whole text at every step.
        cfg, w = adapter_files("hlpt-sequence")
        status, body = cls.import_multipart("sequence", cfg, w)
        assert status == 200, body
        cls.adapters = {"causal": os.path.join(FIXTURES, "hlpt-causal"),
                        "peft-qv": os.path.join(FIXTURES, "peft-lora-qv"),
                        "sequence": os.path.join(FIXTURES, "hlpt-sequence")}

    @classmethod
    def tearDownClass(cls):
        try:
            # A clean exit after all of the above: drained, nothing leaked (under ASan, too).
            code = cls.d.stop()
            assert code == 0, "hlptd exited with %s:\n%s" % (code, cls.d.log()[-4000:])
        finally:
            cls.d.cleanup()

    @classmethod
    def import_multipart(cls, name, cfg, weights):
        fields = {"config": cfg}
        if name is not None:
            fields["name"] = name
        body, ctype = multipart(fields, {"weights": ("adapter_model.safetensors", weights)})
        return cls.d.json("POST", "/v1/adapters", body, {"Content-Type": ctype})

    def complete(self, model, prompt, **kw):
        body = dict(model=model, prompt=prompt, **kw)
        status, r = self.d.json("POST", "/v1/completions", body, timeout=30)
        self.assertEqual(status, 200, r)
        return r

    def greedy(self, model, prompt, max_tokens=12):
        r = self.complete(model, prompt, max_tokens=max_tokens, temperature=0, ignore_eos=True)
        return r["choices"][0]["text"]

    def error(self, status, body, want_status, param):
        self.assertEqual(status, want_status, body)
        self.assertEqual(set(body["error"]), {"message", "type", "param", "code"}, body)
        self.assertEqual(body["error"]["param"], param, body)
        return body["error"]

    # ---- completions --------------------------------------------------------------------------

    def test_completion_shape(self):
        r = self.complete("base", "Hello", max_tokens=5, temperature=0, ignore_eos=True)
        self.assertEqual(set(r), {"id", "object", "created", "model", "choices", "usage"})
        self.assertTrue(r["id"].startswith("cmpl-"), r["id"])
        self.assertEqual(r["object"], "text_completion")
        self.assertIsInstance(r["created"], int)
        self.assertEqual(r["model"], "base")
        self.assertEqual(len(r["choices"]), 1)
        c = r["choices"][0]
        self.assertEqual(set(c), {"index", "text", "logprobs", "finish_reason"})
        self.assertEqual((c["index"], c["logprobs"], c["finish_reason"]), (0, None, "length"))
        u = r["usage"]
        # "Hello" is one or more tokens, after BOS.
        self.assertGreaterEqual(u["prompt_tokens"], 2)
        self.assertEqual(u["completion_tokens"], 5)
        self.assertEqual(u["total_tokens"], u["prompt_tokens"] + 5)

    def test_greedy_matches_offline_generation(self):
        for prompt in PROMPTS[:2]:
            want = offline(prompt)
            self.assertEqual(self.greedy("base", prompt), want, prompt)
            self.assertEqual(self.greedy(BASE, prompt), want, prompt)
            for name, path in self.adapters.items():
                want = offline(prompt, path)
                self.assertEqual(self.greedy(name, prompt), want, (name, prompt))
        # By id as well as by name.
        self.assertEqual(self.greedy(self.hlpt_ad["id"], "Hello"), offline("Hello", self.adapters["causal"]))

    def test_adapters_change_the_output(self):
        # Not a property of the server, but without it the tests above could not tell adapters apart.
        models = ("base", "causal", "peft-qv", "sequence")
        texts = {m: self.greedy(m, "The quick brown fox", 12) for m in models}
        self.assertEqual(len(set(texts.values())), len(models), texts)
        lps = {m: self.complete(m, "Hello", max_tokens=1, temperature=0, logprobs=0)["choices"][0]["logprobs"]
               ["token_logprobs"][0] for m in models}
        self.assertEqual(len(set(lps.values())), len(models), lps)

    def test_concurrent_clients_get_their_solo_text(self):
        jobs = [(m, p) for m in ("base", "causal", "peft-qv", "sequence") for p in PROMPTS]
        solo = {j: self.greedy(j[0], j[1], 16) for j in jobs}
        for _ in range(2):
            got, errors = {}, []

            def run(job):
                try:
                    got[job] = self.greedy(job[0], job[1], 16)
                except Exception as e:  # reported below with its job
                    errors.append((job, e))

            threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertEqual(errors, [])
            self.assertEqual(got, solo)

    def test_stream_equals_plain(self):
        for model in ("base", "causal", "sequence"):
            body = dict(model=model, prompt="Once upon a time", max_tokens=20, temperature=0.8, seed=11)
            plain = self.complete(**body)["choices"][0]
            events = sse_events(self.d, "/v1/completions", dict(body, stream=True))
            self.assertEqual(events[-1], "[DONE]")
            chunks = [json.loads(e) for e in events[:-1]]
            ids = {c["id"] for c in chunks}
            self.assertEqual(len(ids), 1)
            self.assertTrue(ids.pop().startswith("cmpl-"))
            for c in chunks:
                self.assertEqual(c["object"], "text_completion")
                self.assertEqual(c["model"], model)
                self.assertEqual([ch["index"] for ch in c["choices"]], [0])
            text = "".join(c["choices"][0]["text"] for c in chunks)
            self.assertEqual(text, plain["text"])
            finishes = [c["choices"][0]["finish_reason"] for c in chunks]
            self.assertEqual(finishes[-1], plain["finish_reason"])
            self.assertTrue(all(f is None for f in finishes[:-1]))
            # Text arrives in more than one piece: it is streamed, not sent at the end.
            self.assertGreater(sum(1 for c in chunks if c["choices"][0]["text"]), 1)

    def test_stream_across_special_tokens(self):
        """With ignore_eos, </s> (or <unk>, <s>) may come between byte pieces; decoding skips it, so
        the bytes on both sides are one run, and what looked final before it may turn into U+FFFD.
        These seeds sample such a run early on the fixture model: every chunk is still UTF-8 and
        the chunks add up to the plain answer."""
        specials = {"<unk>", "<s>", "</s>"}
        tried = 0
        for seed in (7778, 8756, 19207):
            body = dict(model="base", prompt="A dog is", max_tokens=16, ignore_eos=True, seed=seed)
            plain = self.complete(**dict(body, logprobs=0))["choices"][0]
            if not specials & set(plain["logprobs"]["tokens"]):
                continue  # another machine's arithmetic sampled other tokens
            tried += 1
            status, _, data = self.d.request("POST", "/v1/completions", json.dumps(dict(body, stream=True)),
                                             {"Content-Type": "application/json"}, timeout=30)
            self.assertEqual(status, 200, data)
            text = ""
            for line in data.split(b"\n"):
                try:
                    line = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    self.fail("seed %d: a stream line is not UTF-8 (%s): %r" % (seed, e, line))
                if line.startswith("data: {"):
                    text += json.loads(line[len("data: "):])["choices"][0]["text"]
            self.assertEqual(text, plain["text"], seed)
        if not tried:
            self.skipTest("no seed sampled a special token on this machine")

    def test_stream_with_n_and_usage(self):
        body = dict(model="peft-qv", prompt="1 2 3 4", max_tokens=10, seed=5, n=3, ignore_eos=True)
        plain = self.complete(**body)
        events = sse_events(self.d, "/v1/completions",
                            dict(body, stream=True, stream_options={"include_usage": True}))
        self.assertEqual(events[-1], "[DONE]")
        chunks = [json.loads(e) for e in events[:-1]]
        usage = chunks[-1]
        self.assertEqual(usage["choices"], [])
        self.assertEqual(usage["usage"], plain["usage"])
        texts = {}
        for c in chunks[:-1]:
            for ch in c["choices"]:
                texts[ch["index"]] = texts.get(ch["index"], "") + ch["text"]
        self.assertEqual(texts, {c["index"]: c["text"] for c in plain["choices"]})

    def test_stop_strings(self):
        text = self.greedy("causal", "The cat sat on", 24)
        # A stop string of plain characters from the middle of the text.
        m = re.search(r"[ -~]{2}", text[3:])
        if not m:
            self.skipTest("skipped (greedy text has no two plain characters to stop at: %r)" % text)
        stop = m.group(0)
        want = text[:text.index(stop)]
        for s in (stop, ["\x01never", stop]):
            r = self.complete("causal", "The cat sat on", max_tokens=24, temperature=0, ignore_eos=True, stop=s)
            c = r["choices"][0]
            self.assertEqual((c["text"], c["finish_reason"]), (want, "stop"), (stop, text))
            events = sse_events(self.d, "/v1/completions", dict(model="causal", prompt="The cat sat on", max_tokens=24,
                                                                temperature=0, ignore_eos=True, stop=s, stream=True))
            chunks = [json.loads(e) for e in events[:-1]]
            self.assertEqual("".join(ch["choices"][0]["text"] for ch in chunks), want)
            self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "stop")

    def test_seeds_and_n(self):
        body = dict(model="causal", prompt="Hello", max_tokens=16, temperature=1.0, ignore_eos=True)
        a = self.complete(seed=7, **body)["choices"][0]["text"]
        b = self.complete(seed=7, **body)["choices"][0]["text"]
        c = self.complete(seed=8, **body)["choices"][0]["text"]
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)
        # n choices are the requests with seeds seed, seed+1, ...
        r = self.complete(seed=7, n=3, **body)
        self.assertEqual([ch["index"] for ch in r["choices"]], [0, 1, 2])
        want = [self.complete(seed=7 + i, **body)["choices"][0]["text"] for i in range(3)]
        self.assertEqual([ch["text"] for ch in r["choices"]], want)
        self.assertEqual(r["usage"]["completion_tokens"], 48)
        # The prompt is counted once, as OpenAI does.
        one = self.complete(seed=7, **body)["usage"]
        self.assertEqual(r["usage"]["prompt_tokens"], one["prompt_tokens"])

    def test_logprobs(self):
        r = self.complete("causal", "Hello", max_tokens=4, temperature=0, ignore_eos=True, logprobs=3)
        lp = r["choices"][0]["logprobs"]
        self.assertEqual(len(lp["tokens"]), 4)
        self.assertEqual(len(lp["token_logprobs"]), 4)
        self.assertEqual(len(lp["top_logprobs"]), 4)
        for chosen, top in zip(lp["token_logprobs"], lp["top_logprobs"]):
            self.assertLessEqual(chosen, 0.0)
            self.assertGreaterEqual(len(top), 1)
            self.assertLessEqual(len(top), 3)
            # Greedy: the chosen token is the most likely one.
            self.assertAlmostEqual(chosen, max(top.values()), places=5)
        chat = self.chat("causal", [{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0,
                         logprobs=True, top_logprobs=2)
        content = chat["choices"][0]["logprobs"]["content"]
        self.assertEqual(len(content), 3)
        for t in content:
            self.assertEqual(set(t), {"token", "bytes", "logprob", "top_logprobs"})
            self.assertEqual(len(t["top_logprobs"]), 2)
            self.assertAlmostEqual(t["logprob"], t["top_logprobs"][0]["logprob"], places=5)

    # ---- chat ---------------------------------------------------------------------------------

    def chat(self, model, messages, **kw):
        status, r = self.d.json("POST", "/v1/chat/completions", dict(model=model, messages=messages, **kw), timeout=30)
        self.assertEqual(status, 200, r)
        return r

    def test_chat_is_the_training_template(self):
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        # chatml, as training renders a messages line (docs/rest.md, core/dataset.c).
        rendered = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        for model in ("base", "peft-qv"):
            r = self.chat(model, msgs, max_tokens=10, temperature=0)
            self.assertTrue(r["id"].startswith("chatcmpl-"))
            self.assertEqual(r["object"], "chat.completion")
            c = r["choices"][0]
            self.assertEqual(set(c), {"index", "message", "logprobs", "finish_reason"})
            self.assertEqual(c["message"]["role"], "assistant")
            plain = self.complete(model, rendered, max_tokens=10, temperature=0)
            self.assertEqual(c["message"]["content"], plain["choices"][0]["text"])
            self.assertEqual(c["finish_reason"], plain["choices"][0]["finish_reason"])
            self.assertEqual(r["usage"], plain["usage"])

    def test_chat_stream(self):
        body = dict(model="causal", messages=[{"role": "user", "content": "Tell me"}], max_tokens=12, temperature=0,
                    n=2)
        plain = self.chat(**body)
        events = sse_events(self.d, "/v1/chat/completions", dict(body, stream=True))
        self.assertEqual(events[-1], "[DONE]")
        chunks = [json.loads(e) for e in events[:-1]]
        texts, roles, finish = {0: "", 1: ""}, {}, {}
        for c in chunks:
            self.assertEqual(c["object"], "chat.completion.chunk")
            for ch in c["choices"]:
                i = ch["index"]
                delta = ch["delta"]
                if "role" in delta:
                    roles[i] = delta["role"]
                    self.assertEqual(texts[i], "", "role comes first")
                texts[i] += delta.get("content", "")
                if ch["finish_reason"]:
                    finish[i] = ch["finish_reason"]
                    self.assertEqual(delta, {})
        self.assertEqual(roles, {0: "assistant", 1: "assistant"})
        self.assertEqual(texts, {c["index"]: c["message"]["content"] for c in plain["choices"]})
        self.assertEqual(finish, {c["index"]: c["finish_reason"] for c in plain["choices"]})

    # ---- errors -------------------------------------------------------------------------------

    def test_unknown_model(self):
        for path, body in (("/v1/completions", {"model": "nope", "prompt": "x"}),
                           ("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
                           ("/v1/completions", {"model": "nope", "prompt": "x", "stream": True}),
                           ("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}],
                                                     "stream": True, "n": 2})):
            status, r = self.d.json("POST", path, body)
            e = self.error(status, r, 404, "model")
            self.assertEqual(e["code"], "model_not_found")
            self.assertIn("nope", e["message"])

    def test_bad_fields_name_the_field(self):
        cases = [
            ({"prompt": "x"}, "model"),
            ({"model": "base", "prompt": "x", "max_tokens": -1}, "max_tokens"),
            ({"model": "base", "prompt": "x", "max_tokens": "5"}, "max_tokens"),
            ({"model": "base", "prompt": 5}, "prompt"),
            ({"model": "base", "prompt": "x", "temperature": 3}, "temperature"),
            ({"model": "base", "prompt": "x", "top_p": 0}, "top_p"),
            ({"model": "base", "prompt": "x", "top_k": -2}, "top_k"),
            ({"model": "base", "prompt": "x", "n": 9}, "n"),
            ({"model": "base", "prompt": "x", "stop": ["a"] * 9}, "stop"),
            ({"model": "base", "prompt": "x", "seed": "s"}, "seed"),
            ({"model": "base", "prompt": "x", "logprobs": 21}, "logprobs"),
            ({"model": "base", "prompt": "x", "stream": "yes"}, "stream"),
            ({"model": "base", "prompt": "x", "echo": True}, "echo"),
            ({"model": "base", "prompt": "x", "max_tokens": 100000}, "max_tokens"),
            ({"model": "base", "prompt": "x " * 2000, "max_tokens": 1}, "prompt"),
            ({"model": "base", "prompt": "x", "temprature": 0}, "temprature"),
        ]
        for body, param in cases:
            status, r = self.d.json("POST", "/v1/completions", body)
            self.error(status, r, 400, param)
        status, r = self.d.json("POST", "/v1/chat/completions",
                                {"model": "base", "messages": [{"role": "robot", "content": "x"}]})
        self.assertIn("messages[0].role", self.error(status, r, 400, "messages")["message"])
        status, r = self.d.json("POST", "/v1/chat/completions", {"model": "base", "messages": "hi"})
        self.error(status, r, 400, "messages")
        status, _, data = self.d.request("POST", "/v1/completions", "{not json", {"Content-Type": "application/json"})
        self.assertEqual(status, 400, data)

    def test_prefix_slots_count_against_the_context(self):
        k = self.complete("base", "Hello", max_tokens=1)["usage"]["prompt_tokens"]
        ctx = json.loads(read(os.path.join(MODEL, "config.json"), "r"))["max_position_embeddings"]
        r = self.complete("base", "Hello", max_tokens=ctx - k, temperature=0)
        self.assertEqual(r["usage"]["total_tokens"], k + r["usage"]["completion_tokens"])
        # hlpt-causal puts 4 virtual tokens before the prompt: the same request no longer fits.
        status, r = self.d.json("POST", "/v1/completions", {"model": "causal", "prompt": "Hello", "max_tokens": ctx - k})
        self.assertIn("context", self.error(status, r, 400, "max_tokens")["message"])
        self.complete("causal", "Hello", max_tokens=ctx - k - 4)

    # ---- models and adapters ------------------------------------------------------------------

    def test_models(self):
        status, r = self.d.json("GET", "/v1/models")
        self.assertEqual(status, 200, r)
        self.assertEqual(r["object"], "list")
        by_id = {m["id"]: m for m in r["data"]}
        self.assertEqual(by_id[BASE]["parent"], None)
        for name in ("causal", "peft-qv"):
            m = by_id[name]
            self.assertEqual((m["object"], m["owned_by"], m["parent"]), ("model", "hlpt", BASE))
            self.assertIsInstance(m["created"], int)

    def test_adapter_object_and_list(self):
        status, a = self.d.json("GET", "/v1/adapters/causal")
        self.assertEqual(status, 200, a)
        for key in ("id", "name", "created_at", "bytes", "base_hash", "job_id", "checkpoint_id", "config"):
            self.assertIn(key, a)
        self.assertTrue(a["id"].startswith("ad-"))
        self.assertEqual(a["bytes"], len(adapter_files("hlpt-causal")[1]))
        self.assertEqual(a["config"]["peft_type"], "HLPT")
        self.assertEqual(self.d.json("GET", "/v1/adapters/" + a["id"]), (200, a))
        status, page = self.d.json("GET", "/v1/adapters?limit=1")
        self.assertEqual(status, 200, page)
        self.assertEqual((page["object"], len(page["data"])), ("list", 1))
        seen = [page["data"][0]["id"]]
        while page["has_more"]:
            status, page = self.d.json("GET", "/v1/adapters?limit=1&after=" + seen[-1])
            seen += [x["id"] for x in page["data"]]
        self.assertIn(self.hlpt_ad["id"], seen)
        self.assertIn(self.peft_ad["id"], seen)
        self.assertEqual(len(seen), len(set(seen)))
        status, r = self.d.json("GET", "/v1/adapters/ad-nope")
        self.error(status, r, 404, "id")
        status, r = self.d.json("GET", "/v1/adapters?limit=0")
        self.error(status, r, 400, "limit")

    def test_import_errors(self):
        cfg, w = adapter_files("hlpt-causal")
        status, r = self.import_multipart("causal", cfg, w)
        self.error(status, r, 409, "name")
        status, r = self.import_multipart("base", cfg, w)
        self.error(status, r, 409, "name")
        status, r = self.import_multipart("bad name!", cfg, w)
        self.error(status, r, 400, "name")
        status, r = self.import_multipart("trunc", cfg, w[:len(w) // 2])
        self.error(status, r, 400, "weights")
        # A config whose rank does not fit the weights: the tensor is named.
        c = json.loads(cfg)
        c["r"] = 8
        status, r = self.import_multipart("r8", json.dumps(c), w)
        e = self.error(status, r, 422, "weights")
        self.assertRegex(e["message"], r"lora_[AB]")
        status, r = self.import_multipart("nocfg", "{", w)
        self.error(status, r, 400, "config")
        status, r = self.d.json("POST", "/v1/adapters", {"name": "b64", "config": json.loads(cfg),
                                                          "weights_base64": "***"})
        self.error(status, r, 400, "weights_base64")
        # Nothing of these was stored.
        names = {m["id"] for m in self.d.json("GET", "/v1/models")[1]["data"]}
        self.assertFalse(names & {"trunc", "r8", "nocfg", "b64", "bad name!"})

    def test_export_import_round_trip(self):
        for name, fixture in (("causal", "hlpt-causal"), ("peft-qv", "peft-lora-qv")):
            files = {}
            for f in ("adapter_config.json", "adapter_model.safetensors"):
                status, headers, data = self.d.request("GET", "/v1/adapters/%s/files/%s" % (name, f))
                self.assertEqual(status, 200, data)
                files[f] = data
            self.assertEqual(files["adapter_model.safetensors"], adapter_files(fixture)[1])
            cfg = json.loads(files["adapter_config.json"])
            if name == "peft-qv":
                self.assertEqual(cfg["peft_type"], "LORA")  # PEFT loads the directory as it is
            with tempfile.TemporaryDirectory() as tmp:
                for f, data in files.items():
                    with open(os.path.join(tmp, f), "wb") as out:
                        out.write(data)
                # The exported directory is what `hlpt --adapter` loads ...
                self.assertEqual(offline("Hello", tmp), offline("Hello", os.path.join(FIXTURES, fixture)))
            # ... and what the daemon imports again, serving the same text.
            status, again = self.import_multipart(name + "-again", files["adapter_config.json"].decode(),
                                                  files["adapter_model.safetensors"])
            self.assertEqual(status, 200, again)
            self.assertEqual(self.greedy(name + "-again", "Hello"), self.greedy(name, "Hello"))
            status, r = self.d.json("DELETE", "/v1/adapters/" + again["id"])
            self.assertEqual(status, 200, r)
        status, r = self.d.json("GET", "/v1/adapters/causal/files/other.bin")
        self.error(status, r, 404, "name")

    def test_delete(self):
        cfg, w = adapter_files("peft-lora-qv")
        status, a = self.import_multipart(None, cfg, w)  # a generated name
        self.assertEqual(status, 200, a)
        self.assertTrue(a["name"])
        self.greedy(a["name"], "Hello")  # loads it into the cache
        status, r = self.d.json("DELETE", "/v1/adapters/" + a["name"])
        self.assertEqual(status, 200, r)
        self.assertEqual((r["id"], r["deleted"]), (a["id"], True))
        status, r = self.d.json("POST", "/v1/completions", {"model": a["name"], "prompt": "x"})
        self.error(status, r, 404, "model")
        status, r = self.d.json("DELETE", "/v1/adapters/" + a["id"])
        self.error(status, r, 404, "id")
        self.assertNotIn(a["name"], {m["id"] for m in self.d.json("GET", "/v1/models")[1]["data"]})

    # ---- metrics and robustness ---------------------------------------------------------------

    def test_metrics(self):
        self.greedy("peft-qv", "Hello", 3)
        status, headers, data = self.d.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"), headers)
        samples = {}
        typed = set()
        for line in data.decode().splitlines():
            if line.startswith("# TYPE "):
                typed.add(line.split()[2])
                continue
            if line.startswith("#"):
                continue
            m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)', line)
            self.assertIsNotNone(m, line)
            name = m.group(1)
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            self.assertTrue(name in typed or family in typed, line)
            samples[name + (m.group(2) or "")] = float(m.group(3))
        self.assertGreaterEqual(samples['hlpt_requests_total{endpoint="completions",adapter="peft-qv"}'], 1)
        self.assertGreaterEqual(samples['hlpt_generated_tokens_total{endpoint="completions",adapter="peft-qv"}'], 3)
        self.assertGreaterEqual(samples["hlpt_time_to_first_token_seconds_count"], 1)
        self.assertEqual(samples['hlpt_time_to_first_token_seconds_bucket{le="+Inf"}'],
                         samples["hlpt_time_to_first_token_seconds_count"])
        for g in ("hlpt_queue_depth", "hlpt_batch_size", "hlpt_adapters_resident", "hlpt_adapter_bytes",
                  "hlpt_adapter_loads_total", "hlpt_adapter_evictions_total", "hlpt_running_jobs"):
            self.assertIn(g, samples)
        self.assertGreaterEqual(samples["hlpt_adapter_loads_total"], 1)

    def test_client_leaving_a_stream(self):
        body = json.dumps(dict(model="causal", prompt="Hello", max_tokens=400, ignore_eos=True, stream=True))
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
            conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            resp.fp.readline()  # the first event has begun
            conn.close()
        # The daemon goes on serving, and the abandoned generations end.
        self.assertEqual(self.greedy("base", "Hello"), offline("Hello"))
        status, _, data = self.d.request("GET", "/metrics")
        self.assertIn("hlpt_queue_depth 0", data.decode())


@unittest.skipUnless(PG_URL, PG_SKIP)
class ServingTestOnPostgres(ServingTest):
    """ServingTest with the store in PostgreSQL: adapters imported, listed, served (the inference
    thread's own store connection) and deleted there."""

    pg = True


class DtypeTest(unittest.TestCase):
    """--dtype (or HLPTD_DTYPE): a bad value stops the start with a message naming the option; each
    dtype serves, says in its log which it runs, and decodes as `hlpt generate` does with it."""

    def daemon(self, args=(), env=None):
        d = Daemon(args=args, env=env)
        self.addCleanup(d.cleanup)
        return d

    def test_bad_dtype_refused(self):
        for args, env, source in ((["--dtype", "bogus"], None, "(from --dtype)"),
                                  ([], {"HLPTD_DTYPE": "fp16"}, "(from HLPTD_DTYPE)")):
            with self.subTest(source=source):
                d = self.daemon(args, env)
                with self.assertRaises(RuntimeError):
                    d.start(timeout=10)
                self.assertEqual(d.proc.returncode, 2)
                self.assertIn("option --dtype", d.log())
                self.assertIn(source, d.log())
                self.assertFalse(os.path.exists(os.path.join(d.data_dir, "hlptd.port")))

    def check_serves(self, d, dtype):
        d.start()
        self.assertIn("of %s weights" % dtype, d.log())
        self.assertIn("products %s:" % dtype, d.log())
        status, r = d.json("POST", "/v1/completions", dict(model="base", prompt="Hello", max_tokens=12,
                                                           temperature=0, ignore_eos=True), timeout=30)
        self.assertEqual(status, 200, r)
        self.assertEqual(r["choices"][0]["text"], offline("Hello", dtype=dtype))
        self.assertEqual(d.stop(), 0, d.log()[-4000:])

    def test_bf16(self):
        d = self.daemon(["--dtype", "bf16", "--threads", "1"])
        if not cpu_has_bf16():
            # A clean refusal at startup, naming what the CPU lacks.
            with self.assertRaises(RuntimeError):
                d.start(timeout=10)
            self.assertEqual(d.proc.returncode, 1)
            self.assertIn("bf16", d.log())
            self.skipTest("skipped (this CPU has no AVX512-BF16 or AMX: bf16 refused as it should be)")
        self.check_serves(d, "bf16")
        self.assertIn("(--dtype bf16)", d.log())

    def test_f32_from_the_environment(self):
        d = self.daemon(env={"HLPTD_DTYPE": "f32"})
        self.check_serves(d, "f32")
        self.assertIn("(--dtype f32)", d.log())

    def test_default_is_auto(self):
        d = self.daemon()
        self.check_serves(d, "bf16" if cpu_has_bf16() else "f32")
        self.assertIn("(--dtype auto)", d.log())


if __name__ == "__main__":
    unittest.main()
