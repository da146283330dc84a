#!/usr/bin/env python3
"""The paper's comparison in miniature, through hlptd's REST API.

Trains, on the same data with the same step budget, every method of the comparison — prefix, LoRA
(q, v), HLPT, H²LPT, HLPT without gates, HLPT with LoRA on attention (q, v) instead of the FFN, HLPT
with sequence gates, and a sweep of the LoRA/prefix split — on each task and seed; measures test
accuracy through /v1/completions (greedy) with the task's scoring rule; and writes docs/RESULTS.md
with the figures, the spread over seeds, and the loss curves as SVG (docs/results/).

    python3 bench/compare.py [--steps 120] [--batch 8] [--seeds 1,2] [--tasks math,wordnet]
                             [--eval 100] [--workers 2] [--out docs/RESULTS.md]

It starts its own hlptd on 127.0.0.1 with a temporary data directory and stops it at the end.
"""
import argparse
import concurrent.futures
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("HLPT_BUILD", os.path.join(ROOT, "build"))

# name -> (method type, adapter settings). The split sweep gives `ratio` of the layers LoRA.
CONFIGS = [
    ("prefix", "prefix", {}),
    ("lora (q,v)", "lora", {}),
    ("hlpt", "hlpt", {}),
    ("h2lpt", "h2lpt", {}),
    ("hlpt, gate none", "hlpt", {"gate": "none"}),
    ("hlpt, LoRA on q,v", "hlpt", {"target_modules": ["q_proj", "v_proj"]}),
    ("hlpt, sequence gates", "hlpt", {"gate": "sequence"}),
    ("split 2/8 LoRA", "hlpt", {"ratio": 0.25}),
    ("split 4/8 LoRA", "hlpt", {"ratio": 0.5}),
    ("split 8/8 LoRA", "hlpt", {"ratio": 1.0}),
]

PAPER = """The authors' published figures (their released code, LLaMA-7B, average accuracy over the math
benchmarks of LLM-Adapters): LoRA 58.93 vs HLPT 59.78 with 24 of 32 layers given LoRA; their sweep of
the LoRA/prefix split peaks at 24 LoRA layers of 32 (3/4 of the depth, hlpt's default)."""


def request(url, method="GET", body=None, timeout=600):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
        return json.loads(raw) if r.headers.get("Content-Type", "").startswith("application/json") else raw


def upload(base, path):
    with open(path, "rb") as f:
        content = f.read()
    url = base + "/v1/files?purpose=fine-tune&filename=" + os.path.basename(path)
    req = urllib.request.Request(url, data=content, method="POST",
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["id"]


def alpaca(instruction):
    return ("Below is an instruction that describes a task. Write a response that appropriately completes "
            "the request.\n\n### Instruction:\n%s\n\n### Response:\n" % instruction)


def last_number(text):
    nums = re.findall(r"-?\d[\d,]*(?:\.\d+)?", text)
    if not nums:
        return None
    try:
        return float(nums[-1].replace(",", ""))
    except ValueError:
        return None


def answer_part(text):
    i = text.rfind("The answer is")
    s = text[i + len("The answer is"):] if i >= 0 else text
    return s.strip().split("\n")[0].strip().rstrip(".").lower().replace("_", " ").strip()


def correct(task, got, ex):
    if task == "math":
        a, b = last_number(got), last_number(ex["output"])
        return a is not None and b is not None and abs(a - b) < 0.001
    return answer_part(got) == ex["answer"].lower().replace("_", " ").strip()


def accuracy(base, model, task, examples, workers):
    def one(ex):
        r = request(base + "/v1/completions", "POST",
                    {"model": model, "prompt": alpaca(ex["instruction"]), "max_tokens": 96, "temperature": 0})
        return correct(task, r["choices"][0]["text"], ex)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(one, examples)) / len(examples)


def start_daemon(data_dir, workers, threads):
    log = open(os.path.join(data_dir, "hlptd.log"), "w")
    p = subprocess.Popen([os.path.join(BUILD, "hlptd"), "--model", os.path.join(ROOT, "models/demo"),
                          "--data-dir", data_dir, "--listen", "127.0.0.1:0", "--workers", str(workers),
                          "--threads", str(threads), "--log-level", "warn"], stderr=log)
    port_file = os.path.join(data_dir, "hlptd.port")
    deadline = time.time() + 60
    while time.time() < deadline:
        if os.path.exists(port_file) and open(port_file).read().strip():
            base = "http://127.0.0.1:%s" % open(port_file).read().strip()
            try:
                request(base + "/health", timeout=2)
                return p, base
            except (urllib.error.URLError, OSError):
                pass
        if p.poll() is not None:
            break
        time.sleep(0.1)
    p.kill()
    raise SystemExit("hlptd did not start; see %s/hlptd.log" % data_dir)


def load_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"jobs": {}}


def save_state(path, state):
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)


def key(name, task, seed):
    return "%s|%s|%d" % (name, task, seed)


def train_phase(args, base, state, tasks, seeds):
    """Creates every job not yet created, waits for all, records their figures in the state."""
    if "files" not in state:
        state["files"] = {t: [upload(base, os.path.join(ROOT, "data", t, "train.jsonl")),
                              upload(base, os.path.join(ROOT, "data", t, "valid.jsonl"))] for t in tasks}
        save_state(args.state, state)
    for name, mtype, settings in CONFIGS:
        for t in tasks:
            for seed in seeds:
                k = key(name, t, seed)
                if k in state["jobs"]:
                    continue
                body = {"training_file": state["files"][t][0], "validation_file": state["files"][t][1], "seed": seed,
                        "suffix": re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40],
                        "method": {"type": mtype, mtype: dict(settings)},
                        "hyperparameters": {"max_steps": args.steps, "batch_size": args.batch,
                                            "micro_batch_size": min(args.batch, 8), "learning_rate": args.lr,
                                            "eval_every": max(1, args.steps // 6),
                                            "warmup_steps": max(1, args.steps // 10)}}
                state["jobs"][k] = {"id": request(base + "/v1/fine_tuning/jobs", "POST", body)["id"]}
                save_state(args.state, state)
    started = time.time()
    while True:
        pending = 0
        for k, rec in state["jobs"].items():
            if "status" in rec:
                continue
            job = request(base + "/v1/fine_tuning/jobs/" + rec["id"])
            if job["status"] not in ("succeeded", "failed", "cancelled"):
                pending += 1
                continue
            rec["status"] = job["status"]
            if job["status"] != "succeeded":
                print("%s: %s %s" % (k, job["status"], job.get("error")), flush=True)
                continue
            metrics = request(base + "/v1/fine_tuning/jobs/%s/metrics" % rec["id"])["data"]
            events = request(base + "/v1/fine_tuning/jobs/%s/events?limit=100" % rec["id"])["data"]
            adapter = request(base + "/v1/adapters/" + job["fine_tuned_model"]) if args.registry else {}
            train = [m["train_loss"] for m in metrics if m.get("train_loss") is not None]
            valid = [m["valid_loss"] for m in metrics if m.get("valid_loss") is not None]
            tps = [m["tokens_per_s"] for m in metrics if m.get("tokens_per_s")]
            rec.update({"adapter": job["fine_tuned_model"], "metrics": metrics,
                        "final_train": statistics.mean(train[-5:]) if train else None,
                        "final_valid": valid[-1] if valid else None,
                        "tokens_per_s": statistics.median(tps) if tps else 0,
                        "trainable": next((e["data"]["trainable_params"] for e in events
                                           if isinstance(e.get("data"), dict) and "trainable_params" in e["data"]), 0),
                        "bytes": adapter.get("bytes", 0)})
            save_state(args.state, state)
            print("%-45s valid loss %.3f  (%.0f s)" % (k, rec["final_valid"] or math.nan, time.time() - started), flush=True)
        if pending == 0:
            return
        time.sleep(3)


def eval_phase(args, base, state, tasks, seeds):
    tests = {}
    for t in tasks:
        with open(os.path.join(ROOT, "data", t, "test.jsonl")) as f:
            tests[t] = [json.loads(l) for l in f if l.strip()][:args.eval]
    if "base_accuracy" not in state:
        state["base_accuracy"] = {t: accuracy(base, "base", t, tests[t], 16) for t in tasks}
        save_state(args.state, state)
    for k, rec in state["jobs"].items():
        if rec.get("status") == "succeeded" and "accuracy" not in rec:
            task = k.split("|")[1]
            rec["accuracy"] = accuracy(base, rec["adapter"], task, tests[task], 16)
            if not rec.get("bytes"):
                rec["bytes"] = request(base + "/v1/adapters/" + rec["adapter"]).get("bytes", 0)
            save_state(args.state, state)
            print("%-45s accuracy %.3f" % (k, rec["accuracy"]), flush=True)


def run(args):
    tasks = args.tasks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    os.makedirs(args.data_dir, exist_ok=True)
    state = load_state(args.state)
    daemon, base = start_daemon(args.data_dir, args.workers, 1)
    try:
        if args.phase in ("all", "train"):
            train_phase(args, base, state, tasks, seeds)
        if args.phase in ("all", "eval"):
            eval_phase(args, base, state, tasks, seeds)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
    if args.phase in ("all", "eval"):
        results, curves = {}, {}
        for k, rec in state["jobs"].items():
            name, t, seed = k.split("|")
            if "accuracy" not in rec:
                continue
            r = dict(rec, seed=int(seed))
            results.setdefault((name, t), []).append(r)
            curves.setdefault((name, t), []).append(rec["metrics"])
        write_report(args, tasks, seeds, state["base_accuracy"], results, curves)


def svg_curves(title, series):
    """series: name -> [(step, loss)]; a small multi-line SVG plot."""
    W, H, L, R, T, B = 640, 360, 60, 170, 40, 45
    pts = [p for s in series.values() for p in s]
    if not pts:
        return "<svg xmlns='http://www.w3.org/2000/svg'/>"
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1
    px = lambda x: L + (x - x0) / (x1 - x0) * (W - L - R)
    py = lambda y: H - B - (y - y0) / (y1 - y0) * (H - T - B)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    out = ["<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' font-size='11'>" % (W, H),
           "<rect width='100%' height='100%' fill='white'/>",
           "<text x='%d' y='22' font-size='14' text-anchor='middle'>%s</text>" % ((W - R + L) // 2, title),
           "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>" % (L, H - B, W - R, H - B),
           "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>" % (L, T, L, H - B),
           "<text x='%d' y='%d' text-anchor='middle'>step</text>" % ((L + W - R) // 2, H - 10)]
    for k in range(5):
        y = y0 + (y1 - y0) * k / 4
        out.append("<text x='%d' y='%.1f' text-anchor='end'>%.2f</text>" % (L - 5, py(y) + 4, y))
    for k in range(5):
        x = x0 + (x1 - x0) * k / 4
        out.append("<text x='%.1f' y='%d' text-anchor='middle'>%d</text>" % (px(x), H - B + 15, round(x)))
    for i, (name, s) in enumerate(series.items()):
        c = colors[i % len(colors)]
        out.append("<polyline fill='none' stroke='%s' stroke-width='1.5' points='%s'/>" % (
            c, " ".join("%.1f,%.1f" % (px(x), py(y)) for x, y in s)))
        out.append("<rect x='%d' y='%d' width='12' height='3' fill='%s'/><text x='%d' y='%d'>%s</text>" % (
            W - R + 10, T + 14 * i, c, W - R + 26, T + 14 * i + 5, name))
    out.append("</svg>")
    return "\n".join(out)


def fmt(vals, spec="%.3f"):
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "—"
    if len(vals) == 1:
        return spec % vals[0]
    return (spec + " ± " + spec) % (statistics.mean(vals), statistics.stdev(vals))


def write_report(args, tasks, seeds, base_acc, results, curves):
    out_dir = os.path.join(os.path.dirname(os.path.abspath(args.out)), "results")
    os.makedirs(out_dir, exist_ok=True)
    lines = ["# The comparison in miniature", "",
             "Generated by `python3 bench/compare.py %s` on the demo base model (models/demo, 7M parameters, "
             "8 layers) with the project's own math and WordNet tasks: every method trains on the same data with "
             "the same budget (%d optimizer steps of %d examples, learning rate %g), %d seeds (%s); accuracy is "
             "greedy decoding on the first %d test questions of each task, scored by the task's rule. Cells are "
             "mean ± standard deviation over seeds." % (" ".join(sys.argv[1:]), args.steps, args.batch, args.lr,
                                                        len(seeds), ", ".join(map(str, seeds)), args.eval), "",
             "Base model without adapter: " + ", ".join("%s %.3f" % (t, a) for t, a in base_acc.items()) + ".", ""]
    header = "| method | " + " | ".join("%s accuracy" % t for t in tasks) + \
             " | trainable parameters | adapter bytes | training tokens/s | " + \
             " | ".join("%s final train / valid loss" % t for t in tasks) + " |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for name, _, _ in CONFIGS:
        cells = [name]
        for t in tasks:
            cells.append(fmt([r["accuracy"] for r in results.get((name, t), [])]))
        any_r = [r for t in tasks for r in results.get((name, t), [])]
        cells.append(str(any_r[0]["trainable"]) if any_r else "—")
        cells.append(str(any_r[0]["bytes"]) if any_r else "—")
        cells.append(fmt([r["tokens_per_s"] for r in any_r], "%.0f"))
        for t in tasks:
            rs = results.get((name, t), [])
            cells.append(fmt([r["final_train"] for r in rs]) + " / " + fmt([r["final_valid"] for r in rs]))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Loss curves", ""]
    for t in tasks:
        series = {}
        for name, _, _ in CONFIGS:
            runs = curves.get((name, t))
            if not runs:
                continue
            # validation loss of the first seed
            series[name] = [(m["step"], m["valid_loss"]) for m in runs[0] if m.get("valid_loss") is not None]
        path = os.path.join(out_dir, "valid-loss-%s.svg" % t)
        with open(path, "w") as f:
            f.write(svg_curves("validation loss, %s (seed %d)" % (t, seeds[0]), series))
        lines.append("![validation loss on %s](results/valid-loss-%s.svg)" % (t, t))
        lines.append("")
    lines += ["## Beside the paper", "", PAPER, ""]
    # The discussion is written by people, from the figures: keep it across regenerations.
    try:
        with open(args.out) as f:
            old = f.read()
        mark = "## What the miniature shows"
        if mark in old:
            lines += [old[old.index(mark):].rstrip("\n"), ""]
    except OSError:
        pass
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "raw.json"), "w") as f:
        json.dump({"%s|%s" % k: v for k, v in results.items()}, f, indent=1)
    print("wrote", args.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--tasks", default="math,wordnet")
    ap.add_argument("--eval", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "RESULTS.md"))
    ap.add_argument("--phase", choices=["all", "train", "eval"], default="all",
                    help="train: run every job and record it; eval: measure accuracy and write the report")
    ap.add_argument("--data-dir", default=os.path.join(BUILD, "compare-data"),
                    help="the daemon's data directory, kept between phases")
    ap.add_argument("--state", default=None, help="where the phases keep their records (default DATA_DIR/state.json)")
    ap.add_argument("--no-registry", dest="registry", action="store_false",
                    help="do not ask /v1/adapters for sizes during training")
    args = ap.parse_args()
    args.state = args.state or os.path.join(args.data_dir, "state.json")
    run(args)


if __name__ == "__main__":
    main()
