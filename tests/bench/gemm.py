"""Part 3: best measured model throughput as a fraction of numpy's float32 GEMM rate.

The GEMM runs in its own process (`python -m tests.bench.gemm THREADS`) because OpenBLAS reads
its thread count when numpy loads; threadpoolctl, when installed, limits it as well.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from tests.bench import USER_ENV
from tests.bench.runs import median, run_timed
from tests.bench.summary import Ratio

SIZE = 2048  # 17 GFLOP per product: far past cache sizes and call overheads
REPS = 5


def flops_per_image(model) -> int:
    """2 x multiply-accumulates of every Dense/Conv layer: kernel size times output positions."""
    macs = 0
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            positions = math.prod(layer.output.shape[1:-1])  # 1 for Dense, H*W for Conv2D
            macs += math.prod(layer.kernel.shape) * positions
    return 2 * macs


def _thread_limit(threads: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext("env")
    return threadpool_limits(threads)


def openblas_runtime() -> dict:
    """The kernel OpenBLAS picked at run time and its thread count (the build string says less)."""
    libs = Path(np.__file__).parent.with_name("numpy.libs")
    for path in sorted(libs.glob("libscipy_openblas*.so")):
        lib = ctypes.CDLL(str(path))
        corename = lib.scipy_openblas_get_corename64_
        corename.restype = ctypes.c_char_p
        return {"core": corename().decode(), "threads": lib.scipy_openblas_get_num_threads64_()}
    return {}


def gemm_rate(threads: int, size: int = SIZE, reps: int = REPS) -> dict:
    """Median GFLOP/s of a (size x size) float32 matmul into a preallocated output."""
    from toolkit.evaluate import time_calls

    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    c = np.empty_like(a)
    with _thread_limit(threads) as limit:
        samples_ns = time_calls(lambda: np.matmul(a, b, out=c), reps, 60.0, warmup=1)
        blas = openblas_runtime()
    rates = [2 * size**3 / ns for ns in samples_ns]  # FLOP per ns = GFLOP/s
    return {
        "size": size,
        "threads": threads,
        "limited_by": "OPENBLAS_NUM_THREADS/OMP_NUM_THREADS" if limit == "env" else "threadpoolctl",
        "gflops": float(np.median(rates)),
        "gflops_reps": [float(r) for r in rates],
        "openblas": blas,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
    }


def measure_gemm(threads: int, log: Path) -> dict:
    env = {**USER_ENV, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    run = run_timed([sys.executable, "-m", "tests.bench.gemm", str(threads)], log, env=env)
    return json.loads(run.stdout.strip().splitlines()[-1])


def pooled_gemm(runs: list[dict]) -> dict:
    """One reference rate from GEMM runs taken in turns with compare: the median of all reps."""
    samples = [rate for run in runs for rate in run["gflops_reps"]]
    return {**runs[-1], "gflops": median(samples), "gflops_reps": samples, "runs": len(runs)}


def throughput_vs_gemm(rows: list[dict], flops: int, gemm: dict) -> dict:
    """GFLOP/s of every artifact's batch throughput and its fraction of the GEMM rate."""
    artifacts = [
        {
            "artifact": row["artifact"],
            "variant": row["variant"],
            "throughput_ips": row["throughput_ips"],
            "gflops": row["throughput_ips"] * flops / 1e9,
            "fraction": row["throughput_ips"] * flops / 1e9 / gemm["gflops"],
        }
        for row in rows
        if row["status"] == "ok"
    ]
    float32 = [a for a in artifacts if a["variant"] == "float32"]
    return {
        "flops_per_image": flops,
        "gemm": gemm,
        "artifacts": artifacts,
        "best": max(artifacts, key=lambda a: a["gflops"]),
        "best_float32": max(float32, key=lambda a: a["gflops"]) if float32 else None,
    }


def gemm_ratios(result: dict) -> list[Ratio]:
    gemm = result["gemm"]
    ratios = []
    for key, label in (("best", "any artifact"), ("best_float32", "float32 artifacts")):
        best = result[key]
        if best is None:
            continue
        ratios.append(
            Ratio(
                "gemm_peak_fraction" + ("" if key == "best" else " (float32)"),
                best["fraction"],
                "none set",
                None,
                f"best throughput of {label} x FLOPs/image / numpy float32 GEMM rate",
                f"{best['artifact']}: {best['gflops']:.1f} vs {gemm['gflops']:.1f} GFLOP/s "
                f"({gemm['threads']} thread{'s' if gemm['threads'] > 1 else ''})",
            )
        )
    return ratios


if __name__ == "__main__":
    print(json.dumps(gemm_rate(int(sys.argv[1]))))
