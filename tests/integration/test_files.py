"""The files API of the real hlptd over HTTP: uploads (multipart and raw), list/show/content/
delete, every kind of bad upload, routing errors, API keys, SIGTERM, restart on the same data."""
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hlptd import PG_SKIP, PG_URL, Daemon, store_bytes, store_rows, wait_for  # noqa: E402

PC = '{"prompt": "2+2=", "completion": " 4"}\n{"prompt": "3+3=", "completion": " 6"}\n'
ALPACA = '{"instruction": "Say hi", "input": "", "output": "Hi"}\n'


class FilesTest(unittest.TestCase):
    pg = False  # FilesTestOnPostgres: the store in PostgreSQL (--store)

    def setUp(self):
        self.d = Daemon(pg=self.pg)
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
        self.assertLess(store_bytes(self.d), len(big) // 4)
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


@unittest.skipUnless(PG_URL, PG_SKIP)
class FilesTestOnPostgres(FilesTest):
    """FilesTest with the store in PostgreSQL, and what only PostgreSQL has: a server that is not
    there fails the start, naming it."""

    pg = True

    def test_unreachable_server_fails_start(self):
        url = "postgresql://hlpt:s3cretpw@127.0.0.1:1/hlpt"
        d = Daemon(data_dir=self.d.data_dir + "-other", args=["--store", url])
        os.mkdir(d.data_dir)
        self.addCleanup(shutil.rmtree, d.data_dir)
        self.addCleanup(d.kill)
        with self.assertRaises(RuntimeError) as cm:
            d.start(timeout=10)
        self.assertEqual(d.proc.returncode, 1)
        self.assertIn("cannot connect to the store, PostgreSQL database hlpt on 127.0.0.1 port 1", str(cm.exception))
        self.assertNotIn("s3cretpw", str(cm.exception))
        # HLPTD_STORE says the same.
        d = Daemon(data_dir=self.d.data_dir + "-other", env={"HLPTD_STORE": url})
        self.addCleanup(d.kill)
        with self.assertRaises(RuntimeError) as cm:
            d.start(timeout=10)
        self.assertIn("127.0.0.1 port 1", str(cm.exception))

    def test_store_is_in_postgres(self):
        status, f = self.d.upload("pg.jsonl", PC)
        self.assertEqual(status, 200, f)
        self.assertFalse(os.path.exists(os.path.join(self.d.data_dir, "hlpt.db")))
        self.assertEqual(store_rows(self.d, "SELECT id, bytes FROM files"), [(f["id"], len(PC))])


class LimitsTest(unittest.TestCase):
    def test_oversized_body_413(self):
        """Uploads are limited by --max-upload-bytes, JSON bodies by --max-body-bytes."""
        d = Daemon(args=["--max-upload-bytes", "4096", "--max-body-bytes", "2048"])
        self.addCleanup(d.cleanup)
        d.start()
        big = ('{"text": "%s"}\n' % ("x" * 100)) * 200
        status, body = d.upload("big.jsonl", big)
        self.assertEqual(status, 413, body)
        self.assertEqual(body["error"]["code"], "request_too_large")
        self.assertIn("4096", body["error"]["message"])
        self.assertIn("--max-upload-bytes", body["error"]["message"])
        # A body under the limit still works on the same daemon, larger than the JSON limit.
        mid = ('{"text": "%s"}\n' % ("y" * 100)) * 25
        self.assertEqual(d.upload("small.jsonl", mid)[0], 200)
        self.assertEqual(d.json("GET", "/v1/files")[1]["data"][0]["filename"], "small.jsonl")
        status, body = d.json("POST", "/v1/fine_tuning/jobs", {"training_file": "file-x", "suffix": "z" * 3000})
        self.assertEqual(status, 413, body)
        self.assertIn("2048 bytes (--max-body-bytes)", body["error"]["message"])

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


# ---- uploads that stream ----------------------------------------------------------------------------

BOUNDARY = "streamed-upload-boundary"
FORM_HEAD = ('--%s\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
             '--%s\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
             'Content-Type: application/octet-stream\r\n\r\n' % (BOUNDARY, BOUNDARY)).encode()
FORM_TAIL = ("\r\n--%s--\r\n" % BOUNDARY).encode()
FORM_CTYPE = "multipart/form-data; boundary=" + BOUNDARY
FILLER = "x" * 200


def line(i):
    """Line i of a generated training file; every line has the same length."""
    return '{"prompt": "q%09d", "completion": " %s"}\n' % (i, FILLER)


LINE_BYTES = len(line(0))


def jsonl_blocks(nlines, bad_at=None, per_block=4096):
    """The generated file in blocks of per_block lines; line bad_at (1-based) is broken JSON."""
    for start in range(0, nlines, per_block):
        text = "".join(line(i) if i + 1 != bad_at else line(i).replace(":", "=", 1)
                       for i in range(start, min(nlines, start + per_block)))
        yield text.encode()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def blob_files(data_dir, sub):
    """Files under <data-dir>/blobs/<sub>."""
    out = []
    for dirpath, _, names in os.walk(os.path.join(data_dir, "blobs", sub)):
        out += [os.path.join(dirpath, n) for n in names]
    return out


def post_stream(d, path, blocks, headers, timeout=300):
    """POST with the body from an iterable of blocks (chunked unless headers give Content-Length);
    returns (status, parsed JSON)."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    try:
        conn.request("POST", path, body=blocks, headers=headers, encode_chunked="Content-Length" not in headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


class StreamedUploadTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()

    def test_large_upload_keeps_memory_flat(self):
        """A 300 MB upload streams to a blob: hlptd's memory grows by far less than the body while
        it arrives, and the file is stored under its SHA-256."""
        # Under AddressSanitizer (make test-asan) freed memory is held in a quarantine (256 MB by
        # default) before it is reused: a small one keeps the measure about hlptd, not ASan.
        asan = ":".join(o for o in (os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=8") if o)
        d = Daemon(env={"ASAN_OPTIONS": asan})
        self.addCleanup(d.cleanup)
        d.start()
        self.assertEqual(d.upload("warm.jsonl", PC)[0], 200)
        nlines = 300 * 1000 * 1000 // LINE_BYTES
        size = nlines * LINE_BYTES
        sha = hashlib.sha256()
        rss0 = rss_kb(d.proc.pid)
        samples, sampling = [], threading.Event()
        sampling.set()

        def sample():
            while sampling.is_set():
                samples.append(rss_kb(d.proc.pid))
                time.sleep(0.02)

        def body():
            yield FORM_HEAD
            for block in jsonl_blocks(nlines):
                sha.update(block)
                yield block
            # The samples cover the whole body but its last bytes; what follows is the store's.
            sampling.clear()
            yield FORM_TAIL

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.monotonic()
        try:
            status, f = post_stream(d, "/v1/files", body(), {
                "Content-Type": FORM_CTYPE, "Content-Length": str(len(FORM_HEAD) + size + len(FORM_TAIL))})
        finally:
            sampling.clear()
            sampler.join()
        took = time.monotonic() - t0
        self.assertEqual(status, 200, f)
        self.assertEqual((f["bytes"], f["stats"]["examples"]), (size, nlines))
        self.assertGreater(len(samples), 10)
        grew = max(samples) - rss0
        self.assertLess(grew, 64 * 1024, "RSS grew by %d kB during a %d MB upload" % (grew, size >> 20))
        path = os.path.join(d.data_dir, "blobs", "sha256", sha.hexdigest()[:2], sha.hexdigest())
        self.assertEqual(os.path.getsize(path), size)
        self.assertEqual(blob_files(d.data_dir, "tmp"), [])
        print("\n  %d MB in %.1f s; RSS grew by %d kB while it arrived" % (size >> 20, took, grew), file=sys.stderr)

    def test_bad_line_in_the_middle(self):
        """A malformed line deep in a streamed upload: 400 naming that line, nothing stored, no
        temporary file left; the same for a raw chunked body."""
        d = self.d
        nlines, bad = 80000, 41234

        def form():
            yield FORM_HEAD
            yield from jsonl_blocks(nlines, bad_at=bad)
            yield FORM_TAIL
        status, body = post_stream(d, "/v1/files", form(), {"Content-Type": FORM_CTYPE})
        self.assertEqual(status, 400, body)
        self.assertEqual(body["error"]["param"], "file")
        self.assertIn("line %d: invalid JSON at byte 10" % bad, body["error"]["message"])
        status, body = post_stream(d, "/v1/files?filename=raw.jsonl", jsonl_blocks(nlines, bad_at=bad), {})
        self.assertEqual(status, 400, body)
        self.assertIn("line %d: invalid JSON" % bad, body["error"]["message"])
        self.assertEqual(d.json("GET", "/v1/files")[1]["data"], [])
        self.assertEqual(blob_files(d.data_dir, "tmp"), [])
        self.assertEqual(blob_files(d.data_dir, "sha256"), [])
        # A good raw chunked upload of the same size is stored.
        status, f = post_stream(d, "/v1/files?filename=raw.jsonl", jsonl_blocks(nlines), {})
        self.assertEqual((status, f["bytes"]), (200, nlines * LINE_BYTES), f)

    def test_fields_in_any_order(self):
        """`purpose` may follow the file; a wrong one still wins over the file's verdict, and the
        file is dropped."""
        d = self.d
        tail = '\r\n--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n%s\r\n--B--\r\n'
        head = '--B\r\nContent-Disposition: form-data; name="file"; filename="late.jsonl"\r\n\r\n'
        hdr = {"Content-Type": "multipart/form-data; boundary=B"}
        status, f = d.json("POST", "/v1/files", head + PC + tail % "fine-tune", hdr)
        self.assertEqual((status, f["filename"], f["bytes"]), (200, "late.jsonl", len(PC)), f)
        status, body = d.json("POST", "/v1/files", head + '{"bad"\n' + tail % "assistants", hdr)
        self.assertEqual((status, body["error"]["param"]), (400, "purpose"), body)
        self.assertEqual(blob_files(d.data_dir, "tmp"), [])

    def test_client_gone_mid_upload_leaves_nothing(self):
        """A client that drops the connection mid-upload: its temporary file goes, nothing is stored."""
        d = self.d
        total = 50 << 20
        sock = socket.create_connection(("127.0.0.1", d.port), timeout=30)
        sock.sendall(("POST /v1/files?filename=cut.jsonl HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      % total).encode())
        sent = 0
        for block in jsonl_blocks(total // LINE_BYTES):
            sock.sendall(block)
            sent += len(block)
            if sent > 10 << 20:
                break
        # The bytes went to a file as they came, not to memory.
        wait_for(lambda: [p for p in blob_files(d.data_dir, "tmp") if os.path.getsize(p) > 5 << 20], 30,
                 "the upload's temporary file")
        sock.close()
        wait_for(lambda: not blob_files(d.data_dir, "tmp"), 10, "the temporary file to go")
        self.assertEqual(d.json("GET", "/v1/files")[1]["data"], [])
        self.assertEqual(blob_files(d.data_dir, "sha256"), [])

    def test_limit_before_the_body(self):
        """An upload announced larger than --max-upload-bytes gets 413 before its body is sent;
        one that crosses it (chunked) gets 413 and leaves nothing behind."""
        d = Daemon(args=["--max-upload-bytes", "1M"])
        self.addCleanup(d.cleanup)
        d.start()
        sock = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        sock.sendall(b"POST /v1/files?filename=x.jsonl HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        head = sock.recv(4096).decode(errors="replace")
        sock.close()
        self.assertTrue(head.startswith("HTTP/1.1 413"), head)
        self.assertIn("1048576 bytes (--max-upload-bytes)", head)
        status, body = post_stream(d, "/v1/files?filename=x.jsonl", jsonl_blocks(2000000 // LINE_BYTES, per_block=100), {})
        self.assertEqual(status, 413, body)
        self.assertEqual(blob_files(d.data_dir, "tmp"), [])
        status, f = post_stream(d, "/v1/files?filename=x.jsonl", jsonl_blocks(1000000 // LINE_BYTES, per_block=100), {})
        self.assertEqual(status, 200, f)


class FullDiskUploadTest(unittest.TestCase):
    def test_disk_fills_mid_upload(self):
        """On a small tmpfs: an upload announced larger than the free space gets 507 before it is
        read; a chunked one that fills the disk gets 507 with a clear message and leaves nothing
        behind; a small one then still works."""
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        mnt = tempfile.mkdtemp(prefix="hlptd-upfull-")
        self.addCleanup(os.rmdir, mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt],
                          stderr=subprocess.DEVNULL).returncode != 0:
            self.skipTest("cannot mount a tmpfs here")
        self.addCleanup(subprocess.run, ["umount", "-l", mnt])
        data_dir = os.path.join(mnt, "data")
        os.mkdir(data_dir, 0o700)
        d = Daemon(data_dir=data_dir)
        log = tempfile.NamedTemporaryFile(prefix="hlptd-upfull-log-", delete=False)
        log.close()
        self.addCleanup(os.unlink, log.name)
        d.log_path = log.name
        self.addCleanup(d.kill)
        d.start()
        sock = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        sock.sendall(b"POST /v1/files?filename=x.jsonl HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        head = sock.recv(4096).decode(errors="replace")
        sock.close()
        self.assertTrue(head.startswith("HTTP/1.1 507"), head)
        self.assertIn("insufficient_storage", head)
        status, body = post_stream(d, "/v1/files?filename=x.jsonl", jsonl_blocks(30000000 // LINE_BYTES), {})
        self.assertEqual(status, 507, body)
        self.assertEqual(body["error"]["code"], "insufficient_storage")
        self.assertIn("could not be written to the disk", body["error"]["message"])
        self.assertIn("No space left on device", body["error"]["message"])
        self.assertEqual(blob_files(data_dir, "tmp"), [])
        self.assertEqual(d.upload("small.jsonl", PC)[0], 200)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
