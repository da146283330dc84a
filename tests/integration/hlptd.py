"""Helpers for integration tests: start the real hlptd on 127.0.0.1 with a temporary data
directory, talk HTTP to it, stop it. Python 3 standard library only.

    d = Daemon()            # or Daemon(data_dir=..., args=["--api-key-file", f])
    d.start()               # waits for the port file and /health 200
    status, body = d.json("GET", "/v1/files")
    d.stop()                # SIGTERM; returns the exit code

The binary is $HLPT_BUILD/hlptd (default build/hlptd), run from the repository root.

PostgreSQL: Daemon(pg=True) keeps the store in a database of its own on the server that
$HLPT_TEST_PG_URL names (tests/run.sh starts one with tests/pg.sh), made for it and dropped at
cleanup(); a later Daemon on the same data directory opens the same database, as a restarted hlptd
would. store_rows() and store_bytes() read the store whichever backend holds it.
"""
import glob
import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("HLPT_BUILD", "build")
HLPTD = os.path.join(ROOT, BUILD, "hlptd") if not os.path.isabs(BUILD) else os.path.join(BUILD, "hlptd")
MODEL = os.path.join(ROOT, "tests", "fixtures", "llama2-mha-f32")
PG_URL = os.environ.get("HLPT_TEST_PG_URL") or None
PG_SKIP = "HLPT_TEST_PG_URL names no PostgreSQL server (tests/run.sh starts one with tests/pg.sh)"

# The PostgreSQL database of each data directory that has one: {data_dir: URL}.
_pg_databases = {}


def psql(url, sql):
    """Runs sql on the database at url with psql; returns its unaligned output."""
    exe = shutil.which("psql") or (sorted(glob.glob("/usr/lib/postgresql/*/bin/psql")) or ["psql"])[-1]
    r = subprocess.run([exe, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("psql: %s: %s" % (sql, r.stderr.strip()))
    return r.stdout


def pg_url_with_db(base, name):
    """The server's URL with another database (the URL's path)."""
    u = urllib.parse.urlsplit(base)
    # Not urlunsplit: it drops the `//` of an empty host (postgresql:///db?host=/socket/dir).
    return "%s://%s/%s%s" % (u.scheme, u.netloc, name, "?" + u.query if u.query else "")


def pg_rows(url, query, args=()):
    """Rows of a query as tuples; `?` in the query stands for each of args in turn (quoted here)."""
    parts = query.split("?")
    if len(parts) != len(args) + 1:
        raise ValueError("%d `?` for %d arguments" % (len(parts) - 1, len(args)))
    def literal(v):
        return "NULL" if v is None else str(v) if isinstance(v, int) else "'%s'" % str(v).replace("'", "''")
    text = parts[0] + "".join(literal(a) + p for a, p in zip(args, parts[1:]))
    out = psql(url, "SELECT coalesce(json_agg(row_to_json(t)), '[]') FROM (%s) t" % text)
    return [tuple(v for _, v in row) for row in json.loads(out, object_pairs_hook=list)]


def store_rows(d, query, args=()):
    """Rows of a query on the daemon's store: <data-dir>/hlpt.db read with sqlite3 (in WAL mode, a
    reader in another process sees what the daemon committed), or its PostgreSQL database."""
    if d.store_url:
        return pg_rows(d.store_url, query, args)
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.data_dir, "hlpt.db"), uri=True, timeout=10)
    try:
        return db.execute(query, args).fetchall()
    finally:
        db.close()


def store_bytes(d):
    """What the store takes on disk: SQLite's files, or PostgreSQL's tables with their indexes."""
    if d.store_url:
        return int(pg_rows(d.store_url, "SELECT coalesce(sum(pg_total_relation_size(oid)), 0) FROM pg_class "
                                        "WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'")[0][0])
    return sum(os.path.getsize(os.path.join(d.data_dir, n)) for n in os.listdir(d.data_dir) if n.startswith("hlpt.db"))


class Daemon:
    def __init__(self, data_dir=None, args=(), env=None, model=MODEL, pg=False, store_url=None):
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hlptd-test-")
            data_dir = self._tmp.name
        self.data_dir = data_dir
        # The store: --store URL of the data directory's database (a new one for pg=True), or SQLite.
        self._pg_db = None
        if pg and data_dir not in _pg_databases:
            if not PG_URL:
                raise RuntimeError(PG_SKIP)
            self._pg_db = "hlpt_t" + uuid.uuid4().hex[:16]
            psql(PG_URL, "CREATE DATABASE " + self._pg_db)
            _pg_databases[data_dir] = pg_url_with_db(PG_URL, self._pg_db)
        # store_url: another daemon's database, shared (a second node); that daemon drops it.
        self.store_url = store_url or _pg_databases.get(data_dir)
        self.args = list(args)
        self.env = env
        self.model = model
        self.proc = None
        self.port = None
        self.api_key = None
        self.log_path = os.path.join(data_dir, "test-hlptd.log")

    def start(self, timeout=15, wait_ready=True):
        port_file = os.path.join(self.data_dir, "hlptd.port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.update(self.env or {})
        self._log = open(self.log_path, "ab")
        store = ["--store", self.store_url] if self.store_url else []
        self.proc = subprocess.Popen(
            [HLPTD, "--listen", "127.0.0.1:0", "--data-dir", self.data_dir, "--model", self.model,
             "--log-level", "debug"] + store + self.args,
            cwd=ROOT, stdout=self._log, stderr=self._log, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hlptd exited with %d:\n%s" % (self.proc.returncode, self.log()))
            try:
                with open(port_file) as f:
                    text = f.read()
                if text.endswith("\n"):
                    self.port = int(text)
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        else:
            self.kill()
            raise RuntimeError("hlptd wrote no port file within %ss:\n%s" % (timeout, self.log()))
        if wait_ready:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("hlptd exited with %d:\n%s" % (self.proc.returncode, self.log()))
                try:
                    if self.request("GET", "/health", timeout=2)[0] == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.02)
            self.kill()
            raise RuntimeError("hlptd not ready within %ss:\n%s" % (timeout, self.log()))
        return self

    def request(self, method, path, body=None, headers=None, timeout=10):
        """Returns (status, headers dict with lower-case names, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            h = dict(headers or {})
            if self.api_key is not None and "Authorization" not in h:
                h["Authorization"] = "Bearer " + self.api_key
            if isinstance(body, str):
                body = body.encode()
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None, timeout=10):
        """Returns (status, parsed JSON body). A dict/list body is sent as JSON."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        status, _, data = self.request(method, path, body, headers, timeout)
        return status, json.loads(data) if data else None

    def upload(self, filename, content, purpose="fine-tune"):
        """Multipart upload the way the OpenAI Python SDK does it; returns (status, JSON)."""
        body, ctype = multipart({"purpose": purpose}, {"file": (filename, content)})
        return self.json("POST", "/v1/files", body, {"Content-Type": ctype})

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Sends sig and waits; returns the exit code (kills and raises after timeout)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("hlptd did not exit within %ss of signal %d:\n%s" % (timeout, sig, self.log()))
        finally:
            self._log.close()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "_log", None) and not self._log.closed:
            self._log.close()

    def cleanup(self):
        self.kill()
        if self._pg_db is not None:
            del _pg_databases[self.data_dir]
            psql(PG_URL, "DROP DATABASE %s WITH (FORCE)" % self._pg_db)
            self._pg_db = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


def wait_for(pred, timeout, what, interval=0.02):
    """Polls pred() until it returns something true; returns that, or fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def multipart(fields, files):
    """Encodes form fields and files {name: (filename, bytes)} as multipart/form-data, shaped like
    httpx (the OpenAI SDK's client) sends it. Returns (body, content_type)."""
    boundary = uuid.uuid4().hex
    out = []
    for name, value in fields.items():
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n" % (boundary, name)).encode())
        out.append(value.encode() if isinstance(value, str) else value)
        out.append(b"\r\n")
    for name, (filename, content) in files.items():
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n" % (boundary, name, filename)).encode())
        out.append(content.encode() if isinstance(content, str) else content)
        out.append(b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary
