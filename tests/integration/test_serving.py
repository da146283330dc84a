"""Serving, as clients meet it: per-request adapters over the OpenAI completions and chat shapes,
concurrent clients on different adapters, streaming, stop strings, seeds, n, logprobs, the adapter
registry (import -> serve -> export -> import), /v1/models, /metrics, and bad requests."""
import json
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hlptd import ROOT, Daemon, multipart  # noqa: E402

FIX = os.path.join(ROOT, "tests", "fixtures")


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Serving(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(args=["--threads", "1"])
        cls.d.start(timeout=30)
        cls.names = {}
        for fixture in ("hlpt-causal", "peft-lora-qv", "hlpt-sequence"):
            st, body = cls.import_dir(os.path.join(FIX, fixture), fixture)
            assert st == 200, body
            cls.names[fixture] = body["name"]

    @classmethod
    def tearDownClass(cls):
        cls.d.kill()
        cls.d.cleanup()

    @classmethod
    def import_dir(cls, path, name):
        body, ctype = multipart({"name": name, "config": read(os.path.join(path, "adapter_config.json"))},
                                {"weights": ("adapter_model.safetensors", read(os.path.join(path, "adapter_model.safetensors")))})
        return cls.d.json("POST", "/v1/adapters", body, {"Content-Type": ctype})

    def complete(self, model, prompt="The quick brown fox", **kw):
        body = dict({"model": model, "prompt": prompt, "max_tokens": 12, "temperature": 0, "ignore_eos": True}, **kw)
        st, j = self.d.json("POST", "/v1/completions", body, timeout=60)
        self.assertEqual(st, 200, j)
        return j

    def test_completion_shape_and_adapters_differ(self):
        j = self.complete("base")
        self.assertEqual(j["object"], "text_completion")
        self.assertTrue(j["id"].startswith("cmpl-"))
        self.assertEqual(j["usage"]["completion_tokens"], 12)
        self.assertEqual(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"] + 12)
        self.assertEqual(j["choices"][0]["finish_reason"], "length")
        texts = {m: self.complete(self.names[m])["choices"][0]["text"] for m in self.names}
        texts["base"] = j["choices"][0]["text"]
        self.assertEqual(len(set(texts.values())), 4, texts)  # every adapter changes the text

    def test_concurrent_clients_on_different_adapters_match_solo(self):
        models = ["base", self.names["hlpt-causal"], self.names["peft-lora-qv"], self.names["hlpt-sequence"]]
        solo = {m: self.complete(m, max_tokens=16)["choices"][0]["text"] for m in models}
        together, errors = {}, []

        def client(m):
            try:
                together[m] = self.complete(m, max_tokens=16)["choices"][0]["text"]
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=client, args=(m,)) for m in models * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse(errors, errors)
        self.assertEqual(together, solo)

    def test_stream_equals_non_stream(self):
        for model in ("base", self.names["hlpt-causal"]):
            whole = self.complete(model, max_tokens=20)["choices"][0]["text"]
            st, headers, raw = self.d.request("POST", "/v1/completions", json.dumps(
                {"model": model, "prompt": "The quick brown fox", "max_tokens": 20, "temperature": 0,
                 "ignore_eos": True, "stream": True}), {"Content-Type": "application/json"}, timeout=60)
            self.assertEqual(st, 200)
            self.assertTrue(headers["content-type"].startswith("text/event-stream"))
            events = [l[5:].strip() for l in raw.decode().split("\n") if l.startswith("data:")]
            self.assertEqual(events[-1], "[DONE]")
            chunks = [json.loads(e) for e in events[:-1]]
            self.assertEqual("".join(c["choices"][0]["text"] for c in chunks), whole)
            self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "length")

    def test_chat(self):
        st, j = self.d.json("POST", "/v1/chat/completions", {
            "model": self.names["hlpt-causal"], "messages": [{"role": "system", "content": "Be brief."},
                                                            {"role": "user", "content": "Hello"}],
            "max_tokens": 8, "temperature": 0}, timeout=60)
        self.assertEqual(st, 200, j)
        self.assertEqual(j["object"], "chat.completion")
        self.assertEqual(j["choices"][0]["message"]["role"], "assistant")
        self.assertIsInstance(j["choices"][0]["message"]["content"], str)
        st, j = self.d.json("POST", "/v1/chat/completions", {"model": "base", "messages": [{"role": "wizard", "content": "x"}]})
        self.assertEqual(st, 400)
        self.assertEqual(j["error"]["param"], "messages")

    def test_stop_seed_n_logprobs(self):
        full = self.complete("base", max_tokens=16)["choices"][0]["text"]
        stop = full[len(full) // 2:len(full) // 2 + 3]
        cut = self.complete("base", max_tokens=16, stop=[stop])["choices"][0]
        self.assertEqual(cut["finish_reason"], "stop")
        self.assertEqual(cut["text"], full[:full.index(stop)])
        a = self.complete("base", temperature=1.0, seed=5)["choices"][0]["text"]
        b = self.complete("base", temperature=1.0, seed=5)["choices"][0]["text"]
        c = self.complete("base", temperature=1.0, seed=6)["choices"][0]["text"]
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)
        j = self.complete("base", temperature=1.0, seed=5, n=3)
        self.assertEqual([ch["index"] for ch in j["choices"]], [0, 1, 2])
        self.assertEqual(j["choices"][0]["text"], a)  # choice i uses seed + i
        self.assertEqual(j["usage"]["completion_tokens"], 36)
        j = self.complete("base", max_tokens=4, logprobs=3)
        lp = j["choices"][0]["logprobs"]
        self.assertEqual(len(lp["tokens"]), 4)
        self.assertTrue(all(v <= 0 for v in lp["token_logprobs"]))
        self.assertTrue(all(len(t) == 3 for t in lp["top_logprobs"]))

    def test_registry_round_trip(self):
        st, j = self.d.json("GET", "/v1/models")
        ids = [m["id"] for m in j["data"]]
        self.assertIn(self.names["hlpt-causal"], ids)
        self.assertEqual([m for m in j["data"] if m["id"] == self.names["peft-lora-qv"]][0]["parent"], "llama2-mha-f32")
        name = self.names["peft-lora-qv"]
        st, cfg = self.d.json("GET", "/v1/adapters/%s/files/adapter_config.json" % name)
        self.assertEqual(st, 200)
        self.assertEqual(cfg["peft_type"], "LORA")  # plain LoRA exports in PEFT's form
        st, _, weights = self.d.request("GET", "/v1/adapters/%s/files/adapter_model.safetensors" % name)
        self.assertEqual(st, 200)
        body, ctype = multipart({"name": "reimported", "config": json.dumps(cfg)},
                                {"weights": ("adapter_model.safetensors", weights)})
        st, j = self.d.json("POST", "/v1/adapters", body, {"Content-Type": ctype})
        self.assertEqual(st, 200, j)
        self.assertEqual(self.complete("reimported")["choices"][0]["text"], self.complete(name)["choices"][0]["text"])
        st, j = self.d.json("POST", "/v1/adapters", body, {"Content-Type": ctype})
        self.assertEqual(st, 409, j)
        st, j = self.d.json("DELETE", "/v1/adapters/reimported")
        self.assertEqual((st, j["deleted"]), (200, True))
        st, j = self.d.json("POST", "/v1/completions", {"model": "reimported", "prompt": "x"})
        self.assertEqual((st, j["error"]["param"]), (404, "model"))

    def test_bad_adapter_import_changes_nothing(self):
        path = os.path.join(FIX, "hlpt-causal")
        cfg = json.loads(read(os.path.join(path, "adapter_config.json")))
        cfg["r"] = 8  # the weights have rank 4
        body, ctype = multipart({"name": "broken", "config": json.dumps(cfg)},
                                {"weights": ("adapter_model.safetensors", read(os.path.join(path, "adapter_model.safetensors")))})
        st, j = self.d.json("POST", "/v1/adapters", body, {"Content-Type": ctype})
        self.assertEqual(st, 422, j)
        self.assertIn("lora_A", j["error"]["message"])
        st, _ = self.d.json("GET", "/v1/adapters/broken")
        self.assertEqual(st, 404)

    def test_bad_requests_name_the_field(self):
        cases = [({"prompt": "x"}, "model"), ({"model": "base"}, "prompt"), ({"model": "base", "prompt": 3}, "prompt"),
                 ({"model": "base", "prompt": "x", "max_tokens": -1}, "max_tokens"),
                 ({"model": "base", "prompt": "x", "max_tokens": "5"}, "max_tokens"),
                 ({"model": "base", "prompt": "x", "temperature": 9}, "temperature"),
                 ({"model": "base", "prompt": "x", "n": 0}, "n"), ({"model": "base", "prompt": "x", "stop": [1]}, "stop"),
                 ({"model": "base", "prompt": "x", "stream": "yes"}, "stream"),
                 ({"model": "base", "prompt": "x", "max_tokens": 100000}, "max_tokens"),
                 ({"model": "base", "prompt": "x", "colour": 1}, "colour")]
        for body, param in cases:
            st, j = self.d.json("POST", "/v1/completions", body)
            self.assertEqual(st, 400, (body, j))
            self.assertEqual(j["error"]["param"], param, (body, j))
        st, j = self.d.json("POST", "/v1/completions", {"model": "no-such", "prompt": "x"})
        self.assertEqual((st, j["error"]["code"]), (404, "model_not_found"))
        st, _, _ = self.d.request("POST", "/v1/completions", "{not json", {"Content-Type": "application/json"})
        self.assertEqual(st, 400)

    def test_metrics(self):
        self.complete(self.names["hlpt-causal"], max_tokens=3)
        st, _, raw = self.d.request("GET", "/metrics")
        self.assertEqual(st, 200)
        text = raw.decode()
        self.assertIn('hlpt_requests_total{endpoint="completions",adapter="%s"}' % self.names["hlpt-causal"], text)
        for name in ("hlpt_time_to_first_token_seconds_bucket", "hlpt_adapters_resident", "hlpt_queue_depth",
                     "hlpt_running_jobs", "hlpt_adapter_bytes"):
            self.assertIn(name, text)
        for line in text.splitlines():  # every sample line is "name{labels} value"
            if line and not line.startswith("#"):
                float(line.rsplit(" ", 1)[1])


if __name__ == "__main__":
    unittest.main()
