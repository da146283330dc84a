"""The hlpt command line as a client of a real hlptd: upload, a job followed to its end, listing,
completions (plain and streamed), adapter export and import, task evaluation, and the daemon's
errors printed as the daemon words them. ClientOnPostgres runs it again with the daemon's store in
PostgreSQL."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hlptd import BUILD, PG_SKIP, PG_URL, ROOT, Daemon  # noqa: E402

HLPT = os.path.join(ROOT, BUILD, "hlpt") if not os.path.isabs(BUILD) else os.path.join(BUILD, "hlpt")
MODEL = os.path.join(ROOT, "tests", "fixtures", "llama2-mha-f32")


class Client(unittest.TestCase):
    pg = False

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(args=["--threads", "1"], pg=cls.pg)
        cls.d.start(timeout=30)
        cls.tmp = tempfile.TemporaryDirectory(prefix="hlpt-client-")
        cls.data = os.path.join(cls.tmp.name, "train.jsonl")
        with open(cls.data, "w") as f:
            for i in range(12):
                f.write(json.dumps({"prompt": "Count: %d" % i, "completion": " %d %d" % (i + 1, i + 2)}) + "\n")

    @classmethod
    def tearDownClass(cls):
        cls.d.kill()
        cls.d.cleanup()
        cls.tmp.cleanup()

    def hlpt(self, *args, ok=True):
        env = dict(os.environ, HLPT_URL="http://127.0.0.1:%d" % self.d.port)
        p = subprocess.run([HLPT] + list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        if ok:
            self.assertEqual(p.returncode, 0, "hlpt %s: %s" % (" ".join(args), p.stderr))
        return p

    def test_job_followed_then_served_exported_imported(self):
        fid = self.hlpt("files", "upload", self.data).stdout.strip()
        self.assertTrue(fid.startswith("file-"), fid)
        p = self.hlpt("jobs", "create", "--data", self.data, "--method", "lora", "--max-steps", "3",
                      "--batch-size", "2", "--suffix", "cli", "--follow")
        model = p.stdout.strip()
        self.assertTrue(model.startswith("ft:llama2-mha-f32:cli:"), p.stdout)
        self.assertIn('"status":"succeeded"', p.stderr.replace(" ", ""))  # progress lines go to stderr
        jobs = json.loads(self.hlpt("jobs", "list").stdout)
        self.assertEqual(jobs["data"][0]["fine_tuned_model"], model)

        text = self.hlpt("complete", "--adapter", model, "--max-tokens", "8", "Count: 3").stdout
        streamed = self.hlpt("complete", "--adapter", model, "--max-tokens", "8", "--stream", "Count: 3").stdout
        self.assertEqual(text, streamed)

        out = os.path.join(self.tmp.name, "exported")
        self.hlpt("adapters", "export", model, out)
        self.assertTrue(os.path.exists(os.path.join(out, "adapter_model.safetensors")))
        with open(os.path.join(out, "adapter_config.json")) as f:
            self.assertEqual(json.load(f)["peft_type"], "LORA")
        offline = subprocess.run([HLPT, "generate", "--model", MODEL, "--adapter", out, "--prompt", "Count: 3",
                                  "--max-tokens", "8"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        self.assertEqual(offline.returncode, 0, offline.stderr)
        imported = json.loads(self.hlpt("adapters", "import", out, "--name", "cli-copy").stdout)
        self.assertEqual(imported["name"], "cli-copy")
        self.assertEqual(self.hlpt("complete", "--adapter", "cli-copy", "--max-tokens", "8", "Count: 3").stdout, text)
        names = [a["name"] for a in json.loads(self.hlpt("adapters", "list").stdout)["data"]]
        self.assertIn("cli-copy", names)

    def test_eval_prints_accuracy(self):
        tasks = os.path.join(self.tmp.name, "math.jsonl")
        with open(os.path.join(ROOT, "data", "math", "test.jsonl")) as f, open(tasks, "w") as g:
            g.writelines(f.readlines()[:4])
        j = json.loads(self.hlpt("eval", "--task", "math", "--data", tasks, "--max-tokens", "8").stdout)
        self.assertEqual((j["task"], j["examples"], j["model"]), ("math", 4, "base"))
        self.assertTrue(0 <= j["accuracy"] <= 1)

    def test_daemon_errors_as_worded(self):
        p = self.hlpt("jobs", "show", "ftjob-nope", ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no fine-tuning job ftjob-nope", p.stderr)
        self.assertIn("HTTP 404", p.stderr)
        p = self.hlpt("complete", "--adapter", "missing", "hello", ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("missing", p.stderr)
        p = subprocess.run([HLPT, "jobs", "list"], env=dict(os.environ, HLPT_URL="http://127.0.0.1:9"),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot reach hlptd", p.stderr)


@unittest.skipUnless(PG_URL, PG_SKIP)
class ClientOnPostgres(Client):
    pg = True


if __name__ == "__main__":
    unittest.main()
