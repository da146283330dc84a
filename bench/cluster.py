#!/usr/bin/env python3
"""Three hlptd nodes on one PostgreSQL, measured from outside (docs/cluster.md):

  claims       --jobs one-step jobs submitted at once, spread over three nodes of --workers each:
               jobs finished per second end to end (a worker process started per job), and the
               claims each node made (hlpt_job_claims_total);
  round trips  the database round trips of one node (hlpt_store_round_trips_total) while it trains
               a job of --steps logged steps alone, less its heartbeats' (two each), per step;
  cache miss   a --blob-mb MB file uploaded to one node, then read through another whose cache
               folder lacks it (fetched from the database, checked, put in place, sent), beside a
               second read of it there (a hit).

It starts its own PostgreSQL (tests/pg.sh: a Unix socket in a temporary directory) and its own
daemons (build/hlptd, the tests' fixture model) on 127.0.0.1 with temporary data directories, and
removes everything at the end; every wait is bounded. Python 3 standard library only.

    python3 bench/cluster.py [--jobs 30] [--workers 2] [--steps 200] [--blob-mb 10]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import hlptd  # noqa: E402
from hlptd import Daemon, store_rows, wait_for  # noqa: E402

JOBS = "/v1/fine_tuning/jobs"
TRAIN = "".join(json.dumps({"text": "the quick brown fox jumps over the lazy dog %d times" % i}) + "\n"
                for i in range(24))


def metric(d, name):
    """The value of a /metrics series (the first line of that name)."""
    status, _, body = d.request("GET", "/metrics")
    if status != 200:
        raise RuntimeError("/metrics: %d" % status)
    m = re.search(r"^%s(?:\{[^}]*\})? ([0-9.e+-]+)$" % re.escape(name), body.decode(), re.M)
    if not m:
        raise RuntimeError("/metrics has no %s" % name)
    return float(m.group(1))


def upload(d, content, name="train.jsonl"):
    status, f = d.upload(name, content)
    if status != 200:
        raise RuntimeError("upload: %d %s" % (status, f))
    return f["id"]


def create(d, file_id, hp, seed):
    status, job = d.json("POST", JOBS, {"training_file": file_id, "hyperparameters": hp, "seed": seed,
                                        "method": {"type": "lora", "lora": {"r": 2}}})
    if status != 200:
        raise RuntimeError("create: %d %s" % (status, job))
    return job["id"]


def status_of(d, job_id):
    return d.json("GET", "%s/%s" % (JOBS, job_id))[1]["status"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--blob-mb", type=int, default=10)
    args = ap.parse_args()
    url = subprocess.run([os.path.join(ROOT, "tests", "pg.sh"), "start"], check=True, capture_output=True,
                         text=True).stdout.strip()
    hlptd.PG_URL = url  # the server Daemon(pg=True) makes its database on
    nodes = []
    try:
        common = ["--workers", str(args.workers), "--threads", "1", "--lease-seconds", "15"]
        a = Daemon(args=common + ["--node-id", "node-a"], pg=True)
        nodes.append(a)
        a.start(timeout=60)
        for name in ("node-b", "node-c"):
            d = Daemon(args=common + ["--node-id", name], store_url=a.store_url)
            nodes.append(d)
            d.start(timeout=60)
        print("3 nodes on PostgreSQL (%s), --workers %d each, --threads 1" % (url, args.workers))
        train = upload(a, TRAIN)

        # Claims: one-step jobs, submitted round robin, taken by whichever node is free.
        hp = {"n_epochs": 1, "batch_size": 2, "max_steps": 1, "save_every": 1, "warmup_steps": 0, "max_length": 32}
        claims0 = [metric(d, "hlpt_job_claims_total") for d in nodes]
        t0 = time.monotonic()
        ids = [create(nodes[i % 3], train, hp, i) for i in range(args.jobs)]
        for job_id in ids:
            wait_for(lambda: status_of(a, job_id) == "succeeded", 600, "job %s" % job_id, interval=0.05)
        dt = time.monotonic() - t0
        per = [int(metric(d, "hlpt_job_claims_total") - c) for d, c in zip(nodes, claims0)]
        print("claims: %d one-step jobs finished in %.2f s: %.1f jobs/s end to end; claims per node %s"
              % (args.jobs, dt, args.jobs / dt, per))

        # Round trips per logged step: one job on node-a, the others stopped, watched in the database
        # itself (a read through node-a would be round trips of node-a's).
        hp = {"n_epochs": 1000, "batch_size": 2, "max_steps": args.steps, "save_every": args.steps, "warmup_steps": 0,
              "max_length": 32}
        for d in nodes[1:]:
            d.stop()
        rt0, beats0 = metric(a, "hlpt_store_round_trips_total"), metric(a, "hlpt_heartbeats_total")
        job_id = create(a, train, hp, 7)
        wait_for(lambda: store_rows(a, "SELECT status FROM jobs WHERE id = ?", (job_id,)) == [("succeeded",)], 600,
                 "the long job", interval=0.2)
        rt = metric(a, "hlpt_store_round_trips_total") - rt0
        beats = metric(a, "hlpt_heartbeats_total") - beats0
        logged = store_rows(a, "SELECT count(*) FROM metrics WHERE job_id = ?", (job_id,))[0][0]
        print("round trips: a job of %d logged steps took %d round trips on its node, %d of them its %d heartbeats: "
              "%.2f per logged step, the job's creation, start, checkpoint and end included"
              % (logged, rt, 2 * beats, beats, (rt - 2 * beats) / logged))

        # Cache miss: a file uploaded to node-a, read through node-b whose cache lacks it.
        b = nodes[1]
        b.start(timeout=60)
        size = args.blob_mb << 20
        line = json.dumps({"text": "x" * 1000}) + "\n"
        content = line * (size // len(line))
        fid = upload(a, content, "big.jsonl")
        times = []
        for _ in range(2):
            t = time.monotonic()
            status, _, body = b.request("GET", "/v1/files/%s/content" % fid, timeout=120)
            times.append(time.monotonic() - t)
            if status != 200 or len(body) != len(content):
                raise RuntimeError("content through node-b: %d, %d bytes" % (status, len(body)))
        print("cache miss: a %.1f MB file read through another node in %.1f ms (fetched from the database, checked, "
              "put in place, sent); read again there (a hit) in %.1f ms"
              % (len(content) / 1e6, times[0] * 1e3, times[1] * 1e3))
    finally:
        for d in nodes:
            try:
                d.cleanup()
            except Exception as e:  # noqa: BLE001 - the others are still cleaned up
                print("cleanup: %s" % e, file=sys.stderr)
        subprocess.run([os.path.join(ROOT, "tests", "pg.sh"), "stop", url], check=False)


if __name__ == "__main__":
    main()
