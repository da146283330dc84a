#!/usr/bin/env python3
"""Serving under load: N concurrent clients spread over M adapters against the same N clients on one
adapter, through hlptd's /v1/completions, on a model directory (default: the random-weight bench
model that `build/bench/bench_model --make-model DIR` writes).

    python3 bench/serve.py --model /tmp/bench-model [--clients 8] [--adapters 1,4,8] [--tokens 32]
                           [--requests 4] [--threads 2]

For each M it prints aggregate generated tokens/s, p50/p99 time to first token and per-token
latency (the daemon's own histograms from /metrics, at bucket resolution: the value is the bucket's
upper bound), and the latency of a trivial request (max_tokens 1, base model) sent while the load
runs. The M adapters mix LoRA (q,v), prefix and hybrid HLPT plans; they are made
here with random weights and imported through POST /v1/adapters. The target: mixed-adapter
throughput at least 0.8x the single-adapter throughput.

It starts its own hlptd on 127.0.0.1 and stops it at the end; every request loop is bounded.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("HLPT_BUILD", os.path.join(ROOT, "build"))


def safetensors(tensors):
    """tensors: name -> (shape, list of floats) -> bytes (F32)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        shape, vals = tensors[name]
        b = struct.pack("<%df" % len(vals), *vals)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def make_adapter(cfg, kind, rng):
    L, C = cfg["num_hidden_layers"], cfg["hidden_size"]
    H, KV = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    D = cfg.get("head_dim") or C // H
    F = cfg["intermediate_size"]
    dims = {"q_proj": (C, H * D, "self_attn"), "v_proj": (C, KV * D, "self_attn"), "down_proj": (F, C, "mlp")}
    r, P = 8, 20
    if kind == "lora":
        lora, prefix, targets, gate = list(range(L)), [], ["q_proj", "v_proj"], "none"
    elif kind == "prefix":
        lora, prefix, targets, gate = [], list(range(L)), ["down_proj"], "none"
    else:
        lora, prefix, targets, gate = list(range(3 * L // 4)), list(range(3 * L // 4, L)), ["down_proj"], "causal"
    rnd = lambda n, s: [rng.gauss(0, s) for _ in range(n)]
    t = {}
    pre = "base_model.model.model.layers.%d."
    for i in lora:
        for m in targets:
            fin, fout, blk = dims[m]
            t[pre % i + "%s.%s.lora_A.weight" % (blk, m)] = ((r, fin), rnd(r * fin, 0.02))
            t[pre % i + "%s.%s.lora_B.weight" % (blk, m)] = ((fout, r), rnd(fout * r, 0.02))
            if gate != "none":
                t[pre % i + "%s.%s.lora_gate.weight" % (blk, m)] = ((1, fin), rnd(fin, 0.02))
    for i in prefix:
        t[pre % i + "self_attn.prefix_key"] = ((P, KV * D), rnd(P * KV * D, 0.02))
        t[pre % i + "self_attn.prefix_value"] = ((P, KV * D), rnd(P * KV * D, 0.02))
        if gate != "none":
            t[pre % i + "self_attn.prefix_gate.weight"] = ((1, C), rnd(C, 0.02))
    config = {"peft_type": "HLPT", "method": {"lora": "lora", "prefix": "prefix"}.get(kind, "hlpt"), "r": r,
              "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": targets, "lora_layers": lora,
              "prefix_layers": prefix, "num_virtual_tokens": P, "gate": gate}
    return config, safetensors(t)


def import_adapter(base, name, config, weights):
    boundary = uuid.uuid4().hex
    parts = []
    for field, value, filename in (("name", name.encode(), None), ("config", json.dumps(config).encode(), None),
                                   ("weights", weights, "adapter_model.safetensors")):
        disp = 'form-data; name="%s"' % field + ('; filename="%s"' % filename if filename else "")
        parts.append(b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disp.encode() + b"\r\n\r\n" + value + b"\r\n")
    body = b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    req = urllib.request.Request(base + "/v1/adapters", data=body, method="POST",
                                 headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def completion(base, model, prompt, max_tokens):
    """Returns the completion tokens of one greedy request."""
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "ignore_eos": True}).encode()
    req = urllib.request.Request(base + "/v1/completions", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())["usage"]["completion_tokens"]


def histograms(base):
    """The daemon's latency histograms from /metrics: name -> [(le, cumulative count)]."""
    text = urllib.request.urlopen(base + "/metrics", timeout=60).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'(hlpt_time_(?:to_first_token|per_token)_seconds)_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            out.setdefault(m.group(1), []).append((float(m.group(2)), int(m.group(3))))
    return out


def quantile(before, after, name, q):
    """q-quantile of the observations between two snapshots, at bucket resolution (upper bound)."""
    b = dict(before.get(name, []))
    rows = [(le, c - b.get(le, 0)) for le, c in after.get(name, [])]
    total = rows[-1][1] if rows else 0
    if total == 0:
        return float("nan")
    for le, c in rows:
        if c >= q * total:
            return le
    return float("inf")


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100 * len(v)))]


def load(base, models, clients, requests, max_tokens):
    tokens = [0]
    lock = threading.Lock()
    prompts = ["Once upon a time %d" % i for i in range(clients)]

    def client(i):
        for k in range(requests):
            n = completion(base, models[i % len(models)], prompts[i], max_tokens)
            with lock:
                tokens[0] += n

    trivial = []

    def prober(stop):
        while not stop.is_set():
            t0 = time.time()
            req = urllib.request.Request(base + "/v1/completions", method="POST",
                                         data=json.dumps({"model": "base", "prompt": "Hi", "max_tokens": 1}).encode(),
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=600).read()
            trivial.append(time.time() - t0)
            stop.wait(0.5)

    before = histograms(base)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    stop = threading.Event()
    probe = threading.Thread(target=prober, args=(stop,))
    t0 = time.time()
    for t in threads:
        t.start()
    probe.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    stop.set()
    probe.join()
    after = histograms(base)
    lat = {k: quantile(before, after, "hlpt_time_%s_seconds" % n, q)
           for k, n, q in (("ttft50", "to_first_token", 0.5), ("ttft99", "to_first_token", 0.99),
                           ("tok50", "per_token", 0.5), ("tok99", "per_token", 0.99))}
    return tokens[0] / wall, lat, trivial


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/tmp/bench-model")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--adapters", default="1,4,8")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    data = tempfile.mkdtemp(prefix="hlpt-serve-")
    log = open(os.path.join(data, "hlptd.log"), "w")
    p = subprocess.Popen([os.path.join(BUILD, "hlptd"), "--model", a.model, "--data-dir", data, "--listen",
                          "127.0.0.1:0", "--threads", str(a.threads), "--log-level", "warn"], stderr=log)
    try:
        port = os.path.join(data, "hlptd.port")
        deadline = time.time() + 300
        base = None
        while time.time() < deadline and base is None:
            try:
                b = "http://127.0.0.1:" + open(port).read().strip()
                urllib.request.urlopen(b + "/health", timeout=2).read()
                base = b
            except Exception:
                time.sleep(0.2)
        if base is None:
            raise SystemExit("hlptd did not become ready")
        rng = random.Random(7)
        kinds = ["lora", "prefix", "hybrid"]
        counts = [int(x) for x in a.adapters.split(",")]
        names = []
        for i in range(max(counts)):
            config, weights = make_adapter(cfg, kinds[i % 3], rng)
            names.append(import_adapter(base, "bench-%d-%s" % (i, kinds[i % 3]), config, weights)["name"])
        print("model %s, %d clients x %d requests x %d tokens, %d BLAS threads" % (a.model, a.clients, a.requests,
                                                                                 a.tokens, a.threads))
        print("%-10s %10s %12s %12s %12s %12s %14s" % ("adapters", "tokens/s", "TTFT p50", "TTFT p99", "tok p50",
                                                     "tok p99", "trivial p50"))
        ref = None
        for m in counts:
            models = names[:m]
            tps, lat, trivial = load(base, models, a.clients, a.requests, a.tokens)
            ref = ref or tps
            print("%-10s %10.1f %11.0fms %11.0fms %11.0fms %11.0fms %13.0fms   (%.2fx of one adapter)" % (
                "%d%s" % (m, " (" + ",".join(sorted({n.split("-")[-1] for n in models})) + ")" if m > 1 else ""),
                tps, 1e3 * lat["ttft50"], 1e3 * lat["ttft99"], 1e3 * lat["tok50"], 1e3 * lat["tok99"],
                1e3 * pct(trivial, 50), tps / ref), flush=True)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
