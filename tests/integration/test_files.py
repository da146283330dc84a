"""The files API of the real hlptd over HTTP: uploads (multipart and raw), list/show/content/
delete, every kind of bad upload, routing errors, API keys, SIGTERM, restart on the same data."""
import hashlib
import json
import os
import signal
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hlptd import Daemon  # noqa: E402

PC = '{"prompt": "2+2=", "completion": " 4"}\n{"prompt": "3+3=", "completion": " 6"}\n'
ALPACA = '{"instruction": "Say hi", "input": "", "output": "Hi"}\n'


class FilesTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()

    def error(self, status, body, want_status, want_in_message, param=None):
        self.assertEqual(status, want_status, body)
        e = body["error"]
        self.assertEqual(set(e), {"message", "type", "param", "code"})
        self.assertIn(want_in_message, e["message"])
        if param is not None:
            self.assertEqual(e["param"], param)

    def test_health(self):
        status, body = self.d.json("GET", "/health")
        self.assertEqual((status, body), (200, {"status": "ok"}))

    def test_upload_multipart_and_show(self):
        status, f = self.d.upload("train.jsonl", PC)
        self.assertEqual(status, 200, f)
        self.assertTrue(f["id"].startswith("file-"))
        self.assertEqual(len(f["id"]), len("file-") + 24)
        self.assertEqual(f["object"], "file")
        self.assertEqual(f["bytes"], len(PC.encode()))
        self.assertEqual(f["filename"], "train.jsonl")
        self.assertEqual(f["purpose"], "fine-tune")
        self.assertEqual(f["status"], "processed")
        self.assertIsInstance(f["created_at"], int)
        self.assertEqual(f["stats"]["format"], "prompt_completion")
        self.assertEqual(f["stats"]["examples"], 2)
        status, g = self.d.json("GET", "/v1/files/" + f["id"])
        self.assertEqual((status, g), (200, f))
        status, headers, content = self.d.request("GET", "/v1/files/%s/content" % f["id"])
        self.assertEqual(status, 200)
        self.assertEqual(content, PC.encode())

    def test_upload_raw(self):
        status, f = self.d.json("POST", "/v1/files?filename=alpaca.jsonl&purpose=fine-tune", ALPACA,
                                {"Content-Type": "application/jsonl"})
        self.assertEqual(status, 200, f)
        self.assertEqual(f["filename"], "alpaca.jsonl")
        self.assertEqual(f["stats"]["format"], "alpaca")
        status, _, content = self.d.request("GET", "/v1/files/%s/content" % f["id"])
        self.assertEqual(content, ALPACA.encode())

    def test_list_pages_and_delete(self):
        ids = [self.d.upload("f%d.jsonl" % i, PC)[1]["id"] for i in range(3)]
        status, page = self.d.json("GET", "/v1/files")
        self.assertEqual(status, 200)
        self.assertEqual(page["object"], "list")
        self.assertEqual([f["id"] for f in page["data"]], ids[::-1])
        self.assertFalse(page["has_more"])
        status, page = self.d.json("GET", "/v1/files?limit=2")
        self.assertEqual([f["id"] for f in page["data"]], [ids[2], ids[1]])
        self.assertTrue(page["has_more"])
        status, page = self.d.json("GET", "/v1/files?limit=2&after=" + ids[1])
        self.assertEqual([f["id"] for f in page["data"]], [ids[0]])
        self.assertFalse(page["has_more"])
        self.error(*self.d.json("GET", "/v1/files?limit=0"), 400, "limit", param="limit")
        self.error(*self.d.json("GET", "/v1/files?after=file-nope"), 404, "file-nope", param="after")

        status, body = self.d.json("DELETE", "/v1/files/" + ids[1])
        self.assertEqual((status, body), (200, {"id": ids[1], "object": "file", "deleted": True}))
        self.error(*self.d.json("GET", "/v1/files/" + ids[1]), 404, ids[1], param="id")
        self.error(*self.d.json("DELETE", "/v1/files/" + ids[1]), 404, ids[1])
        status, page = self.d.json("GET", "/v1/files")
        self.assertEqual([f["id"] for f in page["data"]], [ids[2], ids[0]])

    def blob_path(self, content):
        """Where the daemon keeps content: <data-dir>/blobs/sha256/<2 hex>/<64 hex> (docs/design.md)."""
        h = hashlib.sha256(content).hexdigest()
        return os.path.join(self.d.data_dir, "blobs", "sha256", h[:2], h)

    def test_content_is_a_blob_and_delete_frees_it(self):
        """An upload is a file named by its SHA-256, served from there; the same bytes twice are one
        file, which stays until the last upload of them is deleted."""
        big = "".join(json.dumps({"text": "line %d of a file that is served from its blob" % i}) + "\n"
                      for i in range(40000)).encode()
        self.assertGreater(len(big), 2 << 20)
        path = self.blob_path(big)
        status, f = self.d.upload("big.jsonl", big)
        self.assertEqual(status, 200, f)
        with open(path, "rb") as b:
            self.assertEqual(b.read(), big)
        status, headers, content = self.d.request("GET", "/v1/files/%s/content" % f["id"])
        self.assertEqual((status, int(headers["content-length"])), (200, len(big)))
        self.assertEqual(content, big)
        status, g = self.d.upload("twin.jsonl", big)
        self.assertEqual(status, 200, g)
        # The database holds metadata only.
        self.assertLess(os.path.getsize(os.path.join(self.d.data_dir, "hlpt.db")), len(big) // 4)
        self.assertEqual(self.d.json("DELETE", "/v1/files/" + f["id"])[0], 200)
        self.assertTrue(os.path.exists(path), "the blob went while another file has its bytes")
        self.assertEqual(self.d.request("GET", "/v1/files/%s/content" % g["id"])[2], big)
        self.assertEqual(self.d.json("DELETE", "/v1/files/" + g["id"])[0], 200)
        self.assertFalse(os.path.exists(path), "DELETE left the bytes on disk")
        self.assertEqual(os.listdir(os.path.join(self.d.data_dir, "blobs", "tmp")), [])

    def test_invalid_uploads_store_nothing(self):
        cases = [
            ('{"prompt": "a", "completion": "b"}\n{"prompt": x}\n', "line 2: invalid JSON at byte 12"),
            ('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n', "line 2: field `completion` missing"),
            ('{"prompt": 5, "completion": "b"}\n', "line 1: field `prompt` must be a string"),
            ('', "file is empty"),
            (b'{"text": "a"}\n{"text": "caf\xc3"}\n', "line 2: invalid UTF-8"),
            ('{"text": "a"}\n' + ALPACA, "line 2: format alpaca differs from text of line 1"),
        ]
        for content, message in cases:
            with self.subTest(message=message):
                self.error(*self.d.upload("bad.jsonl", content), 400, message, param="file")
                raw = content if isinstance(content, bytes) else content.encode()
                self.error(*self.d.json("POST", "/v1/files?filename=bad.jsonl", raw), 400, message)
        self.error(*self.d.upload("x.jsonl", PC, purpose="assistants"), 400, "purpose", param="purpose")
        self.error(*self.d.json("POST", "/v1/files", PC), 400, "filename", param="filename")
        status, page = self.d.json("GET", "/v1/files")
        self.assertEqual(page["data"], [])
        blobs = os.path.join(self.d.data_dir, "blobs", "sha256")
        self.assertEqual([n for n in os.listdir(blobs)], [], "a refused upload left bytes on disk")

    def test_malformed_multipart(self):
        hdr = {"Content-Type": "multipart/form-data; boundary=XYZ"}
        self.error(*self.d.json("POST", "/v1/files", b"--XYZ\r\nno end", hdr), 400, "multipart")
        self.error(*self.d.json("POST", "/v1/files", b"garbage", hdr), 400, "multipart")
        body = b'--XYZ\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n--XYZ--\r\n'
        self.error(*self.d.json("POST", "/v1/files", body, hdr), 400, "`file` missing", param="file")
        self.error(*self.d.json("POST", "/v1/files", b"x", {"Content-Type": "multipart/form-data"}), 400,
                   "boundary")

    def test_routing_errors(self):
        self.error(*self.d.json("GET", "/v1/nothing"), 404, "/v1/nothing")
        self.error(*self.d.json("GET", "/v1/files/a/b/c"), 404, "unknown URL")
        status, headers, body = self.d.request("PUT", "/v1/files")
        self.assertEqual(status, 405)
        self.assertIn("POST", headers["allow"])
        self.assertIn("GET", headers["allow"])
        self.error(*self.d.json("PATCH", "/v1/files/file-x"), 405, "not allowed")
        # A trailing slash is forgiven.
        self.assertEqual(self.d.json("GET", "/v1/files/")[0], 200)

    def test_concurrent_requests(self):
        """Many clients at once: each hand-off to the loop comes back to its own connection."""
        ids = [self.d.upload("c%d.jsonl" % i, PC)[1]["id"] for i in range(4)]
        failures = []

        def worker(k):
            for i in range(15):
                fid = ids[(k + i) % len(ids)]
                status, f = self.d.json("GET", "/v1/files/" + fid)
                if status != 200 or f["id"] != fid:
                    failures.append((status, f))
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(failures, [])

    def test_sigterm_exits_zero(self):
        self.assertEqual(self.d.stop(signal.SIGTERM, timeout=5), 0, self.d.log())
        self.assertFalse(os.path.exists(os.path.join(self.d.data_dir, "hlptd.port")))

    def test_restart_keeps_files(self):
        status, f = self.d.upload("keep.jsonl", PC)
        self.assertEqual(status, 200)
        self.assertEqual(self.d.stop(), 0)
        d2 = Daemon(data_dir=self.d.data_dir)
        self.addCleanup(d2.kill)
        d2.start()
        status, g = d2.json("GET", "/v1/files/" + f["id"])
        self.assertEqual((status, g), (200, f))
        self.assertEqual(d2.request("GET", "/v1/files/%s/content" % f["id"])[2], PC.encode())
        self.assertEqual(d2.stop(), 0)

    def test_second_daemon_on_same_data_dir_refused(self):
        d2 = Daemon(data_dir=self.d.data_dir)
        self.addCleanup(d2.kill)
        with self.assertRaises(RuntimeError) as cm:
            d2.start(timeout=5)
        self.assertIn("in use by another hlptd", str(cm.exception))
        # The first one still answers and still has its port file.
        self.assertEqual(self.d.json("GET", "/health")[0], 200)


class LimitsTest(unittest.TestCase):
    def test_oversized_body_413(self):
        d = Daemon(args=["--max-body-bytes", "4096"])
        self.addCleanup(d.cleanup)
        d.start()
        big = ('{"text": "%s"}\n' % ("x" * 100)) * 200
        status, body = d.upload("big.jsonl", big)
        self.assertEqual(status, 413, body)
        self.assertEqual(body["error"]["code"], "request_too_large")
        self.assertIn("4096", body["error"]["message"])
        # A body under the limit still works on the same daemon.
        self.assertEqual(d.upload("small.jsonl", PC)[0], 200)
        self.assertEqual(d.json("GET", "/v1/files")[1]["data"][0]["filename"], "small.jsonl")

    def test_bad_model_dir_fails_start(self):
        with tempfile.TemporaryDirectory() as empty:
            d = Daemon(model=empty)
            self.addCleanup(d.cleanup)
            with self.assertRaises(RuntimeError) as cm:
                d.start(timeout=10)
            self.assertIn("config.json", str(cm.exception))
            self.assertEqual(d.proc.returncode, 1)


class ApiKeyTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        keys = os.path.join(self.tmp.name, "keys")
        with open(keys, "w") as f:
            f.write("# clients\nsk-first\n\n  sk-second  \n")
        self.d = Daemon(args=["--api-key-file", keys])
        self.addCleanup(self.d.cleanup)
        self.d.start()

    def test_keys(self):
        status, body = self.d.json("GET", "/v1/files")
        self.assertEqual(status, 401, body)
        self.assertEqual(body["error"]["code"], "invalid_api_key")
        for bad in ["Bearer sk-firs", "Bearer sk-first2", "Basic sk-first", "Bearer ", "sk-first"]:
            with self.subTest(header=bad):
                self.assertEqual(self.d.json("GET", "/v1/files", headers={"Authorization": bad})[0], 401)
        for good in ["Bearer sk-first", "Bearer sk-second", "bearer sk-second"]:
            with self.subTest(header=good):
                self.assertEqual(self.d.json("GET", "/v1/files", headers={"Authorization": good})[0], 200)
        # Health checks need no key; unknown routes are 404 either way.
        self.assertEqual(self.d.json("GET", "/health")[0], 200)
        self.assertEqual(self.d.json("GET", "/v1/nothing")[0], 404)
        self.d.api_key = "sk-first"
        self.assertEqual(self.d.upload("a.jsonl", PC)[0], 200)

    def test_no_keys_means_open(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        d.start()
        self.assertEqual(d.json("GET", "/v1/files")[0], 200)


if __name__ == "__main__":
    unittest.main()
