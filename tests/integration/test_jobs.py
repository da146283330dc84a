"""The fine-tuning jobs API of the real hlptd over HTTP: a job's whole life (events, metrics,
checkpoints, loss plot, CSV), validation errors, the queue, cancel, pause/resume, a worker killed by
a signal, the daemon killed with SIGKILL and restarted (exact resume), SIGTERM draining, and the
server-sent event stream. Python 3 standard library only.

Jobs train the tiny fixture model (tests/fixtures/llama2-mha-f32) on a few text lines; a "long" job
runs a few hundred steps (about a second or two) so that it can be interrupted while it runs. Runs
that are interrupted are compared byte for byte with one uninterrupted run of the same job (same
seed, same data), made once for the whole file.

Every test of JobsTest runs again in JobsTestOnPostgres, with the store in PostgreSQL (--store; see
hlptd.py), against the same reference run.
"""
import hashlib
import http.client
import json
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hlptd import PG_SKIP, PG_URL, Daemon, store_bytes, store_rows, wait_for  # noqa: E402

JOBS = "/v1/fine_tuning/jobs"
TERMINAL = ("succeeded", "failed", "cancelled")

TRAIN = "".join(json.dumps({"text": "the quick brown fox jumps over the lazy dog %d times, then %d more" % (i, 2 * i)})
                + "\n" for i in range(24))
VALID = "".join(json.dumps({"text": "a lazy dog sleeps %d hours" % i}) + "\n" for i in range(4))

# A job that runs long enough to be interrupted: checkpoints every 10 steps.
LONG_STEPS = 300
LONG_HP = {"n_epochs": 100, "batch_size": 2, "max_steps": LONG_STEPS, "save_every": 10, "warmup_steps": 5,
           "learning_rate": 1e-3, "max_length": 32}
LONG_METHOD = {"type": "lora", "lora": {"r": 2, "lora_dropout": 0.1}}
LONG_SEED = 1234

# The jobs train with the daemon's default dtype (bf16 on a CPU that has it).
DAEMON_ARGS = ["--threads", "1"]

SHORT_HP = {"n_epochs": 1, "batch_size": 2, "max_steps": 6, "save_every": 2, "warmup_steps": 0, "max_length": 32}


# ------------------------------------------------------------------------------------------------
# Helpers

def get_job(d, job_id):
    status, job = d.json("GET", "%s/%s" % (JOBS, job_id))
    if status != 200:
        raise AssertionError("GET job %s: %d %s" % (job_id, status, job))
    return job


def wait_job(d, job_id, statuses, timeout=60):
    statuses = (statuses,) if isinstance(statuses, str) else tuple(statuses)

    def check():
        job = get_job(d, job_id)
        if job["status"] in statuses:
            return job
        if job["status"] in TERMINAL:
            raise AssertionError("job %s is %s, wanted %s; error %s\n%s" % (job_id, job["status"], statuses,
                                                                             job["error"], d.log()[-3000:]))
        return None

    return wait_for(check, timeout, "job %s to be %s" % (job_id, "/".join(statuses)))


def events(d, job_id):
    """Every event of the job, oldest first: the list pages newest first through ?after=<event id>."""
    out, after = [], None
    for _ in range(1000):
        path = "%s/%s/events?limit=100" % (JOBS, job_id) + ("&after=%s" % after if after is not None else "")
        status, page = d.json("GET", path)
        if status != 200:
            raise AssertionError("events: %d %s" % (status, page))
        out += page["data"]
        if not page["has_more"] or not page["data"]:
            return out[::-1]
        after = page["data"][-1]["id"]
    raise AssertionError("events never stopped paging")


def messages(d, job_id):
    return [e["message"] for e in events(d, job_id)]


def metric_steps(d, job_id):
    status, page = d.json("GET", "%s/%s/metrics" % (JOBS, job_id))
    if status != 200:
        raise AssertionError("metrics: %d %s" % (status, page))
    return [m["step"] for m in page["data"]]


def checkpoints(d, job_id):
    status, page = d.json("GET", "%s/%s/checkpoints?limit=100" % (JOBS, job_id))
    if status != 200:
        raise AssertionError("checkpoints: %d %s" % (status, page))
    return page["data"]


def blob_path(data_dir, sha256):
    return os.path.join(data_dir, "blobs", "sha256", sha256[:2], sha256)


def blob_files(data_dir):
    """{sha256: size} of every blob under <data-dir>/blobs."""
    top = os.path.join(data_dir, "blobs", "sha256")
    out = {}
    for sub in os.listdir(top) if os.path.isdir(top) else []:
        for name in os.listdir(os.path.join(top, sub)):
            out[name] = os.path.getsize(os.path.join(top, sub, name))
    return out


def tmp_files(d):
    """Names under <data-dir>/blobs/tmp: blobs being written, or sealed and not yet adopted."""
    return sorted(os.listdir(os.path.join(d.data_dir, "blobs", "tmp")))


def plant_tmp(d, pid):
    """A half-written temporary of process pid, as a worker killed mid-checkpoint leaves it."""
    with open(os.path.join(d.data_dir, "blobs", "tmp", "%d-999999" % pid), "wb") as f:
        f.write(b"half a checkpoint")


def blobs_named(d):
    """{sha256: bytes} of every blob a row of the store names."""
    rows = store_rows(d, "SELECT sha256, bytes FROM files WHERE sha256 IS NOT NULL UNION "
                         "SELECT sha256, bytes FROM checkpoints UNION SELECT sha256, bytes FROM adapters")
    return dict(rows)


def adapter_weights(d, name):
    """The final adapter's adapter_model.safetensors bytes. Through the registry route when the daemon
    has it; otherwise (no /v1/adapters route yet) from the blob the store names."""
    try:
        status, _, body = d.request("GET", "/v1/adapters/%s/files/adapter_model.safetensors" % name, timeout=10)
        if status == 200:
            return body
    except OSError:
        pass
    rows = store_rows(d, "SELECT sha256 FROM adapters WHERE name = ?", (name,))
    if len(rows) != 1:
        raise AssertionError("adapter %s: %d rows in the store" % (name, len(rows)))
    with open(blob_path(d.data_dir, rows[0][0]), "rb") as f:
        return f.read()


def get_job_in_store(d, job_id):
    """(status, highest stored checkpoint step or 0) of a job, read from the store while no daemon
    runs on it."""
    rows = store_rows(d, "SELECT status, (SELECT coalesce(max(step), 0) FROM checkpoints WHERE job_id = ?) "
                         "FROM jobs WHERE id = ?", (job_id, job_id))
    return rows[0] if rows else None


def children(pid):
    """Pids of the live processes whose parent is pid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def workers_of(d):
    """The daemon's live `hlptd --worker` children."""
    return [p for p in children(d.proc.pid) if b"--worker" in cmdline(p)]


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


# The uninterrupted run of a job, made once per settings: its adapter bytes.
_reference = {}


def reference_weights(hp=LONG_HP, seed=LONG_SEED):
    key = (json.dumps(hp, sort_keys=True), seed)
    if key not in _reference:
        d = Daemon(args=["--workers", "1"] + DAEMON_ARGS)
        try:
            d.start()
            fid = upload(d, TRAIN)
            job = create(d, fid, hp, LONG_METHOD, seed)
            job = wait_job(d, job["id"], "succeeded", timeout=300)
            _reference[key] = adapter_weights(d, job["fine_tuned_model"])
        finally:
            d.cleanup()
    return _reference[key]


def upload(d, content, name="train.jsonl"):
    status, f = d.upload(name, content)
    if status != 200:
        raise AssertionError("upload: %d %s" % (status, f))
    return f["id"]


def create(d, training_file, hp, method=None, seed=None, **extra):
    body = dict(training_file=training_file, hyperparameters=hp, **extra)
    if method is not None:
        body["method"] = method
    if seed is not None:
        body["seed"] = seed
    status, job = d.json("POST", JOBS, body)
    if status != 200:
        raise AssertionError("create: %d %s" % (status, job))
    return job


class DaemonCase:
    """A TestCase mixin: daemons started through it are stopped, and their workers reaped (none is
    left), even when the test fails. A class with pg = True keeps their stores in PostgreSQL."""

    pg = False

    def daemon(self, data_dir=None, args=(), workers=1, log_path=None):
        d = Daemon(data_dir=data_dir, args=["--workers", str(workers)] + DAEMON_ARGS + list(args), pg=self.pg)
        if log_path:
            d.log_path = log_path
        self.addCleanup(d.cleanup)
        self.addCleanup(self.reap, d)
        d.start()
        return d

    def reap(self, d):
        if d.proc is not None and d.proc.poll() is None:
            for p in workers_of(d):
                kill_quietly(p)


class JobsTest(DaemonCase, unittest.TestCase):
    """Each test runs its own daemon on a temporary data dir; tearDown kills it (and any worker it
    left, and any orphan a test recorded) even when the test fails."""

    def reap(self, d):
        DaemonCase.reap(self, d)
        for p in getattr(self, "orphans", []):
            kill_quietly(p)

    def assert_steps_once(self, d, job_id, n):
        steps = metric_steps(d, job_id)
        self.assertEqual(steps, list(range(1, n + 1)), "metric rows must be steps 1..%d, each once" % n)

    def long_job(self, d, seed=LONG_SEED):
        return create(d, upload(d, TRAIN), LONG_HP, LONG_METHOD, seed)

    def wait_checkpoint(self, d, job_id):
        """Waits until the running job has stored a checkpoint; fails if it ended first."""
        def check():
            job = get_job(d, job_id)
            self.assertNotIn(job["status"], TERMINAL, "the job ended before it could be interrupted")
            return checkpoints(d, job_id)
        return wait_for(check, 30, "a checkpoint of job %s" % job_id)

    # 1 ----------------------------------------------------------------------------------------
    def test_job_life(self):
        d = self.daemon()
        tf, vf = upload(d, TRAIN), upload(d, VALID, "valid.jsonl")
        hp = dict(SHORT_HP, eval_every=3)
        job = create(d, tf, hp, {"type": "hlpt", "hlpt": {"r": 2}}, 7, validation_file=vf, suffix="life")
        self.assertTrue(job["id"].startswith("ftjob-"), job)
        self.assertEqual(job["object"], "fine_tuning.job")
        self.assertIn(job["status"], ("queued", "running"))
        self.assertEqual((job["training_file"], job["validation_file"], job["seed"], job["suffix"]), (tf, vf, 7, "life"))
        self.assertEqual(job["method"], {"type": "hlpt", "hlpt": {"r": 2}})
        self.assertEqual(job["hyperparameters"], hp)
        self.assertIsNone(job["fine_tuned_model"])
        self.assertIsNone(job["finished_at"])
        # Nothing was measured yet: no figures, not zeros.
        self.assertEqual(job["progress"]["step"], 0)
        for k in ("train_loss", "valid_loss", "learning_rate", "eta_s"):
            self.assertIsNone(job["progress"][k], k)

        done = wait_job(d, job["id"], "succeeded", timeout=30)
        n = SHORT_HP["max_steps"]
        self.assertEqual(done["fine_tuned_model"], "ft:%s:life:%s" % (done["model"], job["id"][len("ftjob-"):]))
        self.assertIsNone(done["error"])
        self.assertIsInstance(done["finished_at"], int)
        self.assertEqual((done["progress"]["step"], done["progress"]["total_steps"]), (n, n))
        self.assertIsNone(done["queue_position"])
        self.assertGreater(done["progress"]["train_loss"], 0)
        self.assertGreater(done["progress"]["valid_loss"], 0)
        self.assertIn(done["best"]["step"], (3, 6), "the best step is one that was evaluated")

        # Listed.
        status, page = d.json("GET", JOBS)
        self.assertEqual(status, 200)
        self.assertEqual([j["id"] for j in page["data"]], [job["id"]])
        status, page = d.json("GET", JOBS + "?status=succeeded")
        self.assertEqual([j["id"] for j in page["data"]], [job["id"]])
        status, page = d.json("GET", JOBS + "?status=running")
        self.assertEqual(page["data"], [])

        # Events: created, started, each step, a checkpoint, the model, success; in order.
        ev = events(d, job["id"])
        self.assertEqual([e["seq"] for e in ev], sorted(e["seq"] for e in ev))
        self.assertEqual(len({e["id"] for e in ev}), len(ev))
        msgs = [e["message"] for e in ev]
        def index(prefix):
            hits = [i for i, m in enumerate(msgs) if m.startswith(prefix)]
            self.assertTrue(hits, "no event starting %r in %s" % (prefix, msgs))
            return hits[0]
        order = [index("Created fine-tuning job"), index("Worker started"), index("Training started"),
                 index("Step 1/%d" % n), index("Step %d/%d" % (n, n)), index("New fine-tuned model created"),
                 index("The job has successfully completed")]
        self.assertEqual(order, sorted(order), msgs)
        step_events = [e for e in ev if e["type"] == "metrics" and e["data"].get("type") == "progress"]
        self.assertEqual([e["data"]["step"] for e in step_events], list(range(1, n + 1)))
        with_valid = [e["data"]["step"] for e in step_events if "valid_loss" in e["data"]]
        self.assertEqual(with_valid, [3, 6])
        self.assertEqual(ev[-1]["level"], "info")

        # Metrics: steps 1..n once each, validation figures where evaluated.
        status, page = d.json("GET", "%s/%s/metrics" % (JOBS, job["id"]))
        self.assertEqual(status, 200)
        self.assertEqual([m["step"] for m in page["data"]], list(range(1, n + 1)))
        for m in page["data"]:
            self.assertGreater(m["train_loss"], 0)
            self.assertGreater(m["learning_rate"], 0)
            self.assertEqual(m["valid_loss"] is not None, m["step"] in (3, 6), m)

        # CSV: the header, then one row a step; empty cells where nothing was measured.
        status, headers, body = d.request("GET", "%s/%s/metrics?format=csv" % (JOBS, job["id"]))
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/csv"), headers)
        lines = body.decode().splitlines()
        self.assertEqual(lines[0], "step,train_loss,valid_loss,valid_token_accuracy,learning_rate,tokens_per_s")
        self.assertEqual([int(l.split(",")[0]) for l in lines[1:]], list(range(1, n + 1)))
        self.assertEqual(lines[1].split(",")[2], "")
        self.assertNotEqual(lines[3].split(",")[2], "")
        for l in lines[1:]:
            self.assertEqual(len(l.split(",")), 6, l)
        self.assertEqual(d.json("GET", "%s/%s/metrics?format=xml" % (JOBS, job["id"]))[0], 400)

        # Checkpoints every 2 steps.
        ck = checkpoints(d, job["id"])
        self.assertEqual(sorted(c["step_number"] for c in ck), [2, 4, 6])
        for c in ck:
            self.assertTrue(c["id"].startswith("ftckpt-"))
            self.assertEqual(c["fine_tuning_job_id"], job["id"])
            self.assertGreater(c["bytes"], 0)

        # The loss plot.
        status, headers, body = d.request("GET", "%s/%s/loss.svg" % (JOBS, job["id"]))
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "image/svg+xml")
        text = body.decode()
        self.assertIn("<svg", text[:300])
        self.assertTrue(text.rstrip().endswith("</svg>"), text[-100:])

        # The adapter is in the store under the job's model name.
        weights = adapter_weights(d, done["fine_tuned_model"])
        self.assertGreater(len(weights), 100)

        # Every artefact is a file under blobs/ named by its SHA-256 (the uploads, the checkpoints,
        # the adapter's weights, the results file), each one a row names; no job directory.
        on_disk, named = blob_files(d.data_dir), blobs_named(d)
        self.assertEqual(on_disk, named)
        self.assertEqual(tmp_files(d), [], "a sealed checkpoint or adapter was not adopted")
        ckpts = store_rows(d, "SELECT sha256, bytes FROM checkpoints WHERE job_id = ?", (job["id"],))
        self.assertEqual(len(ckpts), 3)
        for sha, n in ckpts + store_rows(d, "SELECT sha256, bytes FROM adapters"):
            with open(blob_path(d.data_dir, sha), "rb") as f:
                data = f.read()
            self.assertEqual((hashlib.sha256(data).hexdigest(), len(data)), (sha, n))
        self.assertEqual(store_rows(d, "SELECT sha256 FROM adapters WHERE name = ?", (done["fine_tuned_model"],))[0][0],
                         hashlib.sha256(weights).hexdigest())
        self.assertEqual(len(done["result_files"]), 1)
        self.assertFalse(os.path.exists(os.path.join(d.data_dir, "jobs")))
        # The database keeps metadata only: no value in it is a BLOB or large, and the file stays small.
        for table in ("files", "jobs", "job_events", "metrics", "checkpoints", "adapters"):
            if d.store_url:
                cols = store_rows(d, "SELECT column_name, data_type FROM information_schema.columns "
                                     "WHERE table_schema = current_schema() AND table_name = ?", (table,))
                self.assertTrue(cols, table)
                self.assertNotIn("bytea", [t for _, t in cols], "%s holds bytes" % table)
                longest = store_rows(d, "SELECT %s FROM %s" % (", ".join(
                    "coalesce(max(octet_length(%s::text)), 0)" % c for c, _ in cols), table))[0]
                for (col, _), n in zip(cols, longest):
                    self.assertLess(n, 16384, "%s.%s holds %d bytes" % (table, col, n))
                continue
            for (col,) in store_rows(d, "SELECT name FROM pragma_table_info('%s')" % table):
                blobs, longest = store_rows(d, "SELECT count(CASE WHEN typeof(%s) = 'blob' THEN 1 END), "
                                               "coalesce(max(length(CAST(%s AS BLOB))), 0) FROM %s" % (col, col, table))[0]
                self.assertEqual(blobs, 0, "%s.%s holds BLOBs" % (table, col))
                self.assertLess(longest, 16384, "%s.%s holds %d bytes" % (table, col, longest))
        self.assertLess(store_bytes(d), 8 << 20)

    # 2 ----------------------------------------------------------------------------------------
    def test_validation_errors(self):
        d = self.daemon()
        tf = upload(d, TRAIN)

        def bad(body, want_status, param=None, want_in=None, raw=None):
            if raw is not None:
                status, resp = d.json("POST", JOBS, raw, {"Content-Type": "application/json"})
            else:
                status, resp = d.json("POST", JOBS, body)
            self.assertEqual(status, want_status, (body, raw, resp))
            e = resp["error"]
            self.assertEqual(set(e), {"message", "type", "param", "code"}, resp)
            if param is not None:
                self.assertEqual(e["param"], param, (body, resp))
            if want_in is not None:
                self.assertIn(want_in, e["message"], (body, resp))

        bad({}, 400, "training_file", "required")
        bad({"hyperparameters": {"n_epochs": 1}}, 400, "training_file")
        bad({"training_file": "file-doesnotexist000000000000"}, 404, "training_file", "file-doesnotexist")
        bad({"training_file": tf, "validation_file": "file-nope"}, 404, "validation_file")
        bad({"training_file": tf, "method": {"type": "adapterx"}}, 400, "method.type")
        bad({"training_file": tf, "method": {"lora": {"r": 2}}}, 400, "method.type")
        bad({"training_file": tf, "method": {"type": "lora", "hlpt": {"r": 2}}}, 400, "method.hlpt")
        bad({"training_file": tf, "method": {"type": "lora", "lora": {"r": 0}}}, 400, "method.lora", "r")
        bad({"training_file": tf, "method": {"type": "hlpt", "hlpt": {"r": -3}}}, 400, "method.hlpt")
        bad({"training_file": tf, "method": {"type": "lora", "lora": {"no_such_setting": 1}}}, 400, "method.lora")
        bad({"training_file": tf, "method": {"type": "prefix", "prefix": {"num_virtual_tokens": "many"}}}, 400,
            "method.prefix")
        bad({"training_file": tf, "hyperparameters": {"n_epochs": 0}}, 400, "hyperparameters.n_epochs")
        bad({"training_file": tf, "hyperparameters": {"n_epoch": 1}}, 400, "hyperparameters.n_epoch", "unknown")
        bad({"training_file": tf, "hyperparameters": {"batch_size": "4"}}, 400, "hyperparameters.batch_size")
        bad({"training_file": tf, "hyperparameters": {"batch_size": 2.5}}, 400, "hyperparameters.batch_size")
        bad({"training_file": tf, "hyperparameters": {"learning_rate": -1}}, 400, "hyperparameters.learning_rate")
        bad({"training_file": tf, "hyperparameters": {"lr_scheduler": "wavy"}}, 400, "hyperparameters.lr_scheduler")
        bad({"training_file": tf, "hyperparameters": {"validation_split": 1.5}}, 400, "hyperparameters.validation_split")
        bad({"training_file": tf, "hyperparameters": [1]}, 400, "hyperparameters")
        # Wrong JSON types at the top.
        bad({"training_file": 5}, 400, "training_file")
        bad({"training_file": tf, "validation_file": 7}, 400, "validation_file")
        bad({"training_file": tf, "seed": "x"}, 400, "seed")
        bad({"training_file": tf, "seed": -1}, 400, "seed")
        bad({"training_file": tf, "seed": 1.5}, 400, "seed")
        bad({"training_file": tf, "suffix": "no spaces allowed"}, 400, "suffix")
        bad({"training_file": tf, "method": "lora"}, 400, "method.type")
        bad({"training_file": tf, "model": "some-other-model"}, 404, "model")
        bad({"training_file": tf, "surprise": 1}, 400, "surprise", "unknown")
        # Not JSON, or not an object.
        bad(None, 400, raw='{"training_file": ')
        bad(None, 400, raw='{"training_file": "%s"} trailing' % tf)
        bad(None, 400, raw="[1, 2]")
        bad(None, 400, raw="")
        bad(None, 400, raw=b'{"training_file": "\xff"}')

        # None of that stored a job.
        status, page = d.json("GET", JOBS)
        self.assertEqual((status, page["data"]), (200, []))

        # Unknown job ids.
        for method, suffix in (("GET", ""), ("POST", "/cancel"), ("POST", "/pause"), ("POST", "/resume"),
                               ("GET", "/events"), ("GET", "/events?stream=true"), ("GET", "/metrics"),
                               ("GET", "/checkpoints"), ("GET", "/loss.svg")):
            status, resp = d.json(method, "%s/ftjob-nope%s" % (JOBS, suffix))
            self.assertEqual(status, 404, (method, suffix, resp))
            self.assertIn("ftjob-nope", resp["error"]["message"])

        # Wrong state: a finished job cannot be cancelled, paused or resumed.
        job = create(d, tf, SHORT_HP)
        wait_job(d, job["id"], "succeeded", timeout=30)
        for verb in ("cancel", "pause", "resume"):
            status, resp = d.json("POST", "%s/%s/%s" % (JOBS, job["id"], verb))
            self.assertEqual(status, 409, (verb, resp))
            self.assertIn("succeeded", resp["error"]["message"])
        self.assertEqual(get_job(d, job["id"])["status"], "succeeded")
        status, resp = d.json("GET", JOBS + "?limit=0")
        self.assertEqual((status, resp["error"]["param"]), (400, "limit"))

    # 3 ----------------------------------------------------------------------------------------
    def test_queue(self):
        d = self.daemon(workers=1)
        tf = upload(d, TRAIN)
        first = create(d, tf, LONG_HP, LONG_METHOD, 1)
        wait_job(d, first["id"], "running", timeout=10)
        second = create(d, tf, SHORT_HP)
        third = create(d, tf, SHORT_HP)
        self.assertEqual((second["status"], second["queue_position"]), ("queued", 1))
        self.assertEqual((third["status"], third["queue_position"]), ("queued", 2))
        job = get_job(d, second["id"])
        # Still waiting while the first runs (one worker only).
        self.assertEqual(get_job(d, first["id"])["status"], "running")
        self.assertEqual((job["status"], job["queue_position"]), ("queued", 1))
        self.assertEqual(len(workers_of(d)), 1)
        status, page = d.json("GET", JOBS + "?status=queued")
        self.assertEqual([j["id"] for j in page["data"]], [third["id"], second["id"]])
        self.assertEqual(messages(d, second["id"]), ["Created fine-tuning job; files validated"])

        wait_job(d, first["id"], "succeeded", timeout=60)
        for j in (second, third):
            done = wait_job(d, j["id"], "succeeded", timeout=30)
            self.assertIsNone(done["queue_position"])
            self.assert_steps_once(d, j["id"], SHORT_HP["max_steps"])
        # Queue order: the third finished no earlier than the first (timestamps are in seconds).
        self.assertLessEqual(get_job(d, first["id"])["finished_at"], done["finished_at"])

    # 4 ----------------------------------------------------------------------------------------
    def test_cancel_then_pause_resume(self):
        want = reference_weights()
        d = self.daemon()
        job = self.long_job(d)
        wait_for(lambda: get_job(d, job["id"])["progress"]["step"] >= 1, 30, "the job to take a step")
        # What the worker has in blobs/tmp when it is killed (here a planted half-written
        # temporary of its pid) goes once the daemon has seen it exit.
        pids = workers_of(d)
        self.assertEqual(len(pids), 1, pids)
        plant_tmp(d, pids[0])
        status, resp = d.json("POST", "%s/%s/cancel" % (JOBS, job["id"]))
        self.assertEqual(status, 200, resp)
        self.assertEqual(resp["status"], "cancelled", "cancel answers with the new state")
        done = wait_job(d, job["id"], "cancelled", timeout=20)
        self.assertIsNone(done["fine_tuned_model"])
        self.assertIsNone(done["error"])
        self.assertLess(done["progress"]["step"], LONG_STEPS)
        self.assertIn("Job cancelled", messages(d, job["id"]))
        wait_for(lambda: not workers_of(d), 10, "the worker to be gone")
        wait_for(lambda: not tmp_files(d), 10, "the cancelled worker's temporaries to go")
        self.assertEqual(d.json("GET", "/health"), (200, {"status": "ok"}))
        self.assertEqual(d.json("POST", "%s/%s/cancel" % (JOBS, job["id"]))[0], 409)
        self.assertEqual(d.json("POST", "%s/%s/resume" % (JOBS, job["id"]))[0], 409)

        # Pause a running job: it checkpoints and stops; resume continues it exactly.
        job = self.long_job(d)
        self.wait_checkpoint(d, job["id"])
        status, resp = d.json("POST", "%s/%s/pause" % (JOBS, job["id"]))
        self.assertEqual(status, 200, resp)
        self.assertEqual(resp["status"], "paused", "pause answers with the new state")
        # The worker catches up: it checkpoints the step it stopped at, then exits.
        wait_for(lambda: not workers_of(d), 10, "the paused job's worker to exit")
        paused = wait_job(d, job["id"], "paused", timeout=20)
        at = paused["progress"]["step"]
        self.assertLess(at, LONG_STEPS, "the job finished before the pause took effect")
        ck = checkpoints(d, job["id"])
        self.assertIn(at, [c["step_number"] for c in ck], "pausing stores a checkpoint of the step it stopped at")
        time.sleep(0.2)
        self.assertEqual(get_job(d, job["id"])["status"], "paused")
        self.assertEqual(d.json("POST", "%s/%s/pause" % (JOBS, job["id"]))[0], 409)
        status, resp = d.json("POST", "%s/%s/resume" % (JOBS, job["id"]))
        self.assertEqual(status, 200, resp)
        self.assertIn(resp["status"], ("queued", "running"))
        done = wait_job(d, job["id"], "succeeded", timeout=60)
        msgs = messages(d, job["id"])
        self.assertIn("Training resumed from the checkpoint of step %d" % at, msgs)
        self.assertIn("Job paused at its last checkpoint", msgs)
        self.assert_steps_once(d, job["id"], LONG_STEPS)
        got = adapter_weights(d, done["fine_tuned_model"])
        self.assertEqual(got, want, "paused and resumed, the adapter differs from an uninterrupted run's")

    # 5 ----------------------------------------------------------------------------------------
    def test_worker_killed(self):
        """A worker that dies (here SIGKILL) costs the job nothing but the steps since its last
        checkpoint: the job resumes from there on its own and ends as an uninterrupted run."""
        want = reference_weights()
        d = self.daemon()
        job = self.long_job(d)
        self.wait_checkpoint(d, job["id"])
        pids = workers_of(d)
        self.assertEqual(len(pids), 1, pids)
        self.assertEqual(cmdline(pids[0])[1:2], [b"--worker"])
        plant_tmp(d, pids[0])
        os.kill(pids[0], signal.SIGKILL)
        done = wait_job(d, job["id"], "succeeded", timeout=60)
        # Nothing of the killed worker's is left in blobs/tmp, and every line of the next one's
        # was adopted.
        self.assertEqual(tmp_files(d), [])
        msgs = messages(d, job["id"])
        self.assertTrue(any("signal 9" in m and "automatic restart 1 of 3" in m for m in msgs), msgs)
        self.assertIsNone(d.proc.poll(), "the daemon died with its worker")
        self.assertEqual(d.json("GET", "/health"), (200, {"status": "ok"}))
        self.assert_steps_once(d, job["id"], LONG_STEPS)
        self.assertEqual(adapter_weights(d, done["fine_tuned_model"]), want,
                         "resumed after its worker died, the adapter differs from an uninterrupted run's")

    def test_worker_killed_again_and_again_pauses(self):
        """A worker that keeps dying is restarted a bounded number of times, then its job pauses
        with the reason (never `failed`); `resume` starts it again."""
        d = self.daemon()
        job = self.long_job(d)
        killed = set()
        def paused():
            for p in workers_of(d):
                if p not in killed:
                    killed.add(p)
                    kill_quietly(p)
            return get_job(d, job["id"])["status"] == "paused"
        wait_for(paused, 60, "the job to pause after its workers died", interval=0.005)
        self.assertEqual(len(killed), 4, killed)
        msgs = messages(d, job["id"])
        self.assertTrue(any(m.startswith("Job paused: the worker was killed by signal 9") for m in msgs), msgs)
        status, resp = d.json("POST", "%s/%s/resume" % (JOBS, job["id"]))
        self.assertEqual(status, 200, resp)
        wait_job(d, job["id"], "succeeded", timeout=60)

    # 6 ----------------------------------------------------------------------------------------
    def test_daemon_killed_resumes_exactly(self):
        want = reference_weights()
        d = self.daemon()
        job = self.long_job(d)
        self.wait_checkpoint(d, job["id"])
        pids = workers_of(d)
        self.assertEqual(len(pids), 1)
        self.orphans = pids
        d.proc.kill()
        d.proc.wait(10)
        d.kill()
        # The orphaned worker loses its pipe and must not keep training beside the next daemon.
        wait_for(lambda: not alive(pids[0]), 10, "the orphaned worker %d to exit" % pids[0])

        d2 = self.daemon(data_dir=d.data_dir)
        done = wait_job(d2, job["id"], "succeeded", timeout=60)
        msgs = messages(d2, job["id"])
        self.assertIn("The daemon stopped while this job ran; it resumes from its last checkpoint", msgs)
        resumed = [m for m in msgs if m.startswith("Training resumed from the checkpoint of step ")]
        self.assertEqual(len(resumed), 1, msgs)
        self.assertGreater(int(resumed[0].rsplit(" ", 1)[1]), 0)
        self.assert_steps_once(d2, job["id"], LONG_STEPS)
        self.assertEqual(adapter_weights(d2, done["fine_tuned_model"]), want,
                         "resumed after SIGKILL, the adapter differs from an uninterrupted run's")

    def test_worker_dies_with_daemon(self):
        """A worker whose daemon was SIGKILLed stops at once, not when it next writes a line: until
        then it would train (and write checkpoints into the job's directory) beside the worker of
        the restarted daemon."""
        d = self.daemon()
        # One epoch of 600 single-example steps, reported and checkpointed only at its end: the
        # worker writes nothing for seconds after "started".
        many = "".join(json.dumps({"text": "line %d of a long and quiet epoch" % i}) + "\n" for i in range(600))
        hp = {"n_epochs": 1, "batch_size": 1, "log_every": 100000, "max_length": 32, "warmup_steps": 0}
        job = create(d, upload(d, many), hp)
        wait_for(lambda: any(m.startswith("Training started") for m in messages(d, job["id"])), 30,
                 "the worker to start training")
        pids = workers_of(d)
        self.assertEqual(len(pids), 1)
        self.orphans = pids
        d.proc.kill()
        d.proc.wait(10)
        t0 = time.monotonic()
        wait_for(lambda: not alive(pids[0]), 10, "the orphaned worker to exit")
        self.assertLess(time.monotonic() - t0, 0.5, "the worker outlived its daemon")
        # A checkpoint the worker wrote after its daemon died would be a blob no row names.
        left = set(blob_files(d.data_dir)) - set(blobs_named(d))
        self.assertEqual(left, set(), "the orphaned worker went on writing checkpoints")

    # 7 ----------------------------------------------------------------------------------------
    def test_sigterm_drains_and_restart_continues(self):
        want = reference_weights()
        d = self.daemon()
        job = self.long_job(d)
        self.wait_checkpoint(d, job["id"])
        pids = workers_of(d)
        self.orphans = pids
        t0 = time.monotonic()
        self.assertEqual(d.stop(signal.SIGTERM, timeout=20), 0, d.log()[-3000:])
        self.assertLess(time.monotonic() - t0, 20)
        self.assertFalse([p for p in pids if alive(p)], "a worker outlived the drained daemon")
        # The job went back to the queue with a checkpoint of where it stopped.
        status, step = get_job_in_store(d, job["id"])
        self.assertEqual(status, "queued")
        self.assertGreater(step, 0)
        self.assertLess(step, LONG_STEPS, "the job finished before SIGTERM reached it")

        d2 = self.daemon(data_dir=d.data_dir)
        done = wait_job(d2, job["id"], "succeeded", timeout=60)
        msgs = messages(d2, job["id"])
        self.assertIn("Interrupted by the daemon's shutdown; the job resumes from its last checkpoint", msgs)
        self.assertIn("Training resumed from the checkpoint of step %d" % step, msgs)
        self.assert_steps_once(d2, job["id"], LONG_STEPS)
        self.assertEqual(adapter_weights(d2, done["fine_tuned_model"]), want)

    # 8 ----------------------------------------------------------------------------------------
    def test_stalled_past_its_lease_goes_on(self):
        """A daemon held up past its jobs' leases (SIGSTOP), with no other node to take them, goes on
        with its worker: the job finishes once, as an uninterrupted run."""
        want = reference_weights()
        d = self.daemon(args=["--lease-seconds", "1"])
        job = self.long_job(d)
        self.wait_checkpoint(d, job["id"])
        os.kill(d.proc.pid, signal.SIGSTOP)
        time.sleep(2.5)
        os.kill(d.proc.pid, signal.SIGCONT)
        done = wait_job(d, job["id"], "succeeded", timeout=120)
        self.assertEqual(adapter_weights(d, done["fine_tuned_model"]), want)
        said = messages(d, job["id"])
        self.assertEqual(len([m for m in said if m.startswith("Worker started")]), 1, said)
        self.assertNotIn("stopping its worker here", d.log())

    def test_event_stream(self):
        d = self.daemon()
        job = self.long_job(d)
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
        self.addCleanup(conn.close)
        conn.request("GET", "%s/%s/events?stream=true" % (JOBS, job["id"]))
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.getheader("Content-Type", "").startswith("text/event-stream"), resp.getheaders())
        got, live_step_seen, done = [], False, False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = resp.readline()
            if not line:
                break
            line = line.decode().rstrip("\r\n")
            if not line.startswith("data: "):
                self.assertTrue(line == "" or line.startswith(":") or line.startswith("event:"), line)
                continue
            payload = line[len("data: "):]
            if payload == "[DONE]":
                done = True
                continue
            self.assertFalse(done, "an event after [DONE]")
            e = json.loads(payload)
            self.assertEqual(e["object"], "fine_tuning.job.event")
            got.append(e)
            if not live_step_seen and e["message"].startswith("Step "):
                # Delivered while the job still runs, not replayed afterwards.
                self.assertEqual(get_job(d, job["id"])["status"], "running")
                live_step_seen = True
        self.assertTrue(done, "the stream did not end with [DONE]")
        self.assertEqual(resp.read(), b"", "the stream stays open after [DONE]")
        self.assertTrue(live_step_seen)
        self.assertEqual([e["seq"] for e in got], list(range(1, len(got) + 1)), "events lost or repeated")
        self.assertEqual(got[-1]["message"], "The job has successfully completed")
        self.assertEqual([e["id"] for e in got], [e["id"] for e in events(d, job["id"])])
        # A stream of a finished job replays everything and ends at once.
        status, _, body = d.request("GET", "%s/%s/events?stream=true" % (JOBS, job["id"]), timeout=10)
        self.assertEqual(status, 200)
        lines = [l for l in body.decode().splitlines() if l.startswith("data: ")]
        self.assertEqual(lines[-1], "data: [DONE]")
        self.assertEqual(len(lines) - 1, len(got))


@unittest.skipUnless(PG_URL, PG_SKIP)
class JobsTestOnPostgres(JobsTest):
    """JobsTest with the store in PostgreSQL: the same lives of jobs, kills and restarts, and the
    same adapters, byte for byte."""

    pg = True


if __name__ == "__main__":
    unittest.main()
