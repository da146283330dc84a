"""The OpenAI-compatible surface of the real hlptd over HTTP (docs/rest.md): event paging by id,
newest first; models retrieve and delete; OpenAI's `supervised` method; immediate cancel and pause;
file deletion once no job needs the file; job fields, metadata and the results file; checkpoints as
models; prompt arrays, chat content parts and tool messages; /v1/responses. Python 3 standard
library only; the fixture model (tests/fixtures/llama2-mha-f32) trains and generates.

Every test runs again in OpenAITestOnPostgres, with the store in PostgreSQL (--store; see hlptd.py).
"""
import base64
import json
import os
import sys
import time
import unittest
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hlptd import PG_SKIP, PG_URL, Daemon, wait_for  # noqa: E402

JOBS = "/v1/fine_tuning/jobs"
TERMINAL = ("succeeded", "failed", "cancelled")
TRAIN = "".join(json.dumps({"text": "the quick brown fox jumps over the lazy dog %d times" % i}) + "\n"
                for i in range(16))
VALID = "".join(json.dumps({"text": "a lazy dog sleeps %d hours" % i}) + "\n" for i in range(4))
SHORT_HP = {"n_epochs": 1, "batch_size": 2, "max_steps": 6, "save_every": 2, "warmup_steps": 0, "max_length": 32}
LONG_HP = {"n_epochs": 1000, "batch_size": 2, "max_steps": 8000, "save_every": 50, "max_length": 32}
LORA = {"type": "lora", "lora": {"r": 2}}




class OpenAITest(unittest.TestCase):
    pg = False

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(pg=cls.pg).start()
        status, f = cls.d.upload("train.jsonl", TRAIN)
        assert status == 200, f
        cls.train = f["id"]
        status, f = cls.d.upload("valid.jsonl", VALID)
        assert status == 200, f
        cls.valid = f["id"]
        # One finished job shared by the tests that only read.
        cls.done = cls.create(training_file=cls.train, validation_file=cls.valid, method=LORA,
                              hyperparameters=SHORT_HP, suffix="shared", metadata={"team": "a", "run": "1"})
        cls.done = cls.wait_job(cls.done["id"], "succeeded")

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0, "hlptd exited with %s" % code

    @classmethod
    def create(cls, expect=200, **body):
        status, job = cls.d.json("POST", JOBS, body)
        if status != expect:
            raise AssertionError("create: %d %s" % (status, job))
        return job

    @classmethod
    def job(cls, job_id):
        status, job = cls.d.json("GET", "%s/%s" % (JOBS, job_id))
        assert status == 200, job
        return job

    @classmethod
    def wait_job(cls, job_id, statuses, timeout=120):
        statuses = (statuses,) if isinstance(statuses, str) else statuses

        def check():
            j = cls.job(job_id)
            if j["status"] in statuses:
                return j
            if j["status"] in TERMINAL:
                raise AssertionError("job %s is %s: %s" % (job_id, j["status"], j["error"]))
            return None
        return wait_for(check, timeout, "job %s to be %s" % (job_id, statuses))

    def error(self, status, body, want_status, param=None):
        self.assertEqual(status, want_status, body)
        self.assertIn("error", body)
        if param is not None:
            self.assertEqual(body["error"]["param"], param, body)
        return body["error"]

    # ---- events --------------------------------------------------------------------------------

    def test_events_page_by_id_newest_first(self):
        job_id = self.done["id"]
        status, full = self.d.json("GET", "%s/%s/events?limit=100" % (JOBS, job_id))
        self.assertEqual(status, 200)
        seqs = [e["seq"] for e in full["data"]]
        self.assertEqual(seqs, sorted(seqs, reverse=True), "newest first")
        self.assertGreater(len(seqs), 4)
        got, after, pages = [], None, 0
        while True:
            path = "%s/%s/events?limit=3" % (JOBS, job_id) + ("&after=" + after if after else "")
            status, page = self.d.json("GET", path)
            self.assertEqual(status, 200, page)
            got += page["data"]
            pages += 1
            self.assertLess(pages, 100, "paging never ends")
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        self.assertEqual([e["id"] for e in got], [e["id"] for e in full["data"]])
        self.error(*self.d.json("GET", "%s/%s/events?after=ftevent-nope" % (JOBS, job_id)), 404, "after")
        self.error(*self.d.json("GET", "%s/%s/events?limit=0" % (JOBS, job_id)), 400, "limit")


    # ---- models --------------------------------------------------------------------------------

    def test_models_retrieve_and_delete(self):
        status, page = self.d.json("GET", "/v1/models")
        self.assertEqual(status, 200)
        ids = [m["id"] for m in page["data"]]
        base = page["data"][0]
        self.assertIsNone(base["parent"])
        self.assertGreater(base["created"], 1e9, "the base's created is a real time")
        for model_id in ids:
            status, m = self.d.json("GET", "/v1/models/" + quote(model_id, safe=""))
            self.assertEqual(status, 200, m)
            self.assertEqual(m["id"], model_id)
            self.assertEqual(m["object"], "model")
        self.assertIn(self.done["fine_tuned_model"], ids)
        status, m = self.d.json("GET", "/v1/models/base")
        self.assertEqual((status, m["id"]), (200, base["id"]))
        self.error(*self.d.json("GET", "/v1/models/ft:nope"), 404, "model")
        err = self.error(*self.d.json("DELETE", "/v1/models/" + base["id"]), 403, "model")
        self.assertIn("base", err["message"])
        # A job of its own, so that deleting its model leaves the shared one.
        job = self.create(training_file=self.train, method=LORA, hyperparameters=SHORT_HP)
        job = self.wait_job(job["id"], "succeeded")
        name = job["fine_tuned_model"]
        status, body = self.d.json("DELETE", "/v1/models/" + quote(name, safe=""))
        self.assertEqual(status, 200, body)
        self.assertEqual(body, {"id": name, "object": "model", "deleted": True})
        self.error(*self.d.json("GET", "/v1/models/" + quote(name, safe="")), 404, "model")
        self.error(*self.d.json("DELETE", "/v1/models/" + quote(name, safe="")), 404, "model")
        self.error(*self.d.json("POST", "/v1/completions", {"model": name, "prompt": "a"}), 404, "model")


    # ---- methods -------------------------------------------------------------------------------

    def test_supervised_method(self):
        hp = dict(SHORT_HP, n_epochs=2, learning_rate_multiplier=2)
        job = self.create(training_file=self.train, method={"type": "supervised", "supervised": {"hyperparameters": hp}})
        self.assertEqual(job["method"]["type"], "supervised")
        self.assertEqual(job["method"]["supervised"]["hyperparameters"], hp)
        self.assertEqual(job["method"]["hlpt_method"]["type"], "hlpt", "supervised trains the default method")
        self.assertEqual(job["hyperparameters"], hp)
        job = self.wait_job(job["id"], "succeeded")
        status, page = self.d.json("GET", "%s/%s/metrics" % (JOBS, job["id"]))
        self.assertEqual(page["data"][-1]["step"], SHORT_HP["max_steps"], "the nested hyperparameters were applied")
        # Without settings at all; and hlpt's own types keep working, hyperparameters nested or not.
        self.create(training_file=self.train, method={"type": "supervised"}, hyperparameters=SHORT_HP)
        self.create(training_file=self.train, method={"type": "lora", "lora": {"r": 2, "hyperparameters": SHORT_HP}})
        bad = [
            ({"type": "dpo", "dpo": {}}, "method.type", 400, "dpo"),
            ({"type": "reinforcement"}, "method.type", 400, "reinforcement"),
            ({"type": "sft"}, "method.type", 400, "supervised"),
            ({"type": "supervised", "supervised": {"r": 4}}, "method.supervised.r", 400, "hyperparameters"),
            ({"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}},
             "method.supervised.hyperparameters.n_epochs", 400, "n_epochs"),
            ({"type": "supervised", "supervised": {"hyperparameters": []}}, "method.supervised.hyperparameters", 400, "object"),
            ({"type": "supervised", "supervised": 3}, "method.supervised", 400, "object"),
        ]
        for method, param, code, word in bad:
            status, body = self.d.json("POST", JOBS, {"training_file": self.train, "method": method})
            err = self.error(status, body, code, param)
            self.assertIn(word, err["message"])
        status, body = self.d.json("POST", JOBS, {"training_file": self.train, "hyperparameters": SHORT_HP,
                                                  "method": {"type": "supervised", "supervised": {"hyperparameters": SHORT_HP}}})
        self.error(status, body, 400, "method.supervised.hyperparameters")
        # Jobs that were created here and not waited for are cancelled so that the queue stays short.
        self.cancel_unfinished()

    def cancel_unfinished(self):
        status, page = self.d.json("GET", JOBS + "?limit=100")
        for j in page["data"]:
            if j["status"] not in TERMINAL:
                self.d.json("POST", "%s/%s/cancel" % (JOBS, j["id"]))


    # ---- lifecycle -----------------------------------------------------------------------------

    def workers(self):
        out = []
        for pid in os.listdir("/proc"):
            try:
                with open("/proc/%s/stat" % pid) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid == self.d.proc.pid:
                    out.append(int(pid))
            except (OSError, ValueError, IndexError):
                pass
        return out

    def test_cancel_and_pause_answer_the_new_state(self):
        job = self.create(training_file=self.train, method=LORA, hyperparameters=LONG_HP)
        wait_for(lambda: self.job(job["id"])["progress"]["step"] >= 1, 30, "a step")
        status, resp = self.d.json("POST", "%s/%s/pause" % (JOBS, job["id"]))
        self.assertEqual((status, resp["status"]), (200, "paused"), resp)
        self.error(*self.d.json("POST", "%s/%s/pause" % (JOBS, job["id"])), 409)
        # Resumed at once, perhaps before the worker has stopped: the job waits for it, then runs on.
        status, resp = self.d.json("POST", "%s/%s/resume" % (JOBS, job["id"]))
        self.assertEqual((status, resp["status"]), (200, "queued"), resp)
        self.error(*self.d.json("POST", "%s/%s/resume" % (JOBS, job["id"])), 409)
        wait_for(lambda: self.job(job["id"])["status"] == "running", 30, "the job to run again")
        status, resp = self.d.json("POST", "%s/%s/cancel" % (JOBS, job["id"]))
        self.assertEqual((status, resp["status"]), (200, "cancelled"), resp)
        err = self.error(*self.d.json("POST", "%s/%s/cancel" % (JOBS, job["id"])), 409)
        self.assertIn("cancelled", err["message"])
        wait_for(lambda: not self.workers(), 20, "the worker to be gone")
        time.sleep(0.1)
        self.assertEqual(self.job(job["id"])["status"], "cancelled")
        msgs = [e["message"] for e in self.d.json("GET", "%s/%s/events?limit=100" % (JOBS, job["id"]))[1]["data"]]
        self.assertEqual(msgs.count("Job cancelled"), 1, msgs)
        self.assertEqual(self.d.json("GET", "/health")[0], 200)

    # ---- files ---------------------------------------------------------------------------------

    def test_file_delete_after_finished_jobs(self):
        status, f = self.d.upload("once.jsonl", TRAIN)
        self.assertEqual(status, 200, f)
        job = self.create(training_file=f["id"], method=LORA, hyperparameters=LONG_HP)
        wait_for(lambda: self.job(job["id"])["status"] == "running", 30, "the job to run")
        err = self.error(*self.d.json("DELETE", "/v1/files/" + f["id"]), 409, "id")
        self.assertIn("job", err["message"])
        self.d.json("POST", "%s/%s/pause" % (JOBS, job["id"]))
        self.error(*self.d.json("DELETE", "/v1/files/" + f["id"]), 409, "id")
        self.d.json("POST", "%s/%s/cancel" % (JOBS, job["id"]))
        wait_for(lambda: not self.workers(), 20, "the worker to be gone")
        status, body = self.d.json("DELETE", "/v1/files/" + f["id"])
        self.assertEqual((status, body), (200, {"id": f["id"], "object": "file", "deleted": True}))
        self.error(*self.d.json("GET", "/v1/files/" + f["id"]), 404, "id")
        self.assertEqual(self.d.request("GET", "/v1/files/%s/content" % f["id"])[0], 404)
        self.error(*self.d.json("DELETE", "/v1/files/" + f["id"]), 404, "id")
        self.assertNotIn(f["id"], [x["id"] for x in self.d.json("GET", "/v1/files")[1]["data"]])
        # The job keeps its figures and names the file; the worker read the file's blob where it was
        # and made no copy of it (no job directory).
        j = self.job(job["id"])
        self.assertEqual(j["training_file"], f["id"])
        self.assertEqual(self.d.json("GET", "%s/%s/metrics" % (JOBS, job["id"]))[0], 200)
        self.assertFalse(os.path.exists(os.path.join(self.d.data_dir, "jobs")))
        # A job cannot be created from a deleted file.
        self.error(*self.d.json("POST", JOBS, {"training_file": f["id"]}), 404, "training_file")


    # ---- job fields ----------------------------------------------------------------------------

    def test_job_fields_metadata_and_results(self):
        j = self.job(self.done["id"])
        self.assertEqual(j["organization_id"], "org-hlpt")
        self.assertEqual(j["user_provided_suffix"], "shared")
        self.assertEqual(j["metadata"], {"team": "a", "run": "1"})
        self.assertEqual(j["integrations"], [])
        self.assertIsNone(j["estimated_finish"])
        self.assertGreater(j["trained_tokens"], 0)
        self.assertEqual(len(j["result_files"]), 1)
        status, f = self.d.json("GET", "/v1/files/" + j["result_files"][0])
        self.assertEqual(status, 200, f)
        self.assertEqual(f["purpose"], "fine-tune-results")
        status, _, csv = self.d.request("GET", "/v1/files/%s/content" % f["id"])
        lines = csv.decode().splitlines()
        self.assertEqual(lines[0], "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy")
        self.assertEqual(len(lines) - 1, SHORT_HP["max_steps"])
        self.assertEqual(lines[-1].split(",")[0], str(SHORT_HP["max_steps"]))
        # Filters as the SDK sends them: metadata[key]=value, all must match.
        def listed(query):
            status, page = self.d.json("GET", JOBS + "?limit=100&" + query)
            self.assertEqual(status, 200, page)
            return [x["id"] for x in page["data"]]
        self.assertIn(j["id"], listed("metadata%5Bteam%5D=a"))
        self.assertIn(j["id"], listed("metadata[team]=a&metadata[run]=1"))
        self.assertNotIn(j["id"], listed("metadata[team]=b"))
        self.assertNotIn(j["id"], listed("metadata[nope]=a"))
        self.assertEqual(listed("metadata[team]=a"), [j["id"]])
        # Bad metadata and integrations are refused naming the field.
        for body, param in (({"metadata": []}, "metadata"), ({"metadata": {"k": 1}}, "metadata.k"),
                            ({"metadata": {"k%d" % i: "v" for i in range(17)}}, "metadata"),
                            ({"metadata": {"k": "v" * 513}}, "metadata.k"),
                            ({"integrations": [{"type": "wandb", "wandb": {"project": "p"}}]}, "integrations"),
                            ({"integrations": {}}, "integrations")):
            self.error(*self.d.json("POST", JOBS, dict(body, training_file=self.train)), 400, param)
        job = self.create(training_file=self.train, integrations=[], metadata=None, method=LORA, hyperparameters=SHORT_HP)
        self.assertIsNone(job["metadata"])
        self.assertIsNone(job["trained_tokens"])
        self.assertEqual(job["result_files"], [])
        self.wait_job(job["id"], "succeeded")


    # ---- checkpoints ---------------------------------------------------------------------------

    def test_checkpoints_page_and_serve(self):
        job_id = self.done["id"]
        status, page = self.d.json("GET", "%s/%s/checkpoints?limit=100" % (JOBS, job_id))
        self.assertEqual(status, 200, page)
        steps = [c["step_number"] for c in page["data"]]
        self.assertEqual(steps, [6, 4, 2], "newest first")
        c = page["data"][0]
        self.assertEqual(set(c["metrics"]), {"step", "train_loss", "train_mean_token_accuracy", "valid_loss",
                                             "valid_mean_token_accuracy", "full_valid_loss",
                                             "full_valid_mean_token_accuracy"})
        self.assertEqual(c["metrics"]["step"], 6)
        self.assertIsInstance(c["metrics"]["valid_loss"], float)
        self.assertEqual(c["fine_tuned_model_checkpoint"], self.done["fine_tuned_model"] + ":ckpt-step-6")
        status, one = self.d.json("GET", "%s/%s/checkpoints?limit=1" % (JOBS, job_id))
        self.assertEqual((len(one["data"]), one["has_more"]), (1, True))
        status, rest = self.d.json("GET", "%s/%s/checkpoints?limit=5&after=%s" % (JOBS, job_id, one["data"][0]["id"]))
        self.assertEqual([x["step_number"] for x in rest["data"]], [4, 2])
        self.assertFalse(rest["has_more"])
        self.error(*self.d.json("GET", "%s/%s/checkpoints?limit=101" % (JOBS, job_id)), 400, "limit")
        self.error(*self.d.json("GET", "%s/%s/checkpoints?after=ftckpt-x" % (JOBS, job_id)), 404, "after")
        # A checkpoint is a model: retrieve it, and generate with it (its adapter at that step).
        model = page["data"][-1]["fine_tuned_model_checkpoint"]
        status, m = self.d.json("GET", "/v1/models/" + quote(model, safe=""))
        self.assertEqual((status, m["id"]), (200, model), m)
        for path, body in (("/v1/completions", {"prompt": "the quick"}),
                           ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})):
            status, out = self.d.json("POST", path, dict(body, model=model, max_tokens=3, temperature=0))
            self.assertEqual(status, 200, out)
            self.assertEqual(out["model"], model)
        # Served once, the checkpoint is an adapter named by its model id (docs/rest.md).
        status, models = self.d.json("GET", "/v1/models")
        self.assertIn(model, [m["id"] for m in models["data"]])
        self.error(*self.d.json("GET", "/v1/models/" + quote(self.done["fine_tuned_model"] + ":ckpt-step-5", safe="")),
                   404, "model")
        self.error(*self.d.json("POST", "/v1/completions", {"model": "ft:x:y:z:ckpt-step-2", "prompt": "a"}), 404, "model")


    # ---- chat shapes ---------------------------------------------------------------------------

    TOOL_CHAT = [
        {"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "5C"},
    ]

    def test_chat_openai_shapes(self):
        def chat(**body):
            return self.d.json("POST", "/v1/chat/completions", dict({"model": "base", "max_tokens": 4, "temperature": 0}, **body))
        status, out = chat(messages=self.TOOL_CHAT, store=False, metadata={"a": "b"}, service_tier="auto",
                           user="u1", parallel_tool_calls=True, tools=[], tool_choice="none",
                           response_format={"type": "text"}, logprobs=True, top_logprobs=2)
        self.assertEqual(status, 200, out)
        msg = out["choices"][0]["message"]
        self.assertIsNone(msg["refusal"])
        for e in out["choices"][0]["logprobs"]["content"]:
            self.assertEqual(bytes(e["bytes"]).decode("utf-8", "replace"), e["token"])
            for a in e["top_logprobs"]:
                self.assertIsInstance(a["bytes"], list)
        # Content parts render as the plain string does: the same greedy text.
        status, plain = chat(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
        status, parts = chat(messages=[{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                                       {"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
        self.assertEqual(status, 200, parts)
        self.assertEqual(plain["choices"][0]["message"]["content"], parts["choices"][0]["message"]["content"])
        self.assertEqual(plain["usage"]["prompt_tokens"], parts["usage"]["prompt_tokens"])
        bad = [
            ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
            ({"tool_choice": "required"}, "tool_choice"),
            ({"response_format": {"type": "json_object"}}, "response_format"),
            ({"response_format": "json"}, "response_format"),
            ({"store": "yes"}, "store"),
            ({"metadata": {"a": 1}}, "metadata"),
            ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
            ({"messages": [{"role": "robot", "content": "x"}]}, "messages"),
        ]
        for body, param in bad:
            body = dict({"messages": [{"role": "user", "content": "x"}]}, **body)
            err = self.error(*chat(**body), 400, param)
            self.assertTrue(param in err["message"] or "role" in err["message"] or "type" in err["message"], err)
        # Chat's fields are not completions'.
        self.error(*self.d.json("POST", "/v1/completions", {"model": "base", "prompt": "a", "store": True}), 400, "store")

    def test_training_file_with_openai_shapes(self):
        line = {"messages": self.TOOL_CHAT + [{"role": "assistant", "content": [{"type": "text", "text": "Cold."}]}]}
        status, f = self.d.upload("tools.jsonl", "".join(json.dumps(line) + "\n" for _ in range(4)))
        self.assertEqual(status, 200, f)
        self.assertEqual(f["stats"]["format"], "messages")
        job = self.create(training_file=f["id"], method=LORA, hyperparameters=dict(SHORT_HP, max_length=400))
        self.wait_job(job["id"], "succeeded")
        bad = {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}, {"role": "assistant", "content": "x"}]}
        status, body = self.d.upload("bad.jsonl", json.dumps(bad) + "\n")
        err = self.error(status, body, 400, "file")
        self.assertIn("messages[0].content[0].type", err["message"])


    # ---- completions ---------------------------------------------------------------------------

    def complete(self, **body):
        return self.d.json("POST", "/v1/completions", dict({"model": "base", "max_tokens": 4, "temperature": 0}, **body))

    def test_prompt_arrays(self):
        one = {p: self.complete(prompt=p)[1] for p in ("the quick", "a lazy dog")}
        status, out = self.complete(prompt=["the quick", "a lazy dog"], n=2, seed=3, temperature=1)
        self.assertEqual(status, 200, out)
        self.assertEqual([c["index"] for c in out["choices"]], [0, 1, 2, 3])
        # Choice k of each prompt samples with seed + k whatever the batch: prompt-by-prompt requests agree.
        for i, p in enumerate(("the quick", "a lazy dog")):
            status, single = self.complete(prompt=p, n=2, seed=3, temperature=1)
            self.assertEqual([c["text"] for c in single["choices"]], [c["text"] for c in out["choices"][2 * i:2 * i + 2]])
        self.assertEqual(out["usage"]["prompt_tokens"], sum(one[p]["usage"]["prompt_tokens"] for p in one))
        # Token ids are the exact input: one prompt each, counted as given.
        status, ids_out = self.complete(prompt=[[1, 5, 6], [1, 7]])
        self.assertEqual(status, 200, ids_out)
        self.assertEqual(len(ids_out["choices"]), 2)
        self.assertEqual(ids_out["usage"]["prompt_tokens"], 5)
        status, flat = self.complete(prompt=[1, 5, 6])
        self.assertEqual(flat["choices"][0]["text"], ids_out["choices"][0]["text"])
        # Streaming numbers the choices the same way.
        status, _, raw = self.d.request("POST", "/v1/completions", json.dumps(
            {"model": "base", "prompt": ["a", "b"], "max_tokens": 2, "stream": True}), {"Content-Type": "application/json"})
        idx = {json.loads(l[6:])["choices"][0]["index"] for l in raw.decode().splitlines()
               if l.startswith("data: {")}
        self.assertEqual(idx, {0, 1})
        for prompt in ([], [1, -1], ["a", 3], [[1], "a", 2.5], ["x"] * 17, [[10 ** 7]]):
            self.error(*self.complete(prompt=prompt), 400, "prompt")
        self.error(*self.complete(prompt=["x"] * 9, n=8), 400, "n")


    # ---- responses -----------------------------------------------------------------------------

    def test_responses(self):
        def respond(**body):
            return self.d.json("POST", "/v1/responses", dict({"model": "base", "temperature": 0}, **body))
        status, r = respond(input="the quick", instructions="Be brief.", max_output_tokens=5, metadata={"k": "v"})
        self.assertEqual(status, 200, r)
        self.assertEqual((r["object"], r["status"]), ("response", "incomplete"))
        self.assertEqual(r["incomplete_details"], {"reason": "max_output_tokens"})
        self.assertTrue(r["id"].startswith("resp_"))
        self.assertEqual(r["instructions"], "Be brief.")
        self.assertEqual(r["max_output_tokens"], 5)
        self.assertEqual(r["metadata"], {"k": "v"})
        item = r["output"][0]
        self.assertEqual((item["type"], item["role"], item["content"][0]["type"]), ("message", "assistant", "output_text"))
        self.assertEqual(r["usage"]["output_tokens"], 5)
        self.assertEqual(r["usage"]["total_tokens"], r["usage"]["input_tokens"] + 5)
        # The same conversation through chat gives the same text.
        status, chat = self.d.json("POST", "/v1/chat/completions", {
            "model": "base", "temperature": 0, "max_tokens": 5,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "the quick"}]})
        self.assertEqual(item["content"][0]["text"], chat["choices"][0]["message"]["content"])
        self.assertEqual(r["usage"]["input_tokens"], chat["usage"]["prompt_tokens"])
        # Message items, content parts, and an adapter through `model`.
        status, r2 = respond(model=self.done["fine_tuned_model"], max_output_tokens=3,
                             input=[{"role": "developer", "content": "Be brief."},
                                    {"type": "message", "role": "user",
                                     "content": [{"type": "input_text", "text": "the quick"}]}])
        self.assertEqual(status, 200, r2)
        self.assertEqual(r2["model"], self.done["fine_tuned_model"])
        # Streaming: typed events in order, the deltas adding up to the text.
        status, hdr, raw = self.d.request("POST", "/v1/responses", json.dumps(
            {"model": "base", "input": "the quick", "instructions": "Be brief.", "max_output_tokens": 5,
             "temperature": 0, "stream": True}), {"Content-Type": "application/json"})
        self.assertEqual(status, 200)
        self.assertTrue(hdr["content-type"].startswith("text/event-stream"))
        events = []
        for block in raw.decode().split("\n\n"):
            lines = block.strip().splitlines()
            if not lines:
                continue
            self.assertTrue(lines[0].startswith("event: "), block)
            data = json.loads(lines[1][6:])
            self.assertEqual(data["type"], lines[0][7:])
            events.append(data)
        types = [e["type"] for e in events]
        self.assertEqual(types[:4], ["response.created", "response.in_progress", "response.output_item.added",
                                     "response.content_part.added"])
        self.assertEqual(types[-4:], ["response.output_text.done", "response.content_part.done",
                                      "response.output_item.done", "response.incomplete"])
        self.assertEqual([e["sequence_number"] for e in events], list(range(len(events))))
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        self.assertEqual(deltas, item["content"][0]["text"])
        self.assertEqual(events[-1]["response"]["usage"], r["usage"])
        bad = [({"input": 3}, "input"), ({}, "input"), ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
               ({"input": "x", "temperature": 3}, "temperature"), ({"input": "x", "colour": 1}, "colour"),
               ({"input": [{"type": "function_call_output", "output": "x"}]}, "input"),
               ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text"),
               ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
               ({"input": "x", "tools": [{"type": "web_search"}]}, "tools"),
               ({"input": "x", "instructions": 5}, "instructions"),
               ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "input")]
        for body, param in bad:
            self.error(*respond(**body), 400, param)
        self.error(*respond(model="nope", input="x"), 404, "model")


    # ---- adapters from other tools -------------------------------------------------------------

    def test_adapter_config_without_virtual_tokens_loads(self):
        status, rec = self.d.json("GET", "/v1/adapters/" + quote(self.done["fine_tuned_model"], safe=""))
        self.assertEqual(status, 200, rec)
        cfg = rec["config"] if isinstance(rec["config"], dict) else json.loads(rec["config"])
        self.assertEqual(cfg["peft_type"], "HLPT")
        self.assertEqual(cfg["prefix_layers"], [])
        cfg["num_virtual_tokens"] = 0
        status, _, weights = self.d.request("GET", "/v1/adapters/%s/files/adapter_model.safetensors" % rec["id"])
        self.assertEqual(status, 200)
        body = {"name": "no-virtual-tokens", "config": cfg, "weights_base64": base64.b64encode(weights).decode()}
        status, imported = self.d.json("POST", "/v1/adapters", body)
        self.assertEqual(status, 200, imported)
        status, out = self.d.json("POST", "/v1/completions", {"model": "no-virtual-tokens", "prompt": "a", "max_tokens": 2})
        self.assertEqual(status, 200, out)
        # With a prefix layer, 0 virtual tokens is still an error naming the field.
        cfg = dict(cfg, prefix_layers=[0])
        status, body = self.d.json("POST", "/v1/adapters", {"name": "bad", "config": cfg,
                                                           "weights_base64": base64.b64encode(weights).decode()})
        self.assertEqual(status, 400, body)
        self.assertIn("num_virtual_tokens", body["error"]["message"])


@unittest.skipUnless(PG_URL, PG_SKIP)
class OpenAITestOnPostgres(OpenAITest):
    pg = True


if __name__ == "__main__":
    unittest.main()
