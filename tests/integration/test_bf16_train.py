"""A BF16 training run on the demo task ends within 2% of the F32 run's validation loss
(include/hlpt/engine.h: the base's matrices in BF16, adapters and optimizer in F32).

Both runs train the demo's H²LPT adapter from the same seed on the same examples for 30 steps and
evaluate on the first 64 validation questions; the test prints both losses."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from helpers_cli import HLPT, cpu_has_bf16  # noqa: E402


def train(dtype, out, valid):
    cmd = [HLPT, "train", "--model", "models/demo", "--data", "data/math/train.jsonl", "--valid", valid,
           "--method", "h2lpt", "--rank", "16", "--alpha", "32", "--targets", "gate_proj,up_proj,down_proj",
           "--lr", "1e-2", "--batch-size", "8", "--grad-accum", "1", "--max-steps", "30", "--eval-every", "30",
           "--seed", "7", "--threads", "2", "--dtype", dtype, "--out", out]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise AssertionError(f"hlpt train --dtype {dtype} failed: {p.stderr}")
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    final = [r for r in rows if "valid_loss" in r]
    if not final:
        raise AssertionError(f"no validation loss in the output of --dtype {dtype}: {p.stdout}")
    return final[-1]["valid_loss"]


class TestBf16Training(unittest.TestCase):
    @unittest.skipUnless(cpu_has_bf16(), "the CPU has neither AVX512-BF16 nor AMX")
    def test_bf16_run_within_2_percent_of_f32(self):
        with tempfile.TemporaryDirectory() as tmp:
            valid = os.path.join(tmp, "valid.jsonl")
            with open("data/math/valid.jsonl") as src, open(valid, "w") as dst:
                for i, line in enumerate(src):
                    if i == 64:
                        break
                    dst.write(line)
            f32 = train("f32", os.path.join(tmp, "f32"), valid)
            bf16 = train("bf16", os.path.join(tmp, "bf16"), valid)
        rel = abs(bf16 - f32) / f32
        print(f"validation loss after 30 steps: f32 {f32:.5f}, bf16 {bf16:.5f}, relative difference {rel:.2%} (tol 2%)")
        self.assertLessEqual(rel, 0.02)


if __name__ == "__main__":
    unittest.main()
