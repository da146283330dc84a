#!/bin/sh
# make demo: the first run. Starts hlptd on the built-in demo model with a fresh data directory,
# measures the base model on held-out math word problems, fine-tunes an H²LPT adapter through the
# REST API while showing progress and loss, measures again with the adapter, and stops the daemon.
# Everything stays on 127.0.0.1; the daemon is stopped even if a step fails.
set -eu
BUILD=${BUILD:-build}
TASK=${TASK:-math}
EVAL_LIMIT=${EVAL_LIMIT:-100}
STEPS=${STEPS:-200}
out=$BUILD/demo
mkdir -p "$out"
data=$(mktemp -d /tmp/hlpt-demo.XXXXXX)
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$data"
}
trap cleanup EXIT INT TERM

echo "== starting hlptd on models/demo (data in $data)"
"$BUILD/hlptd" --model models/demo --data-dir "$data" --listen 127.0.0.1:0 --workers 1 \
    --log-level warn 2>"$out/hlptd.log" &
pid=$!
i=0
while [ ! -s "$data/hlptd.port" ]; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "hlptd did not start; see $out/hlptd.log" >&2
        exit 1
    fi
    sleep 0.1
done
export HLPT_URL="http://127.0.0.1:$(cat "$data/hlptd.port")"
until curl -sf "$HLPT_URL/health" >/dev/null; do sleep 0.2; done

echo "== the base model on $EVAL_LIMIT held-out $TASK questions"
"$BUILD/hlpt" eval --task "$TASK" --data "data/$TASK/test.jsonl" --limit "$EVAL_LIMIT" | tee "$out/before.json"

echo "== fine-tuning an H²LPT adapter on data/$TASK/train.jsonl"
# H²LPT on this 8-layer model: gated LoRA (rank 16) on the feed-forward layers of layers 0-1, gated
# prefixes on layers 6-7, nothing on layers 2-5; 200 steps of 16 examples.
model=$("$BUILD/hlpt" jobs create --data "data/$TASK/train.jsonl" --valid "data/$TASK/valid.jsonl" \
    --method h2lpt --rank 16 --alpha 32 --targets gate_proj,up_proj,down_proj --lr 1e-2 \
    --batch-size 16 --max-steps "$STEPS" --suffix demo --follow)
job=$(curl -sf "$HLPT_URL/v1/adapters/$model" | sed -n 's/.*"job_id": *"\(ftjob-[^"]*\)".*/\1/p')
curl -sf "$HLPT_URL/v1/fine_tuning/jobs/$job/loss.svg" -o "$out/loss.svg" || true
curl -sf "$HLPT_URL/v1/fine_tuning/jobs/$job/metrics?format=csv" -o "$out/metrics.csv" || true

echo "== the same questions with adapter $model"
"$BUILD/hlpt" eval --task "$TASK" --data "data/$TASK/test.jsonl" --limit "$EVAL_LIMIT" --adapter "$model" | tee "$out/after.json"

before=$(sed -n 's/.*"accuracy": *\([0-9.]*\).*/\1/p' "$out/before.json")
after=$(sed -n 's/.*"accuracy": *\([0-9.]*\).*/\1/p' "$out/after.json")
echo
echo "accuracy on $TASK: $before -> $after   (adapter $model, job $job)"
echo "loss curve: $out/loss.svg   metrics: $out/metrics.csv   daemon log: $out/hlptd.log"
