"""GET /v1/nodes and the per-node figures of /metrics on the real hlptd (docs/rest.md, "Nodes";
docs/design.md, "Many nodes"): one node on SQLite lists itself, the lease of the job it runs, and
its new row after a drain and a restart; on PostgreSQL ($HLPT_TEST_PG_URL), nodes sharing one
store list each other, a node killed with SIGKILL turns `lost` once its lease has run out and one
stopped with SIGTERM says `stopped`. Python 3 standard library only.
"""
import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hlptd import PG_SKIP, PG_URL, Daemon, store_rows, wait_for  # noqa: E402
from test_jobs import DAEMON_ARGS, LONG_HP, LONG_METHOD, TRAIN, DaemonCase, create, upload, wait_job  # noqa: E402

# Long enough to be running whenever the test looks (it is drained or killed, never finished).
RUNNING_HP = dict(LONG_HP, max_steps=20000)
LEASE = 3  # seconds: a heartbeat a second


def nodes(d):
    status, body = d.json("GET", "/v1/nodes")
    if status != 200:
        raise AssertionError("GET /v1/nodes: %d %s" % (status, body))
    if body["object"] != "list" or body["has_more"] is not False:
        raise AssertionError("not a list: %s" % body)
    return {n["id"]: n for n in body["data"]}


def metrics(d):
    """{(name, labels text): value} of /metrics."""
    status, _, body = d.request("GET", "/metrics")
    if status != 200:
        raise AssertionError("GET /metrics: %d" % status)
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r'^([a-z_:]+)(?:\{(.*)\})? (\S+)$', line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


class NodesTest(DaemonCase, unittest.TestCase):
    def test_one_node(self):
        args = ["--node-id", "solo", "--advertise-url", "http://solo.example:8123", "--lease-seconds", str(LEASE)]
        d = self.daemon(args=args, workers=2)
        got = nodes(d)
        self.assertEqual(list(got), ["solo"])
        me = got["solo"]
        self.assertEqual((me["object"], me["state"], me["self"]), ("node", "up", True))
        self.assertEqual((me["url"], me["workers"], me["pid"], me["lease_seconds"]),
                         ("http://solo.example:8123", 2, d.proc.pid, LEASE))
        self.assertGreaterEqual(me["heartbeat_age_s"], 0)
        self.assertLess(me["heartbeat_age_s"], LEASE)
        self.assertEqual(me["leases"], [])
        self.assertNotIn("orphan_leases", d.json("GET", "/v1/nodes")[1])
        # The heartbeat goes on.
        first = me["heartbeat_at"]
        wait_for(lambda: nodes(d)["solo"]["heartbeat_at"] > first, 10, "a later heartbeat")

        job = create(d, upload(d, TRAIN), RUNNING_HP, LONG_METHOD, 1234)
        wait_job(d, job["id"], "running", timeout=30)
        # The row's `running` is the last heartbeat's; the lease is the claim's.
        me = wait_for(lambda: (n := nodes(d)["solo"])["leases"] and n["running"] == 1 and n, 10, "the job's lease")
        self.assertEqual(len(me["leases"]), 1, me)
        lease = me["leases"][0]
        self.assertEqual((lease["job_id"], lease["epoch"], lease["status"]), (job["id"], 1, "running"))
        self.assertGreater(lease["expires_in_s"], 0)
        self.assertLessEqual(lease["expires_in_s"], LEASE)

        m = metrics(d)
        self.assertEqual(m[("hlpt_node_info", 'node="solo",url="http://solo.example:8123"')], 1)
        self.assertGreaterEqual(m[("hlpt_job_claims_total", 'node="solo"')], 1)
        self.assertEqual(m[("hlpt_leases_held", 'node="solo"')], 1)
        self.assertGreaterEqual(m[("hlpt_heartbeats_total", 'node="solo"')], 1)
        for name in ("hlpt_job_takeovers_total", "hlpt_heartbeat_failures_total", "hlpt_leases_lost_total",
                     "hlpt_store_round_trips_total", "hlpt_blob_fetches_total", "hlpt_blob_fetched_bytes_total",
                     "hlpt_blob_fetch_seconds_total"):
            self.assertEqual(m[(name, 'node="solo"')], 0, name)  # SQLite: one node, no database server

        # Drained, the node's row says so; started again, it writes a new one and claims the job anew.
        self.assertEqual(d.stop(signal.SIGTERM, timeout=20), 0, d.log()[-3000:])
        self.assertEqual(store_rows(d, "SELECT state FROM nodes WHERE id = ?", ("solo",)), [("stopped",)])
        d2 = self.daemon(data_dir=d.data_dir, args=args, workers=2)
        again = nodes(d2)["solo"]
        self.assertEqual((again["state"], again["self"], again["pid"]), ("up", True, d2.proc.pid))
        self.assertGreater(again["heartbeat_at"], me["heartbeat_at"])
        self.assertGreaterEqual(again["started_at"], me["started_at"])
        self.assertNotEqual((again["pid"], again["started_at"]), (me["pid"], me["started_at"]))
        lease = wait_for(lambda: nodes(d2)["solo"]["leases"], 30, "the job claimed again")[0]
        self.assertEqual((lease["job_id"], lease["epoch"]), (job["id"], 2))


@unittest.skipUnless(PG_URL, PG_SKIP)
class NodesOnPostgresTest(DaemonCase, unittest.TestCase):
    pg = True

    def node(self, name, other=None):
        """A node with a short lease: the first makes the database, `other`'s is shared."""
        args = ["--workers", "1", "--node-id", name, "--lease-seconds", "2"] + DAEMON_ARGS
        d = Daemon(args=args, pg=other is None, store_url=other.store_url if other else None)
        self.addCleanup(d.cleanup)
        self.addCleanup(self.reap, d)
        d.start()
        return d

    def test_nodes_list_each_other(self):
        a = self.node("node-a")
        b = self.node("node-b", a)
        # /health answers 200 just before a node's first heartbeat writes its row.
        wait_for(lambda: len(nodes(a)) == 2, 10, "node-b's row")
        for d, me in ((a, "node-a"), (b, "node-b")):
            got = nodes(d)
            self.assertEqual(sorted(got), ["node-a", "node-b"])
            self.assertEqual({n["id"] for n in got.values() if n["self"]}, {me})
            self.assertEqual({n["state"] for n in got.values()}, {"up"})
            self.assertEqual(got["node-a"]["pid"], a.proc.pid)
            self.assertEqual(got["node-b"]["pid"], b.proc.pid)
            self.assertTrue(all(n["heartbeat_age_s"] < 2 for n in got.values()), got)
        m = metrics(a)
        self.assertGreater(m[("hlpt_store_round_trips_total", 'node="node-a"')], 0)
        self.assertIn(("hlpt_node_info", 'node="node-a",url="%s"' % nodes(a)["node-a"]["url"]), m)

    def test_lost_and_stopped(self):
        a = self.node("node-a")
        b = self.node("node-b", a)
        c = self.node("node-c", a)
        wait_for(lambda: len(nodes(a)) == 3, 10, "three nodes")
        t0 = time.monotonic()
        b.stop(signal.SIGKILL)
        self.assertEqual(c.stop(signal.SIGTERM), 0, c.log()[-3000:])
        got = nodes(a)
        self.assertEqual(got["node-c"]["state"], "stopped")
        if time.monotonic() - t0 < 1:  # a heartbeat is at most 2/3 s old: b still looks up
            self.assertEqual(got["node-b"]["state"], "up")
        got = wait_for(lambda: nodes(a)["node-b"]["state"] == "lost" and nodes(a), 10, "node-b lost")
        self.assertGreater(got["node-b"]["heartbeat_age_s"], 2)
        self.assertGreaterEqual(time.monotonic() - t0, 1)
        self.assertEqual(got["node-c"]["state"], "stopped")  # however old its heartbeat
        self.assertEqual(got["node-a"]["state"], "up")


if __name__ == "__main__":
    unittest.main()
