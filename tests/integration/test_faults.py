"""Fault injection against the real hlptd on 127.0.0.1 (docs/faults.md): SIGTERM while generations
stream and a job runs; pause, cancel and SIGTERM at random instants of many jobs' lives, their first
milliseconds included; kill -9 at random points (mid-upload, mid-step, mid-checkpoint, mid-import);
a full disk (a small tmpfs, when the test may mount one); a corpus of hostile requests. Every test is
bounded in requests and time and stops by itself. Python 3 standard library only.

Jobs train the tiny fixture model (tests/fixtures/llama2-mha-f32), as in test_jobs.py, whose helpers
and uninterrupted reference run this file shares. FaultsTestOnPostgres runs them again with the
store in PostgreSQL, but for the two that are about SQLite's file (a full disk under it, a damaged
one).
"""
import base64
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hlptd import ROOT, Daemon, multipart  # noqa: E402
import test_jobs as tj  # noqa: E402  (a module, so its TestCase is not collected here)

FIXTURES = os.path.join(ROOT, "tests", "fixtures")
JOBS = "/v1/fine_tuning/jobs"
# Tiny jobs: 6 steps, a checkpoint every 2.
TINY_HP = {"n_epochs": 1, "batch_size": 2, "max_steps": 6, "save_every": 2, "warmup_steps": 0, "max_length": 32}
SEED = int(os.environ.get("HLPT_FAULT_SEED", "20261202"))


def adapter_files(name):
    with open(os.path.join(FIXTURES, name, "adapter_config.json"), "rb") as f:
        cfg = f.read()
    with open(os.path.join(FIXTURES, name, "adapter_model.safetensors"), "rb") as f:
        w = f.read()
    return cfg, w


def integrity(data_dir):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "hlpt.db"), uri=True, timeout=10)
    try:
        return [r[0] for r in db.execute("PRAGMA integrity_check")]
    finally:
        db.close()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def read_stream(d, body, out, idx, started):
    """One streaming completion: records ("done"|"error"|"cut", payloads) in out[idx]."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
    payloads, end = [], "cut"
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            out[idx] = ("status %d" % resp.status, [resp.read()])
            started.release()
            return
        first = True
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.decode().rstrip("\r\n")
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            if first:
                started.release()
                first = False
            if data == "[DONE]":
                end = "done"
                break
            o = json.loads(data)
            if "error" in o:
                end = "error"
            payloads.append(o)
        if first:
            started.release()
    except (OSError, http.client.HTTPException) as e:
        payloads.append(repr(e))
        started.release()
    finally:
        conn.close()
    out[idx] = (end, payloads)


class FaultsTest(tj.DaemonCase, unittest.TestCase):

    # 1 ----------------------------------------------------------------------------------------
    def test_sigterm_with_streams_and_a_running_job(self):
        """SIGTERM while 10 completions stream, 2 more are being generated and a job runs: every
        stream ends with [DONE] (or a clean error event), every answer comes, the job checkpoints,
        the daemon exits 0, and the job resumes exactly."""
        want = tj.reference_weights()
        d = self.daemon()
        job = tj.create(d, tj.upload(d, tj.TRAIN), tj.LONG_HP, tj.LONG_METHOD, tj.LONG_SEED)
        # Streams and SIGTERM come early in the job's few seconds; the drain makes it checkpoint.
        tj.wait_for(lambda: tj.get_job(d, job["id"])["progress"]["step"] >= 1, 60, "the job to take a step")
        body = {"model": "base", "prompt": "A dog is", "max_tokens": 450, "stream": True, "ignore_eos": True}
        out, started = [None] * 10, threading.Semaphore(0)
        threads = [threading.Thread(target=read_stream, args=(d, body, out, i, started)) for i in range(10)]
        # And two plain ones with logprobs, rendered (with the model's tokenizer) while the drain runs.
        plain = []
        def ask():
            plain.append(d.json("POST", "/v1/completions", dict(body, stream=False, logprobs=2), timeout=60))
        threads += [threading.Thread(target=ask) for _ in range(2)]
        for t in threads:
            t.start()
        # SIGTERM once all ten generations are in the daemon (queued or running) and text flows.
        self.assertTrue(started.acquire(timeout=30), "no stream started")
        tj.wait_for(lambda: self.generations(d) + sum(o is not None for o in out) + len(plain) >= 12, 30,
                    "twelve generations in flight", interval=0.005)
        self.assertEqual(d.stop(signal.SIGTERM, timeout=60), 0, d.log()[-3000:])
        for t in threads:
            t.join(60)
        self.assertEqual([p[0] for p in plain], [200, 200], plain)
        for p in plain:
            self.assertEqual(len(p[1]["choices"][0]["logprobs"]["tokens"]), 450)
        for i, (end, payloads) in enumerate(out):
            self.assertIn(end, ("done", "error"), "stream %d was cut: %s" % (i, payloads[-2:]))
            if end == "done":
                text = "".join(c["choices"][0]["text"] for c in payloads if c.get("choices"))
                self.assertGreater(len(text), 0)
        status, step = tj.get_job_in_store(d, job["id"])
        self.assertEqual(status, "queued", "the job was not running when SIGTERM came")
        self.assertGreater(step, 0)
        d2 = self.daemon(data_dir=d.data_dir)
        done = tj.wait_job(d2, job["id"], "succeeded", timeout=90)
        msgs = tj.messages(d2, job["id"])
        self.assertIn("Interrupted by the daemon's shutdown; the job resumes from its last checkpoint", msgs)
        self.assertIn("Training resumed from the checkpoint of step %d" % step, msgs)
        self.assertEqual(tj.metric_steps(d2, job["id"]), list(range(1, tj.LONG_STEPS + 1)))
        self.assertEqual(tj.adapter_weights(d2, done["fine_tuned_model"]), want,
                         "after SIGTERM and a restart, the adapter differs from an uninterrupted run's")

    def generations(self, d):
        """Generation requests queued or running in the daemon, from /metrics."""
        status, _, text = d.request("GET", "/metrics")
        n = 0
        for line in text.decode().splitlines():
            if line.startswith(("hlpt_queue_depth ", "hlpt_active_sequences ")):
                n += int(float(line.split()[1]))
        return n

    # 2 ----------------------------------------------------------------------------------------
    def test_pause_cancel_sigterm_at_random_instants(self):
        """100 tiny jobs, each paused, cancelled or interrupted by SIGTERM at a random instant of its
        life (the first milliseconds of its worker included): no job ever ends `failed`."""
        rng = random.Random(SEED)
        d = self.daemon()
        fid = tj.upload(d, tj.TRAIN)
        ids = []
        t0 = time.monotonic()
        for i in range(100):
            job = tj.create(d, fid, TINY_HP, seed=i)
            ids.append(job["id"])
            act = rng.choice(("pause", "pause", "cancel", "sigterm", "none"))
            # Most often right as the worker starts (the window before its handlers are in place).
            if rng.random() < 0.7:
                tj.wait_for(lambda: tj.get_job(d, job["id"])["status"] != "queued", 30, "the job to start",
                            interval=0.001)
            time.sleep(rng.choice((0, 0, 0.001, 0.003, 0.01, 0.03)))
            if act in ("pause", "cancel"):
                status, body = d.json("POST", "%s/%s/%s" % (JOBS, job["id"], act))
                self.assertIn(status, (200, 409), body)
            elif act == "sigterm":
                self.assertEqual(d.stop(signal.SIGTERM, timeout=30), 0, d.log()[-3000:])
                d = self.daemon(data_dir=d.data_dir)
            # Paused ones go on; the job after waits for this one to settle.
            def settled():
                j = tj.get_job(d, job["id"])
                self.assertNotEqual(j["status"], "failed", (j["error"], tj.messages(d, job["id"])))
                if j["status"] == "paused":
                    d.json("POST", "%s/%s/resume" % (JOBS, job["id"]))
                    return None
                return j["status"] in ("succeeded", "cancelled")
            tj.wait_for(settled, 60, "job %d to settle" % i)
        for jid in ids:
            self.assertIn(tj.get_job(d, jid)["status"], ("succeeded", "cancelled"))
        self.assertLess(time.monotonic() - t0, 170)

    # 3 ----------------------------------------------------------------------------------------
    def test_kill9_at_random_points(self):
        """kill -9 mid-upload, mid-step, mid-checkpoint and mid-import: after each restart the store
        passes PRAGMA integrity_check, nothing half-written is visible, and the job resumes exactly."""
        want = tj.reference_weights()
        rng = random.Random(SEED + 1)
        d = self.daemon()
        data_dir = d.data_dir
        fid = tj.upload(d, tj.TRAIN)
        job = tj.create(d, fid, dict(tj.LONG_HP), tj.LONG_METHOD, tj.LONG_SEED)
        cfg, w = adapter_files("peft-lora-qv")
        big = ("".join(json.dumps({"text": "line %d of an upload cut short" % i}) + "\n" for i in range(60000)))
        for rnd in range(4):
            what = ("upload", "step", "checkpoint", "import")[rnd]
            if what == "upload":
                body, ctype = multipart({"purpose": "fine-tune"}, {"file": ("big.jsonl", big)})
                sock = socket.create_connection(("127.0.0.1", d.port))
                sock.sendall(("POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                              % (ctype, len(body))).encode() + body[:len(body) // 2])
                time.sleep(0.05)
            elif what == "import":
                threads = [threading.Thread(target=lambda k=k: self.try_request(
                    d, "POST", "/v1/adapters", {"name": "imp-%d-%d" % (rnd, k), "config": json.loads(cfg),
                                                "weights_base64": base64.b64encode(w).decode()})) for k in range(4)]
                for t in threads:
                    t.start()
                time.sleep(rng.uniform(0, 0.02))
            else:
                time.sleep(rng.uniform(0.05, 0.4))
            pids = tj.workers_of(d)
            d.proc.kill()
            d.proc.wait(10)
            d.kill()
            for p in pids:
                tj.wait_for(lambda: not tj.alive(p), 10, "the orphaned worker to exit")
            if what == "upload":
                sock.close()
            if what == "import":
                for t in threads:
                    t.join(10)
            if not self.pg:
                self.assertEqual(integrity(data_dir), ["ok"])
            # Blobs written whose rows the killed daemon never stored, and blobs half-written.
            unnamed = set(tj.blob_files(data_dir)) - set(tj.blobs_named(d))
            half = set(os.listdir(os.path.join(data_dir, "blobs", "tmp")))
            mark = len(d.log())
            d = self.daemon(data_dir=data_dir)
            # The start removed both, before anything else wrote a blob; every blob a row names is
            # there, of its size.
            if unnamed:
                self.assertIn("removed %d blob(s) that no row names" % len(unnamed), d.log()[mark:])
            self.assertEqual(half & set(os.listdir(os.path.join(data_dir, "blobs", "tmp"))), set())
            # (Named first: the resumed job may store a checkpoint in between, which is on disk
            # before its row is.)
            named = tj.blobs_named(d)
            on_disk = tj.blob_files(data_dir)
            for sha, n in named.items():
                self.assertEqual(on_disk.get(sha), n, "blob %s" % sha)
            # Nothing half-written: every stored file and adapter reads back whole.
            status, files = d.json("GET", "/v1/files")
            self.assertEqual(status, 200)
            for f in files["data"]:
                status, _, content = d.request("GET", "/v1/files/%s/content" % f["id"])
                self.assertEqual((status, len(content)), (200, f["bytes"]), f)
            status, ads = d.json("GET", "/v1/adapters")
            for a in ads["data"]:
                status, _, content = d.request("GET", "/v1/adapters/%s/files/adapter_model.safetensors" % a["id"])
                self.assertEqual((status, content), (200, w), a["name"])
            leftovers = [n for n in os.listdir(data_dir) if ".tmp." in n]
            self.assertEqual(leftovers, [])
        done = tj.wait_job(d, job["id"], "succeeded", timeout=120)
        self.assertIn("The daemon stopped while this job ran; it resumes from its last checkpoint",
                      tj.messages(d, job["id"]), "no kill came while the job ran")
        self.assertEqual(tj.metric_steps(d, job["id"]), list(range(1, tj.LONG_STEPS + 1)))
        steps = [e["data"]["step"] for e in tj.events(d, job["id"])
                 if isinstance(e.get("data"), dict) and e["data"].get("type") == "progress"]
        self.assertEqual(len(steps), len(set(steps)), "a step's event appears twice after a resume")
        self.assertEqual(tj.adapter_weights(d, done["fine_tuned_model"]), want)

    def try_request(self, d, method, path, body):
        try:
            d.json(method, path, body, timeout=10)
        except (OSError, http.client.HTTPException):
            pass

    # 4 ----------------------------------------------------------------------------------------
    def test_disk_full(self):
        """A small tmpfs fills up: writes fail with a clear 507, nothing stored is corrupted, DELETE
        reclaims space, and a job paused by the full disk resumes once space returns."""
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        mnt = tempfile.mkdtemp(prefix="hlptd-full-")
        self.addCleanup(os.rmdir, mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt],
                          stderr=subprocess.DEVNULL).returncode != 0:
            self.skipTest("cannot mount a tmpfs here")
        self.addCleanup(subprocess.run, ["umount", "-l", mnt])
        data_dir = os.path.join(mnt, "data")
        os.mkdir(data_dir, 0o700)
        # The log stays off the full disk.
        log = tempfile.NamedTemporaryFile(prefix="hlptd-full-log-", delete=False)
        log.close()
        self.addCleanup(os.unlink, log.name)
        d = self.daemon(data_dir=data_dir, log_path=log.name)
        fid = tj.upload(d, tj.TRAIN)
        spare = tj.upload(d, tj.TRAIN * 200, name="spare.jsonl")
        # An upload announced larger than the disk is refused before it is read.
        sock = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        sock.sendall(b"POST /v1/files?filename=x.jsonl HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        head = sock.recv(4096).decode(errors="replace")
        sock.close()
        self.assertTrue(head.startswith("HTTP/1.1 507"), head)
        self.assertIn("insufficient_storage", head)
        job = tj.create(d, fid, dict(tj.LONG_HP, save_every=5), tj.LONG_METHOD, tj.LONG_SEED)
        tj.wait_for(lambda: tj.checkpoints(d, job["id"]), 60, "a checkpoint")
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        tj.wait_job(d, job["id"], "paused", timeout=60)
        # The job reads paused as soon as it is asked to pause; the worker's stop comes behind, its
        # last word either a checkpoint written into the reserve ("Job paused at its last
        # checkpoint") or, when even that write meets the full disk, the write's error ("Job paused:
        # ... Its last checkpoint is kept").
        final = lambda: [m for m in tj.messages(d, job["id"]) if m.startswith("Job paused")]
        tj.wait_for(final, 60, "the worker's stop, after %s" % tj.messages(d, job["id"])[-3:])
        msgs = tj.messages(d, job["id"])
        self.assertIn("Pausing: the disk is full. The job stops at its next checkpoint; free some space, then resume it",
                      msgs)
        self.assertTrue(msgs[-1].startswith("Job paused"), msgs)
        # A write on a full disk: 507, a clear message.
        status, body = d.upload("more.jsonl", tj.TRAIN * 50)
        self.assertEqual(status, 507, body)
        self.assertEqual(body["error"]["code"], "insufficient_storage")
        self.assertIsNone(d.proc.poll())
        # The daemon stops and starts again on the full disk, and DELETE works there.
        self.assertEqual(d.stop(), 0)
        self.assertEqual(integrity(data_dir), ["ok"])
        d = self.daemon(data_dir=data_dir, log_path=log.name)
        status, body = d.json("DELETE", "/v1/files/%s" % spare)
        self.assertEqual(status, 200, body)
        os.unlink(filler)
        status, body = d.json("POST", "%s/%s/resume" % (JOBS, job["id"]))
        self.assertEqual(status, 200, body)
        done = tj.wait_job(d, job["id"], "succeeded", timeout=120)
        self.assertEqual(tj.metric_steps(d, job["id"]), list(range(1, tj.LONG_STEPS + 1)))
        self.assertEqual(tj.adapter_weights(d, done["fine_tuned_model"]), tj.reference_weights())
        self.assertEqual(d.stop(), 0)
        self.assertEqual(integrity(data_dir), ["ok"])

    # 5 ----------------------------------------------------------------------------------------
    def test_hostile_inputs(self):
        """A corpus of hostile requests: each gets a 4xx (or a clean close), the daemon stays up,
        and its memory and open descriptors stay flat."""
        d = self.daemon()
        cfg, w = adapter_files("peft-lora-qv")
        corpus = self.corpus(d, cfg, w)
        for case in corpus:  # warm-up: caches, thread stacks, SQLite pages
            self.send_case(d, case)
        rss0, fds0 = rss_kb(d.proc.pid), open_fds(d.proc.pid)
        for _ in range(3):
            for case in corpus:
                self.send_case(d, case)
        self.assertIsNone(d.proc.poll(), d.log()[-3000:])
        self.assertEqual(d.json("GET", "/health"), (200, {"status": "ok"}))
        self.assertLessEqual(open_fds(d.proc.pid), fds0 + 2)
        self.assertLess(rss_kb(d.proc.pid) - rss0, 32 * 1024, "RSS grew by more than 32 MB")
        # NUL names are refused, so the listing has each name once.
        status, models = d.json("GET", "/v1/models")
        names = [m["id"] for m in models["data"]]
        self.assertEqual(len(names), len(set(names)), names)
        self.assertEqual(d.stop(), 0)

    def corpus(self, d, cfg, w):
        """(method, path, body, headers, allowed statuses) of each hostile request."""
        J = {"Content-Type": "application/json"}
        cases = []

        def form(fields, files):
            body, ctype = multipart(fields, files)
            return body, {"Content-Type": ctype}

        cases += [("POST", "/v1/completions", b, J, (400,)) for b in (
            b"{", b"[]", b"null", b'{"model": "base", "prompt": 5}', b"\xff\xfe", b'{"model":' + b"[" * 5000,
            b'{"model": "base", "prompt": "a", "max_tokens": -1}', b'{"model": "base", "prompt": "a", "n": 1e9}',
            b'{"model": "base", "prompt": "a\\u0000b", "max_tokens": 1, "temperature": "hot"}')]
        cases.append(("POST", "/v1/fine_tuning/jobs", b'{"training_file": "file-\' OR 1=1 --"}', J, (400, 404)))
        cases.append(("GET", "/v1/files/..%2F..%2Fetc%2Fpasswd", None, {}, (404,)))
        b, h = form({"config": cfg, "name": "demo\0x"}, {"weights": ("adapter_model.safetensors", w)})
        cases.append(("POST", "/v1/adapters", b, h, (400,)))
        b, h = form({"config": cfg, "name": "ad-0123456789ABCDEFGHIJKLMN"}, {"weights": ("a.safetensors", w)})
        cases.append(("POST", "/v1/adapters", b, h, (400,)))
        nan_w = self.nan_weights(w)
        b, h = form({"config": cfg, "name": "nan"}, {"weights": ("a.safetensors", nan_w)})
        cases.append(("POST", "/v1/adapters", b, h, (400,)))
        b, h = form({"purpose": "fine-tune"}, {"file": ("a\0.jsonl", tj.TRAIN)})
        cases.append(("POST", "/v1/files", b, h, (400,)))
        b, h = form({"purpose": "fine-tune\0x"}, {"file": ("a.jsonl", tj.TRAIN)})
        cases.append(("POST", "/v1/files", b, h, (400,)))
        b, h = form({"purpose": "fine-tune"}, {"file": ("a.jsonl", b'{"text": "a"}\n{"text": \n' * 3)})
        cases.append(("POST", "/v1/files", b, h, (400,)))
        cases.append(("POST", "/v1/files", b"--x\r\nContent-Disposition: form-data\r\n\r\nq",
                      {"Content-Type": "multipart/form-data; boundary=x"}, (400,)))
        cases.append(("POST", "/v1/files?filename=a.jsonl", b"\0" * 1000, {}, (400,)))
        for n in (100, 470, 2000):
            q = "&".join("a%d=%d" % (i, i) for i in range(n))
            cases.append(("GET", "/v1/files?" + q, None, {}, (200, 400, 414, 431)))
        cases.append(("GET", "/v1/files?limit=%ff%00&after=%C3%A9%00", None, {}, (400, 404)))
        cases.append(("POST", "/v1/files", b"x" * (2 << 20), {"Content-Type": "multipart/form-data"}, (400,)))
        return cases

    def nan_weights(self, w):
        """The fixture adapter's safetensors with its first float set to NaN."""
        n = int.from_bytes(w[:8], "little")
        head = json.loads(w[8:8 + n])
        first = min(v["data_offsets"][0] for k, v in head.items() if k != "__metadata__")
        at = 8 + n + first
        return w[:at] + b"\x00\x00\xc0\x7f" + w[at + 4:]

    def send_case(self, d, case):
        method, path, body, headers, allowed = case
        try:
            status, _, data = d.request(method, path, body, headers, timeout=10)
        except (ConnectionError, http.client.RemoteDisconnected):
            return  # a clean close
        self.assertIn(status, allowed, "%s %s -> %d %s" % (method, path[:80], status, data[:300]))

    def test_slow_clients(self):
        """Clients that send half a request and stall do not stop others from being served."""
        d = self.daemon()
        socks = []
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", d.port))
            s.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc" if i % 2 else b"GET /v1/fi")
            socks.append(s)
        t0 = time.monotonic()
        for _ in range(20):
            self.assertEqual(d.json("GET", "/health", timeout=5)[0], 200)
        self.assertLess(time.monotonic() - t0, 5)
        for s in socks:
            s.close()
        self.assertEqual(d.stop(), 0)

    def test_api_key_file_long_lines(self):
        """A key longer than any line buffer stays one key: its tail alone is refused."""
        key = "k" * 1500 + "tail-of-the-key"
        path = tempfile.mktemp(prefix="hlptd-keys-")
        with open(path, "w") as f:
            f.write("# keys\n" + key + "\n")
        self.addCleanup(os.unlink, path)
        d = self.daemon(args=["--api-key-file", path])
        self.assertEqual(d.request("GET", "/v1/files", headers={"Authorization": "Bearer tail-of-the-key"})[0], 401)
        self.assertEqual(d.request("GET", "/v1/files", headers={"Authorization": "Bearer " + key[-1023:]})[0], 401)
        self.assertEqual(d.request("GET", "/v1/files", headers={"Authorization": "Bearer " + key})[0], 200)

    def test_damaged_store_is_refused(self):
        """A database with corrupt pages does not start; the message says how to recover."""
        d = self.daemon()
        tj.upload(d, tj.TRAIN * 40)
        self.assertEqual(d.stop(), 0)
        db = os.path.join(d.data_dir, "hlpt.db")
        with open(db, "r+b") as f:
            f.seek(0, 2)
            size = f.tell()
            for off in range(4096 * 2, size, 4096):
                f.seek(off + 100)
                f.write(b"\xa5" * 600)
        d2 = Daemon(data_dir=d.data_dir, args=tj.DAEMON_ARGS)
        self.addCleanup(d2.cleanup)
        with self.assertRaises(RuntimeError) as ctx:
            d2.start(timeout=15)
        self.assertIn("damaged", str(ctx.exception))
        self.assertIn(".recover", str(ctx.exception))

    def test_files_are_private(self):
        """Whatever the umask, the data directory's files are the service's alone."""
        old = os.umask(0o022)
        try:
            d = self.daemon()
        finally:
            os.umask(old)
        tj.upload(d, tj.TRAIN)
        for name in os.listdir(d.data_dir):
            if name.startswith("hlpt"):
                mode = os.stat(os.path.join(d.data_dir, name)).st_mode & 0o777
                self.assertEqual(mode & 0o077, 0, "%s is %o" % (name, mode))


@unittest.skipUnless(tj.PG_URL, tj.PG_SKIP)
class FaultsTestOnPostgres(FaultsTest):
    """FaultsTest with the store in PostgreSQL, but for what is SQLite's own: a full disk under the
    database file and a damaged database file (PostgreSQL's server has its own disk and checks)."""

    pg = True
    test_disk_full = None
    test_damaged_store_is_refused = None

if __name__ == "__main__":
    unittest.main()
