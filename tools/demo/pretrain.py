#!/usr/bin/env python3
"""Trains the demo base model (tokenizer + small LLaMA) and measures what the tasks ask of it.

Needs PyTorch, transformers 5, tokenizers and peft, and a GPU for the real run. Stages, in one
process:
  1. a byte-level BPE tokenizer (the LLaMA-3 kind) trained on the corpus. Digits are kept one a
     token: the BPE is trained with a pre-tokenizer that isolates each digit, so it learns no merge
     between digits, and the saved tokenizer.json then carries the standard LLaMA-3 split pattern
     (which groups up to three digits; with no digit merges they still come out one a token);
  2. a LlamaForCausalLM pretrained on the packed corpus (BOS text EOS, windows of --seq tokens)
     with AdamW and a cosine schedule over a wall-clock budget, saved in BF16;
  3. greedy-decoding accuracy of the saved model on the test sets, from the Alpaca prompt;
  4. a learnability check: short LoRA (and full) fine-tunes on each task's train split at the
     budget a two-core CPU has in the demo, then test accuracy again.
Writes the model directory (--out), results.json and samples.json beside the log.

    python3 tools/demo/pretrain.py --corpus build/demo/corpus.txt --data data --out models/demo \
        --budget 330 --reserve 120 --deadline 560 --batch 256 --ft-steps 100,300
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

T0 = time.time()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scoring  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tokenizers import Tokenizer, Regex, decoders, models, pre_tokenizers, trainers  # noqa: E402
import transformers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TRAIN_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
BOS, EOS, PAD = 0, 1, 2
ALPACA_PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately "
                 "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


def log(*a):
    print("[%7.1fs]" % (time.time() - T0), *a, flush=True)


def split_pre_tokenizer(pattern):
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])


def train_tokenizer(corpus, vocab, out_path):
    t = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, ignore_merges=True))
    t.pre_tokenizer = split_pre_tokenizer(TRAIN_PATTERN)
    t.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIALS, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t.train([corpus], tr)
    t.pre_tokenizer = split_pre_tokenizer(LLAMA3_PATTERN)
    t.save(out_path)
    t = Tokenizer.from_file(out_path)
    check_tokenizer(out_path, t)
    return t


def check_tokenizer(path, t):
    j = json.load(open(path, encoding="utf-8"))
    assert j["normalizer"] is None, j["normalizer"]
    assert j["post_processor"] is None, j["post_processor"]
    pt = j["pre_tokenizer"]
    assert pt["type"] == "Sequence" and len(pt["pretokenizers"]) == 2, pt
    sp, bl = pt["pretokenizers"]
    assert sp["type"] == "Split" and sp["pattern"] == {"Regex": LLAMA3_PATTERN}, sp
    assert sp["behavior"] == "Isolated" and sp["invert"] is False, sp
    assert bl == {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}, bl
    m = j["model"]
    assert m["type"] == "BPE" and m["ignore_merges"] is True and m["byte_fallback"] is False, m["type"]
    assert j["decoder"]["type"] == "ByteLevel", j["decoder"]
    assert [(a["id"], a["content"], a["special"]) for a in j["added_tokens"]] == \
        [(i, s, True) for i, s in enumerate(SPECIALS)], j["added_tokens"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    missing = [c for c in alphabet if c not in m["vocab"]]
    assert not missing and len(alphabet) == 256, missing
    assert sorted(m["vocab"].values()) == list(range(len(m["vocab"]))), "vocab ids not contiguous"
    digits = [k for k in m["vocab"] if any(ch.isdigit() for ch in k) and len(k) > 1]
    assert not digits, digits[:10]
    for s in ["The sum of 123 and 45 is 168.", "dog (noun): a member of the genus Canis", " café 🤖\n\n x"]:
        back = t.decode(t.encode(s).ids)
        if back != s:
            log("WARNING: tokenizer round trip %r -> %r" % (s, back))
    log("tokenizer ok: vocab %d, merges %d; e.g. %s" % (t.get_vocab_size(), len(m["merges"]),
        t.encode("Tom has 36 - 5 = 31 pens.").tokens))


def encode_corpus(tok, corpus):
    lines = open(corpus, encoding="utf-8").read().split("\n")
    lines = [l for l in lines if l]
    flat = []
    for e in tok.encode_batch(lines):
        flat.append(BOS)
        flat.extend(e.ids)
        flat.append(EOS)
    buf = torch.tensor(flat, dtype=torch.int32)
    return buf, len(lines)


def make_config(a, vocab):
    return LlamaConfig(vocab_size=vocab, hidden_size=a.hidden, intermediate_size=a.ffn, num_hidden_layers=a.layers,
                       num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, head_dim=a.hidden // a.heads,
                       max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=10000.0,
                       tie_word_embeddings=True, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)


def pretrain(a, model, stream, budget_s, dev):
    """AdamW on random windows of the packed stream; the cosine schedule runs over the wall-clock
    budget (lr = f(elapsed / budget)), so the run ends on time whatever the speed."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=(dev == "cuda"))
    g = torch.Generator(device="cpu").manual_seed(a.seed)
    stream = stream.to(dev).long()
    n = stream.numel() - a.seq - 1
    ar = torch.arange(a.seq + 1, device=dev)
    curve, step, t_start = [], 0, time.time()
    warm = a.warmup
    ema = None
    model.train()
    while True:
        el = time.time() - t_start
        if el >= budget_s or (a.max_steps and step >= a.max_steps):
            break
        frac = el / budget_s
        lr = a.lr * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        idx = torch.randint(0, n, (a.batch,), generator=g).to(dev)
        xy = stream[idx[:, None] + ar]
        x, y = xy[:, :-1], xy[:, 1:]
        with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0 or step == 1:
            lv = loss.item()
            ema = lv if ema is None else 0.9 * ema + 0.1 * lv
            if step % a.log_every == 0 or step == 1:
                tok_s = step * a.batch * a.seq / (time.time() - t_start)
                log("pretrain step %6d  loss %.4f  (ema %.4f)  lr %.2e  %.0f tok/s" % (step, lv, ema, lr, tok_s))
                curve.append({"step": step, "loss": round(lv, 4), "elapsed_s": round(time.time() - t_start, 1),
                              "tokens": step * a.batch * a.seq})
    lv = loss.item()
    curve.append({"step": step, "loss": round(lv, 4), "elapsed_s": round(time.time() - t_start, 1),
                  "tokens": step * a.batch * a.seq})
    log("pretrain done: %d steps, %d tokens, final loss %.4f" % (step, step * a.batch * a.seq, lv))
    return curve


@torch.no_grad()
def held_out_loss(model, stream, seq, dev, n=64, seed=7):
    g = torch.Generator(device="cpu").manual_seed(seed)
    idx = torch.randint(0, stream.numel() - seq - 1, (n,), generator=g)
    xy = torch.stack([stream[i:i + seq + 1] for i in idx.tolist()]).long().to(dev)
    model.eval()
    logits = model(input_ids=xy[:, :-1]).logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), xy[:, 1:].reshape(-1)).item()


def read_jsonl(path):
    return [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]


def prompt_ids(tok, row):
    return [BOS] + tok.encode(ALPACA_PROMPT.format(instruction=row["instruction"])).ids


@torch.no_grad()
def generate(model, tok, rows, max_new, dev, batch=100):
    """Greedy decoding, left-padded batches; text up to EOS."""
    model.eval()
    outs = []
    for i in range(0, len(rows), batch):
        ps = [prompt_ids(tok, r) for r in rows[i:i + batch]]
        L = max(len(p) for p in ps)
        ids = torch.full((len(ps), L), PAD, dtype=torch.long)
        mask = torch.zeros((len(ps), L), dtype=torch.long)
        for j, p in enumerate(ps):
            ids[j, L - len(p):] = torch.tensor(p)
            mask[j, L - len(p):] = 1
        gen = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), max_new_tokens=max_new,
                             do_sample=False, eos_token_id=EOS, pad_token_id=PAD)
        for j in range(len(ps)):
            new = gen[j, L:].tolist()
            if EOS in new:
                new = new[:new.index(EOS)]
            new = [t for t in new if t != PAD]
            outs.append(tok.decode(new))
    return outs


MAX_NEW = {"math": 112, "wordnet": 64}


def evaluate(model, tok, task, rows, dev, tag, samples):
    t = time.time()
    outs = generate(model, tok, rows, MAX_NEW[task], dev)
    ok = [scoring.score(task, o, r["answer"]) for o, r in zip(outs, rows)]
    acc = sum(ok) / len(rows)
    log("eval %-8s %-28s accuracy %.3f (%d/%d)  [%.1fs]" % (task, tag, acc, sum(ok), len(rows), time.time() - t))
    samples.setdefault(task, {})[tag] = [{"instruction": r["instruction"], "answer": r["answer"], "generated": o,
                                          "correct": c} for r, o, c in list(zip(rows, outs, ok))[:8]]
    return acc


def sft_batches(tok, rows, batch, steps, seed, max_len=256):
    """Endless shuffled epochs of (input_ids, labels, attention_mask); labels mask the prompt."""
    enc = []
    for r in rows:
        p = prompt_ids(tok, r)
        o = tok.encode(r["output"]).ids + [EOS]
        ids = (p + o)[:max_len]
        lab = ([-100] * len(p) + o)[:max_len]
        enc.append((ids, lab))
    rng = random.Random(seed)
    order = []
    for _ in range(steps):
        b = []
        for _ in range(batch):
            if not order:
                order = list(range(len(enc)))
                rng.shuffle(order)
            b.append(enc[order.pop()])
        L = max(len(i) for i, _ in b)
        ids = torch.full((batch, L), PAD, dtype=torch.long)
        lab = torch.full((batch, L), -100, dtype=torch.long)
        msk = torch.zeros((batch, L), dtype=torch.long)
        for j, (i, l) in enumerate(b):
            ids[j, :len(i)] = torch.tensor(i)
            lab[j, :len(l)] = torch.tensor(l)
            msk[j, :len(i)] = 1
        yield ids, lab, msk


def finetune(model, tok, train_rows, steps, lr, batch, dev, seed, evals, on_eval):
    """AdamW, warm-up for 10% of the steps then linear decay (the adapters' recipe, shortened);
    loss on the response tokens only (HF convention: logits[t] predicts labels[t+1])."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = max(1, steps // 10)
    t = time.time()
    model.train()
    for step, (ids, lab, msk) in enumerate(sft_batches(tok, train_rows, batch, steps, seed), 1):
        f = step / warm if step <= warm else max(0.0, (steps - step) / max(1, steps - warm))
        for grp in opt.param_groups:
            grp["lr"] = lr * f
        ids, lab, msk = ids.to(dev), lab.to(dev), msk.to(dev)
        with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
            logits = model(input_ids=ids, attention_mask=msk).logits
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), lab[:, 1:].reshape(-1),
                               ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0 or step == 1:
            log("  ft step %4d loss %.4f lr %.2e" % (step, loss.item(), lr * f))
        if step in evals:
            on_eval(step, loss.item(), time.time() - t)
            model.train()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", default="models/demo")
    ap.add_argument("--report", default=None, help="folder for results.json / samples.json (default: --out)")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--ffn", type=int, default=704)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--budget", type=float, default=330.0, help="pretraining wall-clock seconds")
    ap.add_argument("--deadline", type=float, default=560.0, help="whole run must end by this many seconds")
    ap.add_argument("--reserve", type=float, default=150.0, help="seconds kept for the stages after pretraining")
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--ft-steps", default="100,300")
    ap.add_argument("--ft-batch", type=int, default=16)
    ap.add_argument("--n-eval", type=int, default=0, help="limit test examples (0: all)")
    ap.add_argument("--lines", type=int, default=0, help="use only the first N corpus lines (smoke runs)")
    a = ap.parse_args()

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    log("torch %s transformers %s device %s %s" % (torch.__version__, transformers.__version__, dev,
        torch.cuda.get_device_name(0) if dev == "cuda" else ""))
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    os.makedirs(a.out, exist_ok=True)
    report = a.report or a.out
    os.makedirs(report, exist_ok=True)
    results = {"args": vars(a), "torch": torch.__version__, "transformers": transformers.__version__}

    corpus = a.corpus
    if a.lines:
        corpus = os.path.join(report, "corpus.head.txt")
        with open(a.corpus, encoding="utf-8") as src, open(corpus, "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i >= a.lines:
                    break
                dst.write(line)

    tok_path = os.path.join(a.out, "tokenizer.json")
    tok = train_tokenizer(corpus, a.vocab, tok_path)
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as fh:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": SPECIALS[0], "eos_token": SPECIALS[1],
                   "pad_token": SPECIALS[2], "model_max_length": 512, "clean_up_tokenization_spaces": False},
                  fh, indent=2)
        fh.write("\n")
    stream, nlines = encode_corpus(tok, corpus)
    results["corpus"] = {"lines": nlines, "tokens": int(stream.numel()), "bytes": os.path.getsize(corpus)}
    log("corpus: %d lines, %d tokens (BOS/EOS included)" % (nlines, stream.numel()))
    # the last 1% of the stream is held out for a loss figure
    cut = int(stream.numel() * 0.99)
    train_stream, held = stream[:cut], stream[cut:]

    cfg = make_config(a, tok.get_vocab_size())
    torch.manual_seed(a.seed)
    model = LlamaForCausalLM(cfg).to(dev)
    nparam = sum(p.numel() for p in model.parameters())
    results["parameters"] = nparam
    log("model: %d parameters" % nparam)
    budget = min(a.budget, a.deadline - a.reserve - (time.time() - T0))
    log("pretraining budget %.0fs" % budget)
    results["pretrain_budget_s"] = round(budget, 1)
    results["pretrain_curve"] = pretrain(a, model, train_stream, budget, dev)
    results["heldout_loss_fp32"] = round(held_out_loss(model, held, a.seq, dev), 4)
    log("held-out loss %.4f" % results["heldout_loss_fp32"])

    model.to(torch.bfloat16)
    model.generation_config.bos_token_id = BOS
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = PAD
    model.save_pretrained(a.out, safe_serialization=True)
    del model
    log("saved %s: %s" % (a.out, {f: os.path.getsize(os.path.join(a.out, f)) for f in sorted(os.listdir(a.out))}))
    json.dump(results, open(os.path.join(report, "results.json"), "w"), indent=1)

    def load():
        return LlamaForCausalLM.from_pretrained(a.out, dtype=torch.float32).to(dev)

    base = load()
    results["heldout_loss_saved_bf16_weights"] = round(held_out_loss(base, held, a.seq, dev), 4)
    samples = {"free_text": []}
    for p in ["dog (noun):", "A violin is a kind of", "The word for a building where people live is",
              "12 + 35 =", "7 times 8 is", "First 6 * 12 = 72. Then 72 - 15 ="]:
        ids = torch.tensor([[BOS] + tok.encode(p).ids], device=dev)
        g = base.generate(input_ids=ids, max_new_tokens=30, do_sample=False, eos_token_id=EOS, pad_token_id=PAD)
        text = tok.decode(g[0, ids.size(1):].tolist())
        samples["free_text"].append({"prompt": p, "greedy": text})
        log("sample: %r -> %r" % (p, text))

    tests = {t: read_jsonl(os.path.join(a.data, t, "test.jsonl")) for t in ("math", "wordnet")}
    trains = {t: read_jsonl(os.path.join(a.data, t, "train.jsonl")) for t in ("math", "wordnet")}
    if a.n_eval:
        tests = {t: r[:a.n_eval] for t, r in tests.items()}
    # left padding must not change greedy output: one example alone against its batch
    r0 = tests["math"][:3]
    solo = generate(base, tok, r0[:1], 40, dev)[0]
    batched = generate(base, tok, r0, 40, dev)[0]
    log("padding check: %s" % ("same" if solo == batched else "DIFFERENT %r vs %r" % (solo, batched)))
    results["padding_check_same"] = solo == batched

    results["base_accuracy"] = {t: evaluate(base, tok, t, tests[t], dev, "base", samples) for t in tests}
    json.dump(results, open(os.path.join(report, "results.json"), "w"), indent=1)
    del base

    from peft import LoraConfig, get_peft_model
    steps = [int(s) for s in a.ft_steps.split(",")]
    half = a.layers // 2
    lora_target = r".*\.(layers\.(%s)\.mlp\.down_proj|self_attn\.(q_proj|v_proj))" % "|".join(str(i) for i in range(half))
    plans = [("lora_r8", 3e-3), ("full", 3e-4)]
    results["learnability"] = {}
    for plan, lr in plans:
        for task in ("math", "wordnet"):
            if time.time() - T0 > a.deadline - 25:
                log("skipping %s/%s: out of time" % (plan, task))
                continue
            m = load()
            if plan.startswith("lora"):
                m = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=lora_target,
                                                 bias="none", task_type="CAUSAL_LM"))
            ntrain = sum(p.numel() for p in m.parameters() if p.requires_grad)
            key = "%s/%s" % (plan, task)
            res = {"lr": lr, "batch": a.ft_batch, "trainable_parameters": ntrain,
                   "target": lora_target if plan.startswith("lora") else "all", "after": {}}
            log("fine-tune %s: %d trainable parameters, lr %g, %s steps of %d" % (key, ntrain, lr, steps, a.ft_batch))

            def on_eval(step, loss, el, task=task, m=m, res=res, key=key):
                res["after"][str(step)] = {"train_loss": round(loss, 4), "seconds": round(el, 1),
                                           "accuracy": evaluate(m, tok, task, tests[task], dev,
                                                                "%s@%d" % (key, step), samples)}
            finetune(m, tok, trains[task], max(steps), lr, a.ft_batch, dev, a.seed, set(steps), on_eval)
            results["learnability"][key] = res
            json.dump(results, open(os.path.join(report, "results.json"), "w"), indent=1)
            del m
    json.dump(results, open(os.path.join(report, "results.json"), "w"), indent=1)
    json.dump(samples, open(os.path.join(report, "samples.json"), "w"), indent=1, ensure_ascii=False)
    log("done")


if __name__ == "__main__":
    main()
