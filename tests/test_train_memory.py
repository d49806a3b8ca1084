"""The trainer's memory across steps: padding-free batches bring a new length nearly every
step, and bf16 matmuls on CPU (oneDNN) must not keep something for every length seen."""

import os
import subprocess
import sys

import pytest

# bf16 matmuls of 200 new lengths; prints the growth of glibc's in-use heap over them.
PROBE = """
import ctypes, sys
if sys.argv[1] == "bounded":
    from ftagent.tools.train.recipe import bound_onednn_caches
    bound_onednn_caches()
import torch
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
w = torch.randn(128, 128, dtype=torch.bfloat16)
for m in range(1, 301):
    torch.randn(m, 128, dtype=torch.bfloat16) @ w
    if m == 100:
        start = libc.mallinfo2().uordblks
print((libc.mallinfo2().uordblks - start) / 2**20)
"""


def _growth_mb(mode: str) -> float:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallinfo2")
def test_onednn_shape_caches_stay_bounded_as_lengths_change():
    """Unbounded, oneDNN's caches grow with every new matmul shape (~0.5 MB each); with the
    trainer's bound, 200 new shapes after the first 100 add next to nothing."""
    unbounded = _growth_mb("default")
    if unbounded < 20:
        pytest.skip(f"no oneDNN bf16 matmul cache on this CPU (grew {unbounded:.1f} MB)")
    assert _growth_mb("bounded") < 5, "oneDNN's shape caches grow with every new length"
