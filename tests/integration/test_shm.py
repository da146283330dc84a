"""The base model's weights are shared, not copied: a job's worker process maps the daemon's sealed
memfd read-only, and the pages of that mapping are the daemon's (none private to the worker). So for
either dtype of the base: the worker reads the dtype from the arena and packs nothing of its own."""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers_cli import cpu_has_bf16  # noqa: E402
from hlptd import ROOT, Daemon  # noqa: E402

DEMO = os.path.join(ROOT, "models", "demo")


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return out


def arena_mappings(pid):
    """[(perms, inode, size_kb, rss_kb, private_kb)] of the weight memfd in pid's address space."""
    maps, cur = [], None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and "-" in parts[0] and ":" in parts[3]:
                cur = None
                if "memfd:hlpt-base" in line:
                    cur = {"perms": parts[1], "inode": int(parts[4]), "Rss": 0, "Private_Clean": 0,
                           "Private_Dirty": 0, "Size": 0}
                    maps.append(cur)
            elif cur is not None and parts and parts[0].rstrip(":") in cur:
                cur[parts[0].rstrip(":")] = int(parts[1])
    return maps


class SharedWeights:
    """The test, run by one subclass per dtype."""

    dtype = None

    def setUp(self):
        self.d = Daemon(model=DEMO, args=["--workers", "1", "--threads", "1", "--dtype", self.dtype])
        self.d.start(timeout=60)
        self.assertIn("of %s weights" % self.dtype, self.d.log())

    def tearDown(self):
        self.d.kill()
        self.d.cleanup()

    def test_worker_maps_the_daemons_pages_read_only(self):
        with open(os.path.join(ROOT, "data", "math", "train.jsonl"), "rb") as f:
            content = b"".join(f.readlines()[:64])
        st, body = self.d.upload("train.jsonl", content)
        self.assertEqual(st, 200, body)
        st, job = self.d.json("POST", "/v1/fine_tuning/jobs", {
            "training_file": body["id"], "method": {"type": "h2lpt"},
            "hyperparameters": {"max_steps": 400, "batch_size": 4, "n_epochs": 100}})
        self.assertEqual(st, 200, job)
        worker = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and worker is None:
            st, j = self.d.json("GET", "/v1/fine_tuning/jobs/" + job["id"])
            if j["status"] == "running" and j["progress"]["step"] >= 1:
                for c in children(self.d.proc.pid):
                    with open("/proc/%d/cmdline" % c, "rb") as f:
                        if b"--worker" in f.read():
                            worker = c
            time.sleep(0.1)
        self.assertIsNotNone(worker, "no worker process found")
        mine, theirs = arena_mappings(self.d.proc.pid), arena_mappings(worker)
        self.assertTrue(mine and theirs, "the weight memfd is not mapped: %s / %s" % (mine, theirs))
        # The same memfd (same inode), mapped read-only and shared in the worker.
        self.assertEqual({m["inode"] for m in mine}, {m["inode"] for m in theirs})
        for m in theirs:
            self.assertEqual(m["perms"], "r--s")
            self.assertEqual(m["Private_Clean"] + m["Private_Dirty"], 0, m)
        rss = sum(m["Rss"] for m in theirs)
        size = sum(m["Size"] for m in theirs)
        self.assertGreater(rss, 0)
        print("%s: worker %d maps %d kB of weights, %d kB resident, 0 kB private" % (self.dtype, worker, size, rss))
        st, _ = self.d.json("POST", "/v1/fine_tuning/jobs/%s/cancel" % job["id"])
        self.assertEqual(st, 200)


class SharedWeightsF32(SharedWeights, unittest.TestCase):
    dtype = "f32"


class SharedWeightsBF16(SharedWeights, unittest.TestCase):
    dtype = "bf16"

    def setUp(self):
        if not cpu_has_bf16():
            self.skipTest("skipped (this CPU has no AVX512-BF16 or AMX)")
        super().setUp()


if __name__ == "__main__":
    unittest.main()
