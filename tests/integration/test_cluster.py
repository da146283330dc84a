"""Several hlptd nodes on one PostgreSQL store (docs/design.md, "Many nodes"): each node has its own
data directory and claims queued jobs from the shared queue; every job runs once, on one node, and
a node that starts again puts back to the queue only the jobs it ran itself.

Skipped without a PostgreSQL server ($HLPT_TEST_PG_URL; tests/run.sh starts one). Python 3 standard
library only.
"""
import hashlib
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hlptd import PG_SKIP, PG_URL, Daemon, store_rows, wait_for  # noqa: E402
from test_jobs import (DAEMON_ARGS, JOBS, LONG_HP, LONG_METHOD, SHORT_HP, TRAIN, DaemonCase, create, events,  # noqa: E402
                       get_job, upload, wait_job)


@unittest.skipUnless(PG_URL, PG_SKIP)
class ClusterTest(DaemonCase, unittest.TestCase):
    pg = True

    def node(self, other=None, workers=1, name=None):
        """A node: the first makes the database, `other`'s is shared."""
        args = ["--workers", str(workers)] + DAEMON_ARGS + (["--node-id", name] if name else [])
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
