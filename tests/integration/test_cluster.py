"""Several hlptd nodes on one PostgreSQL store (docs/design.md, "Many nodes"): each node has its own
data directory and claims queued jobs from the shared queue; every job runs once, on one node, and
a node that starts again puts back to the queue only the jobs it ran itself.

ThreeNodeTest runs three nodes with two-second leases: jobs spread over them; a node killed with
SIGKILL mid-job loses it to another node, which finishes it with the adapter bytes of an
uninterrupted run; a node frozen past its lease comes back to find its job taken, and its worker is
stopped before anything it says is written; any node serves any node's adapter; an event stream on
one node follows a job on another live; pause, cancel and resume asked of one node act on a worker
on another; a node stopped with SIGTERM hands its job over at once.

Skipped without a PostgreSQL server ($HLPT_TEST_PG_URL; tests/run.sh starts one). Python 3 standard
library only.
"""
import hashlib
import http.client
import json
import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hlptd import PG_SKIP, PG_URL, Daemon, store_rows, wait_for  # noqa: E402
from test_jobs import (DAEMON_ARGS, JOBS, LONG_HP, LONG_METHOD, SHORT_HP, TRAIN, DaemonCase, adapter_weights,  # noqa: E402
                       checkpoints, children, create, events, get_job, messages, upload, wait_job, workers_of)
from test_jobs import reference_weights as tj_reference_weights  # noqa: E402


@unittest.skipUnless(PG_URL, PG_SKIP)
class ClusterTest(DaemonCase, unittest.TestCase):
    pg = True

    def node(self, other=None, workers=1, name=None, args=()):
        """A node: the first makes the database, `other`'s is shared."""
        args = ["--workers", str(workers)] + DAEMON_ARGS + (["--node-id", name] if name else []) + list(args)
        d = Daemon(args=args, pg=other is None, store_url=other.store_url if other else None)
        self.addCleanup(d.cleanup)
        self.addCleanup(self.reap, d)
        d.start()
        return d

    def test_two_nodes_run_each_job_once(self):
        a = self.node(name="node-a")
        b = self.node(a, name="node-b")
        # Both nodes hold the training file's bytes (the same content is the same blob).
        fa, fb = upload(a, TRAIN), upload(b, TRAIN)
        jobs = []
        for i in range(6):
            d, f = (a, fa) if i % 2 == 0 else (b, fb)
            jobs.append(create(d, f, SHORT_HP, {"type": "lora", "lora": {"r": 2}}, 100 + i)["id"])
        for i, job_id in enumerate(jobs):
            # Any node answers for any job.
            job = wait_job(a if i % 3 else b, job_id, "succeeded", timeout=120)
            self.assertEqual(job["status"], "succeeded")
        for job_id in jobs:
            starts = [e for e in events(a, job_id) if e["message"].startswith("Worker started")]
            self.assertEqual(len(starts), 1, "job %s started %d times" % (job_id, len(starts)))
        nodes = {job_id: node for job_id, node in store_rows(a, "SELECT id, node FROM jobs")}
        self.assertEqual(set(nodes), set(jobs))
        # Each node, idle when a job was created on it, claimed at least that one.
        self.assertEqual(set(nodes.values()), {"node-a", "node-b"}, nodes)

    def test_restart_recovers_only_its_own_jobs(self):
        a = self.node(name="node-a")
        f = upload(a, TRAIN)
        job_id = create(a, f, LONG_HP, LONG_METHOD, 7)["id"]

        wait_job(a, job_id, "running", timeout=60)
        self.assertEqual(store_rows(a, "SELECT node FROM jobs WHERE id = ?", (job_id,)), [("node-a",)])
        # A second node starting on the same store leaves node-a's running job alone.
        b = self.node(a, name="node-b")
        upload(b, TRAIN)  # the training file's blob, should b take the job later
        wait_for(lambda: "ready" in b.log(), 30, "node-b ready")
        self.assertEqual(get_job(b, job_id)["status"], "running")
        self.assertFalse([e for e in events(b, job_id) if "daemon stopped" in e["message"]])
        # node-a killed and started again: its own job goes back to the queue and resumes, once.
        a.stop(signal.SIGKILL)
        self.reap(a)
        a.start()
        wait_job(a, job_id, "succeeded", timeout=120)
        warned = [e for e in events(a, job_id) if "daemon stopped" in e["message"]]
        self.assertEqual(len(warned), 1)


    def test_node_fences_itself_while_the_database_hangs(self):
        """A database that stops answering (its processes stopped: no error, no timeout on a Unix
        socket) leaves the node's loop waiting in a call; the fence's watchdog kills the workers
        before their leases could run out anywhere. Once the database is back the job goes on, and
        ends as an uninterrupted run."""
        d = self.node(name="node-a", args=LEASE)
        job_id = create(d, upload(d, TRAIN), CLUSTER_HP, LONG_METHOD, CLUSTER_SEED)["id"]
        wait_for(lambda: get_job(d, job_id)["status"] == "running" and checkpoints(d, job_id), 120, "a checkpoint")
        self.assertEqual(len(workers_of(d)), 1)
        server = pg_processes()
        self.assertTrue(server)
        for pid in server:
            os.kill(pid, signal.SIGSTOP)
        try:
            # 2/3 of the 2 s lease, and the watchdog's tick.
            wait_for(lambda: not workers_of(d), 10, "the worker to be stopped")
            self.assertIn("has not answered a heartbeat", d.log())
        finally:
            for pid in server:
                os.kill(pid, signal.SIGCONT)
        job = wait_job(d, job_id, "succeeded", timeout=300)
        self.assertEqual(adapter_weights(d, job["fine_tuned_model"]), reference_weights())
        # A fenced worker is no worker death: nothing of it is written, no restart is counted.
        wait_for(lambda: "killed by the fence's watchdog" in d.log(), 10, "the node to say why")
        said = messages(d, job_id)
        self.assertFalse([m for m in said if "killed by signal" in m or "automatic restart" in m], said)

    def test_cache_folder_trimmed_least_recently_used(self):
        """On a shared store a node's blobs folder is a cache: past --cache-max-bytes the least
        recently used blobs go (none used in the last 10 minutes), and a file whose blob went is
        fetched again from the database when it is read."""
        d = self.node(name="node-a", args=LEASE + ["--cache-max-bytes", "250K"])
        texts = ["".join(json.dumps({"text": "%s %d" % (c * 40, i)}) + "\n" for i in range(2000)) for c in "xyz"]
        ids = [upload(d, t, "%d.jsonl" % i) for i, t in enumerate(texts)]
        shas = [store_rows(d, "SELECT sha256 FROM files WHERE id = ?", (f,))[0][0] for f in ids]
        sizes = [len(t.encode()) for t in texts]
        self.assertTrue(all(100 << 10 < n < 125 << 10 for n in sizes), sizes)
        # All three used just now: over the size, yet nothing goes.
        time.sleep(3)
        self.assertEqual(set(shas) & blob_files(d), set(shas))
        # The first used two hours ago, the second one hour ago: the first goes, which is enough.
        now = time.time()
        os.utime(blob_path(d, shas[0]), (now - 7200, now - 7200))
        os.utime(blob_path(d, shas[1]), (now - 3600, now - 3600))
        wait_for(lambda: shas[0] not in blob_files(d), 10, "the least recently used blob to go")
        self.assertIn("trimmed the blobs folder: 1 blob(s)", d.log())
        self.assertEqual(blob_files(d) & set(shas), set(shas[1:]))
        # Read again, it comes back from the database, whole.
        status, _, body = d.request("GET", "/v1/files/%s/content" % ids[0])
        self.assertEqual((status, body.decode()), (200, texts[0]))
        self.assertIn(shas[0], blob_files(d))

    def test_node_serves_what_another_node_made(self):
        a = self.node(name="node-a")
        f = upload(a, TRAIN)
        job_id = create(a, f, SHORT_HP, {"type": "lora", "lora": {"r": 2}}, 5)["id"]
        model = wait_job(a, job_id, "succeeded", timeout=120)["fine_tuned_model"]
        ask = {"model": model, "prompt": "the quick", "max_tokens": 4, "temperature": 0}
        status, want = a.json("POST", "/v1/completions", ask)
        self.assertEqual(status, 200, want)
        # Every blob a row names is in the database too.
        named = {r[0] for r in store_rows(a, "SELECT sha256 FROM files UNION SELECT sha256 FROM checkpoints"
                                             " UNION SELECT sha256 FROM adapters") if r[0]}
        self.assertEqual(named, {r[0] for r in store_rows(a, "SELECT sha256 FROM blobs")})

        # Node b starts with no blob at all, and answers from the database's copies.
        b = self.node(a, name="node-b")
        self.assertEqual(blob_files(b), set())
        status, _, body = b.request("GET", "/v1/files/%s/content" % f)
        self.assertEqual((status, body.decode()), (200, TRAIN))
        status, got = b.json("POST", "/v1/completions", ask)
        self.assertEqual(status, 200, got)
        self.assertEqual(got["choices"][0]["text"], want["choices"][0]["text"])
        status, page = b.json("GET", "%s/%s/checkpoints?limit=100" % (JOBS, job_id))
        self.assertEqual([c["step_number"] for c in page["data"]], [6, 4, 2])
        self.assertTrue(blob_files(b) < named, blob_files(b))

        # A damaged copy in b's cache: b fetches the checkpoint's state again and serves it.
        ck = page["data"][-1]
        sha = store_rows(a, "SELECT sha256 FROM checkpoints WHERE id = ?", (ck["id"],))[0][0]
        path = blob_path(b, sha)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(b"not the checkpoint")
        status, out = b.json("POST", "/v1/completions", dict(ask, model=ck["fine_tuned_model_checkpoint"]))
        self.assertEqual(status, 200, out)
        with open(path, "rb") as blob:
            self.assertEqual(hashlib.sha256(blob.read()).hexdigest(), sha)

        # The database's copy goes with the last row that names it.
        status, _ = a.json("DELETE", "/v1/files/" + f)
        self.assertEqual(status, 200)
        fsha = [s for s in named if store_rows(a, "SELECT 1 FROM blobs WHERE sha256 = ?", (s,))]
        self.assertEqual(len(fsha), len(named) - 1)


# A job long enough to be interrupted on one node and finished on another (checkpoints every 10
# steps), and its adapter from one uninterrupted run on one node, made once.
CLUSTER_HP = dict(LONG_HP, max_steps=600)
CLUSTER_SEED = 4321
LEASE = ["--lease-seconds", "2"]


def reference_weights():
    return tj_reference_weights(CLUSTER_HP, CLUSTER_SEED)


def pg_processes():
    """The test's PostgreSQL server: its postmaster and every process under it."""
    host = re.search(r"[?&]host=([^&]+)", PG_URL).group(1)
    with open(os.path.join(host, "data", "postmaster.pid")) as f:
        top = int(f.readline())
    out, todo = [], [top]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children(pid)
    return out


def node_of(d, job_id):
    return store_rows(d, "SELECT node FROM jobs WHERE id = ?", (job_id,))[0][0]


def lease_of(d, job_id):
    return store_rows(d, "SELECT lease_until FROM jobs WHERE id = ?", (job_id,))[0][0]


@unittest.skipUnless(PG_URL, PG_SKIP)
class ThreeNodeTest(DaemonCase, unittest.TestCase):
    pg = True

    def setUp(self):
        self.a = self.node(None, "node-a")
        self.b = self.node(self.a, "node-b")
        self.c = self.node(self.a, "node-c")
        self.nodes = {"node-a": self.a, "node-b": self.b, "node-c": self.c}
        self.train = upload(self.a, TRAIN)

    def node(self, other, name, workers=1):
        args = ["--workers", str(workers), "--node-id", name] + LEASE + DAEMON_ARGS
        d = Daemon(args=args, pg=other is None, store_url=other.store_url if other else None)
        self.addCleanup(d.cleanup)
        self.addCleanup(self.reap, d)
        d.start()
        return d

    def running_on(self, job_id, d):
        """Waits until the job runs on node d and has stored a checkpoint."""
        wait_for(lambda: get_job(d, job_id)["status"] == "running" and checkpoints(d, job_id), 120,
                 "job %s running with a checkpoint" % job_id)
        name = node_of(d, job_id)
        return name

    def long_job(self):
        """A long job, running with a checkpoint stored: (its id, the node running it, the two others)."""
        job_id = create(self.a, self.train, CLUSTER_HP, LONG_METHOD, CLUSTER_SEED)["id"]
        runner = self.nodes[self.running_on(job_id, self.a)]
        return (job_id, runner) + tuple(d for d in (self.a, self.b, self.c) if d is not runner)

    def assert_reference(self, d, job):
        self.assertEqual(hashlib.sha256(adapter_weights(d, job["fine_tuned_model"])).hexdigest(),
                         hashlib.sha256(reference_weights()).hexdigest())

    def test_six_jobs_over_three_nodes_and_any_node_serves(self):
        hp = dict(SHORT_HP, max_steps=40, save_every=20)
        ids = []
        for i in range(6):
            d = (self.a, self.b, self.c)[i % 3]
            ids.append(create(d, self.train, hp, {"type": "lora", "lora": {"r": 2}}, 100 + i)["id"])
        done = [wait_job((self.b, self.c, self.a)[i % 3], job_id, "succeeded", timeout=240) for i, job_id in enumerate(ids)]
        for job_id in ids:
            starts = [m for m in messages(self.a, job_id) if m.startswith("Worker started")]
            self.assertEqual(len(starts), 1, "job %s started %d times" % (job_id, len(starts)))
        ran = {job_id: node_of(self.a, job_id) for job_id in ids}
        self.assertEqual(set(ran.values()), set(self.nodes), ran)
        # Leases are given up when the jobs end.
        self.assertEqual(store_rows(self.a, "SELECT count(*) FROM jobs WHERE lease_until IS NOT NULL"), [(0,)])

        # An adapter trained on node-a, served by node-c (and node-b) as node-a serves it.
        job = next(j for j in done if ran[j["id"]] == "node-a")
        ask = {"model": job["fine_tuned_model"], "prompt": "the quick", "max_tokens": 6, "temperature": 0}
        answers = []
        for d in (self.c, self.a, self.b):
            status, got = d.json("POST", "/v1/completions", ask)
            self.assertEqual(status, 200, got)
            answers.append(got["choices"][0]["text"])
        self.assertEqual(len(set(answers)), 1, answers)

    def test_kill_9_mid_job_finishes_on_another_node_exactly(self):
        reference_weights()
        job_id, ra, rb, rc = self.long_job()
        name = node_of(rb, job_id)
        ra.stop(signal.SIGKILL)
        self.reap(ra)
        # Within a lease and a heartbeat one of the others takes the job over from its checkpoint.
        job = wait_job(rb, job_id, "succeeded", timeout=300)
        self.assertNotEqual(node_of(rb, job_id), name)
        said = messages(rb, job_id)
        self.assertTrue([m for m in said if "Node %s stopped renewing its lease" % name in m], said)
        self.assertTrue([m for m in said if "resumed from the checkpoint" in m], said)
        self.assert_reference(rc, job)
        # Each step's metrics once, though steps after the checkpoint ran twice.
        status, page = rc.json("GET", "%s/%s/metrics" % (JOBS, job_id))
        self.assertEqual([m["step"] for m in page["data"]], list(range(1, job["progress"]["total_steps"] + 1)))

    def test_frozen_node_loses_its_job_and_writes_nothing(self):
        reference_weights()
        job_id, ra, rb, _ = self.long_job()
        name = node_of(rb, job_id)
        self.assertEqual(len(workers_of(ra)), 1)
        # The node stops answering (its worker trains on, its lines wait in the pipe); its lease runs
        # out and another node takes the job.
        os.kill(ra.proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: node_of(rb, job_id) != name, 60, "a takeover")
            taken_by = node_of(rb, job_id)
            epoch = store_rows(rb, "SELECT lease_epoch FROM jobs WHERE id = ?", (job_id,))[0][0]
        finally:
            os.kill(ra.proc.pid, signal.SIGCONT)
        # Back, the node finds its writes refused: its worker is stopped, nothing of it lands.
        wait_for(lambda: not workers_of(ra), 30, "the stale worker to be stopped")
        wait_for(lambda: "stopping its worker here" in ra.log(), 10, "the stale node to say so")
        job = wait_job(ra, job_id, "succeeded", timeout=300)
        self.assertEqual(node_of(ra, job_id), taken_by)
        self.assertEqual(store_rows(ra, "SELECT lease_epoch FROM jobs WHERE id = ?", (job_id,))[0][0], epoch)
        self.assert_reference(ra, job)
        self.assertEqual(store_rows(ra, "SELECT count(*) FROM adapters WHERE job_id = ?", (job_id,)), [(1,)])
        status, page = ra.json("GET", "%s/%s/metrics" % (JOBS, job_id))
        self.assertEqual([m["step"] for m in page["data"]], list(range(1, job["progress"]["total_steps"] + 1)))

    def test_event_stream_on_another_node_follows_the_job(self):
        job_id, ra, rb, _ = self.long_job()
        name = node_of(rb, job_id)
        conn = http.client.HTTPConnection("127.0.0.1", rb.port, timeout=60)
        self.addCleanup(conn.close)
        conn.request("GET", "%s/%s/events?stream=true" % (JOBS, job_id))
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        live, steps, done = 0, set(), False
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not done:
            line = resp.readline().decode().rstrip("\r\n")
            if not line.startswith("data: "):
                continue
            payload = line[len("data: "):]
            if payload == "[DONE]":
                done = True
                continue
            e = json.loads(payload)
            if e["message"].startswith("Step "):
                steps.add(e["data"]["step"] if isinstance(e.get("data"), dict) else e["message"])
                # Seen while the job still runs on the other node, whose progress this node shows
                # too: the stream is live, not a replay at the end.
                if len(steps) % 50 == 1:
                    job = get_job(rb, job_id)
                    live += job["status"] == "running" and job["progress"]["step"] > 0 and job["node"] == name
        self.assertTrue(done, "the stream ended with [DONE]")
        self.assertGreater(live, 1)
        self.assertEqual(len(steps), CLUSTER_HP["max_steps"])
        self.assertEqual(node_of(ra, job_id), name)

    def test_pause_and_cancel_through_another_node(self):
        reference_weights()
        job_id, ra, rb, rc = self.long_job()
        # Paused through another node: the runner's worker checkpoints and stops, and gives the
        # lease up.
        status, _ = rc.json("POST", "%s/%s/pause" % (JOBS, job_id))
        self.assertEqual(status, 200)
        wait_for(lambda: not workers_of(ra), 30, "the runner's worker to stop")
        wait_for(lambda: lease_of(rb, job_id) is None, 30, "the lease given up")
        self.assertEqual(get_job(rb, job_id)["status"], "paused")
        self.assertTrue([m for m in messages(rb, job_id) if m == "Job paused at its last checkpoint"])
        # The runner goes away; resumed through another node, the job finishes elsewhere, as if
        # never paused.
        name = node_of(rb, job_id)
        ra.stop(signal.SIGTERM)
        status, _ = rb.json("POST", "%s/%s/resume" % (JOBS, job_id))
        self.assertEqual(status, 200)
        job = wait_job(rb, job_id, "succeeded", timeout=300)
        self.assertNotEqual(node_of(rb, job_id), name)
        self.assert_reference(rb, job)

        # Cancelled through one node while it runs on the other: its worker is killed at once.
        other = create(rc, self.train, CLUSTER_HP, LONG_METHOD, 9)["id"]
        wait_for(lambda: get_job(rc, other)["status"] == "running", 60, "the second job running")
        runner = self.nodes[node_of(rc, other)]
        asked = rc if runner is rb else rb
        wait_for(lambda: workers_of(runner), 30, "its worker")
        status, _ = asked.json("POST", "%s/%s/cancel" % (JOBS, other))
        self.assertEqual(status, 200)
        wait_for(lambda: not workers_of(runner), 10, "the cancelled job's worker to be killed")
        self.assertEqual(get_job(runner, other)["status"], "cancelled")
        wait_for(lambda: lease_of(runner, other) is None, 10, "its lease given up")

    def test_sigterm_hands_the_job_over_at_once(self):
        reference_weights()
        job_id, ra, rb, rc = self.long_job()
        name = node_of(rb, job_id)
        ra.stop(signal.SIGTERM)
        # Taken by another node as soon as the runner gave it up, long before a lease would expire.
        wait_for(lambda: node_of(rb, job_id) != name and get_job(rb, job_id)["status"] == "running", 30, "a takeover")
        job = wait_job(rb, job_id, "succeeded", timeout=300)
        said = messages(rb, job_id)
        self.assertTrue([m for m in said if "Interrupted by the daemon's shutdown" in m], said)
        self.assertFalse([m for m in said if "stopped renewing" in m], said)
        self.assert_reference(rc, job)
        self.assertEqual(store_rows(rb, "SELECT state FROM nodes WHERE id = ?", (name,)), [("stopped",)])


def blob_path(d, sha):
    return os.path.join(d.data_dir, "blobs", "sha256", sha[:2], sha)


def blob_files(d):
    """The names of the blobs in a node's folder."""
    out = set()
    for _, _, names in os.walk(os.path.join(d.data_dir, "blobs", "sha256")):
        out.update(n for n in names if len(n) == 64)
    return out


if __name__ == "__main__":
    unittest.main()
