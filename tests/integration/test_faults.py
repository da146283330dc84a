"""Fault injection against the real hlptd on 127.0.0.1 (docs/faults.md): SIGTERM while generations
stream and a job runs; pause, cancel and SIGTERM at random instants of many jobs' lives, their first
milliseconds included; kill -9 at random points (mid-upload, mid-step, mid-checkpoint, mid-import);
a full disk (a small tmpfs, when the test may mount one); a corpus of hostile requests. Every test is
bounded in requests and time and stops by itself. Python 3 standard library only.

Jobs train the tiny fixture model (tests/fixtures/llama2-mha-f32), as in test_jobs.py, whose helpers
and uninterrupted reference run this file shares.
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


class FaultsTest(unittest.TestCase):
    def daemon(self, data_dir=None, args=(), workers=1, log_path=None):
        d = Daemon(data_dir=data_dir, args=["--workers", str(workers)] + tj.DAEMON_ARGS + list(args))
        if log_path:
            d.log_path = log_path
        self.addCleanup(d.cleanup)
        self.addCleanup(self.reap, d)
        d.start()
        return d

    def reap(self, d):
        if d.proc is not None and d.proc.poll() is None:
            for p in tj.workers_of(d):
                tj.kill_quietly(p)

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
        msgs = tj.messages(d, job["id"])
        self.assertIn("Pausing: the disk is full. The job stops at its next checkpoint; free some space, then resume it",
                      msgs)
        self.assertEqual(msgs[-1], "Job paused at its last checkpoint")
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

if __name__ == "__main__":
    unittest.main()
