"""Shared helpers of the command-line integration tests: running build/hlpt with a time bound, a
small safetensors reader (header length, JSON header, raw little-endian data), and error measures.

Standard library only; tests run from the repository root. HLPT_BUILD names the build directory
(default "build")."""
import json
import math
import os
import struct
import subprocess

BUILD = os.environ.get("HLPT_BUILD", "build")
HLPT = os.path.join(BUILD, "hlpt")
FIXTURES = os.path.join("tests", "fixtures")
BASE_MODELS = ("llama2-mha-f32", "llama3-gqa-tied-bf16")
ADAPTERS = ("hlpt-causal", "hlpt-sequence", "peft-lora-qv")
ADAPTER_BASE = "llama2-mha-f32"  # the base every fixture adapter was made for
TIMEOUT = 120  # seconds, for any one command


def cpu_has_bf16():
    """Whether this CPU multiplies BF16 natively (AVX512-BF16 or AMX): what `--dtype auto` picks
    bf16 on, and what `--dtype bf16` needs (include/hlpt/engine.h)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fixture(*parts):
    return os.path.join(FIXTURES, *parts)


def _arg(a):
    # Arguments go to the process as UTF-8 bytes whatever the locale.
    return a if isinstance(a, bytes) else str(a).encode("utf-8")


class Result:
    """A finished command: rc, stdout and stderr as text (UTF-8, strict: bad UTF-8 is a failure)."""

    def __init__(self, args, proc):
        self.args = args
        self.rc = proc.returncode
        self.out_bytes = proc.stdout
        self.stdout = proc.stdout.decode("utf-8")
        self.stderr = proc.stderr.decode("utf-8", "replace")

    def describe(self):
        return "hlpt %s\n  rc=%d\n  stdout=%r\n  stderr=%r" % (
            " ".join(str(a) for a in self.args), self.rc, self.stdout[:2000], self.stderr[:2000])


def hlpt(*args, timeout=TIMEOUT, input=None):
    """Runs build/hlpt ARGS with stdin from input (bytes or None: empty) and returns a Result."""
    proc = subprocess.run([HLPT] + [_arg(a) for a in args], input=input or b"",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return Result(args, proc)


def has_command(name):
    """Whether this build of hlpt knows the subcommand (its --help exits 0)."""
    r = hlpt(name, "--help", timeout=30)
    return r.rc == 0 and "unknown command" not in r.stderr


# ---------------------------------------------------------------------------------------------- #
# safetensors

_DTYPES = {"F32": ("f", 4), "I32": ("i", 4), "I64": ("q", 8), "F64": ("d", 8), "F16": ("e", 2),
           "BF16": (None, 2), "U8": ("B", 1), "I8": ("b", 1)}


class Tensor:
    def __init__(self, dtype, shape, values):
        self.dtype = dtype
        self.shape = list(shape)
        self.values = values  # flat list, row-major

    def numel(self):
        return math.prod(self.shape) if self.shape else 1


def read_safetensors(path):
    """Returns (tensors: {name: Tensor}, metadata: {str: str}). Checks the layout strictly: header
    length within the file, every tensor's byte range inside the data, sized by dtype x shape."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: shorter than the 8-byte header length" % path)
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError("%s: header length %d runs past the file (%d bytes)" % (path, n, len(data)))
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, h in header.items():
        dtype, shape, (a, b) = h["dtype"], h["shape"], h["data_offsets"]
        if dtype not in _DTYPES:
            raise ValueError("%s: tensor %s has dtype %s this reader does not know" % (path, name, dtype))
        code, size = _DTYPES[dtype]
        count = math.prod(shape) if shape else 1
        if not (0 <= a <= b <= len(body)) or b - a != count * size:
            raise ValueError("%s: tensor %s: data_offsets [%d, %d] do not fit %s %s in %d bytes"
                             % (path, name, a, b, dtype, shape, len(body)))
        raw = body[a:b]
        if dtype == "BF16":
            halves = struct.unpack("<%dH" % count, raw)
            values = list(struct.unpack("<%df" % count, struct.pack("<%dI" % count, *(h << 16 for h in halves))))
        else:
            values = list(struct.unpack("<%d%s" % (count, code), raw))
        tensors[name] = Tensor(dtype, shape, values)
    return tensors, meta


def write_safetensors(path, tensors):
    """Writes {name: (dtype "F32"|"I32", shape, flat values)} as a standard safetensors file."""
    header, blobs, off = {}, [], 0
    for name, (dtype, shape, values) in tensors.items():
        code, _ = _DTYPES[dtype]
        blob = struct.pack("<%d%s" % (len(values), code), *values)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---------------------------------------------------------------------------------------------- #
# measures


def rel_l2(got, ref):
    """||got - ref|| / ||ref|| over flat lists of equal length (inf if any value is not finite)."""
    if len(got) != len(ref):
        raise ValueError("lengths differ: %d vs %d" % (len(got), len(ref)))
    num = den = 0.0
    for g, r in zip(got, ref):
        if not math.isfinite(g):
            return math.inf
        num += (g - r) * (g - r)
        den += r * r
    return math.sqrt(num) / math.sqrt(den) if den > 0 else math.sqrt(num)


def squeeze(shape):
    """The shape without its size-1 dimensions ([1, 176] and [176] hold the same vector)."""
    return [d for d in shape if d != 1]


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
