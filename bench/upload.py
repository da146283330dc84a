#!/usr/bin/env python3
"""A large upload streamed to hlptd: throughput, and the daemon's memory while it arrives.

    python3 bench/upload.py [GB] [--data-dir DIR] [--line-bytes N] [--timeout S]

Generates a JSONL training file of GB gigabytes (default 10, or less when the disk that holds the
data directory would keep under 5 GB free: it says so) on the fly, never holding it, and sends it
to POST /v1/files as one multipart body with its Content-Length, the way the OpenAI SDKs send a
file. It prints the upload's throughput (bytes over the time from the first byte sent to the reply),
the status and file object, and hlptd's peak resident memory (VmHWM) before and after, with the
largest VmRSS sampled while the body arrived.

It starts its own hlptd (build/hlptd, the tests' fixture model) on 127.0.0.1 with a temporary data
directory, stops it and removes the directory at the end; the upload is bounded by --timeout.
Python 3 standard library only.
"""
import argparse
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("HLPT_BUILD", os.path.join(ROOT, "build"))
MODEL = os.path.join(ROOT, "tests", "fixtures", "llama2-mha-f32")
KEEP_FREE = 5 << 30
BOUNDARY = "bench-upload-boundary"


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def start_daemon(data_dir, log):
    port_file = os.path.join(data_dir, "hlptd.port")
    proc = subprocess.Popen([os.path.join(BUILD, "hlptd"), "--listen", "127.0.0.1:0", "--data-dir", data_dir,
                             "--model", MODEL, "--max-upload-bytes", "1024G"], stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("hlptd exited with %d" % proc.returncode)
        try:
            with open(port_file) as f:
                text = f.read()
            if text.endswith("\n"):
                port = int(text)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return proc, port
        except (OSError, ValueError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("hlptd did not become ready")


def blocks(nlines, line_bytes, per_block=2048):
    """The training file, generated: nlines lines of line_bytes bytes each."""
    head = '{"prompt": "question %012d", "completion": " '
    pad = line_bytes - len(head % 0) - len('"}\n')
    filler = ("all work and no play makes a dull model " * (pad // 40 + 1))[:pad]
    for start in range(0, nlines, per_block):
        yield "".join((head % i) + filler + '"}\n' for i in range(start, min(nlines, start + per_block))).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gb", nargs="?", type=float, default=10.0, help="size of the upload in GB (default 10)")
    ap.add_argument("--data-dir", default=None, help="parent of the temporary data directory (default: the system's)")
    ap.add_argument("--line-bytes", type=int, default=1024, help="bytes per JSONL line (default 1024)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds the upload may take (default 1800)")
    a = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="hlpt-bench-upload-", dir=a.data_dir)
    st = os.statvfs(data_dir)
    free = st.f_bavail * st.f_frsize
    want = int(a.gb * (1 << 30))
    if want + KEEP_FREE > free:
        room = max(0, free - KEEP_FREE)
        print("the disk of %s has %.1f GB free: uploading %.1f GB instead of %.1f GB, to keep 5 GB free"
              % (data_dir, free / (1 << 30), room / (1 << 30), a.gb))
        want = room
    nlines = want // a.line_bytes
    size = nlines * a.line_bytes
    if nlines == 0:
        shutil.rmtree(data_dir)
        sys.exit("no room for an upload")
    form_head = ('--%s\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
                 '--%s\r\nContent-Disposition: form-data; name="file"; filename="bench.jsonl"\r\n'
                 'Content-Type: application/octet-stream\r\n\r\n' % (BOUNDARY, BOUNDARY)).encode()
    form_tail = ("\r\n--%s--\r\n" % BOUNDARY).encode()

    log = open(os.path.join(data_dir, "hlptd.log"), "wb")
    proc = None
    try:
        proc, port = start_daemon(data_dir, log)
        hwm0, rss0 = status_kb(proc.pid, "VmHWM"), status_kb(proc.pid, "VmRSS")
        peak, sampling = [rss0], threading.Event()
        sampling.set()

        def sample():
            while sampling.is_set():
                peak.append(status_kb(proc.pid, "VmRSS"))
                time.sleep(0.05)

        sent = [0]

        def body():
            yield form_head
            for b in blocks(nlines, a.line_bytes):
                sent[0] += len(b)
                yield b
            sampling.clear()
            yield form_tail

        print("uploading %.2f GB (%d lines of %d bytes) to hlptd pid %d" % (size / (1 << 30), nlines, a.line_bytes,
                                                                          proc.pid))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=a.timeout)
        t0 = time.monotonic()
        conn.request("POST", "/v1/files", body=body(), headers={
            "Content-Type": "multipart/form-data; boundary=" + BOUNDARY,
            "Content-Length": str(len(form_head) + size + len(form_tail))})
        t_sent = time.monotonic()
        resp = conn.getresponse()
        reply = resp.read().decode(errors="replace")
        t1 = time.monotonic()
        sampling.clear()
        sampler.join()
        hwm1 = status_kb(proc.pid, "VmHWM")
        print("status %d: %s" % (resp.status, reply[:400]))
        print("body sent in %.1f s; reply %.1f s after the last byte" % (t_sent - t0, t1 - t_sent))
        print("throughput: %.1f MB/s (%.2f GB in %.1f s, first byte to reply)"
              % (size / (1 << 20) / (t1 - t0), size / (1 << 30), t1 - t0))
        print("hlptd VmHWM before %d MB, after %d MB; VmRSS before %d MB, at most %d MB while the body arrived"
              % (hwm0 >> 10, hwm1 >> 10, rss0 >> 10, max(peak) >> 10))
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
