"""Part 3: best measured model throughput as a fraction of the machine's GEMM peak, per precision.

The peak is measured in its own process (`python -m tests.bench.gemm THREADS`) with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its environment: on these machines they pin
OpenBLAS to an older kernel, which would put the "peak" below what the CPU does. Only that process
loses them; tests, CI and the artifacts' workers keep them. float32 peak: the fastest of numpy's
(OpenBLAS) and ONNX Runtime's MatMul; int8 peak: ONNX Runtime's MatMulInteger (uint8 x int8 ->
int32). All on squares of several large sizes (the fastest size counts: smaller ones stay in
cache, larger ones amortize packing), at the runtime thread count. ONNX Runtime gets its right
matrix as an initializer, as a model's weights are, so it packs it once, as it does for a model.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from tests.bench import USER_ENV
from tests.bench.runs import median, run_timed
from tests.bench.summary import Ratio

SIZES = (512, 1024, 2048)  # 0.27 to 17 G operations a product: call overheads vanish
REPS = 5
PINNING_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
GOALS = {"float32": 0.5, "int8": 0.3}  # the issue's: best artifact's fraction of its peak


def flops_per_image(model) -> int:
    """2 x multiply-accumulates of every Dense/Conv layer: kernel size times output positions."""
    macs = 0
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            positions = math.prod(layer.output.shape[1:-1])  # 1 for Dense, H*W for Conv2D
            macs += math.prod(layer.kernel.shape) * positions
    return 2 * macs


def precision(variant: str) -> str:
    """Which peak an artifact is held to: int8 for weights or activations in int8, else float32
    (float16 weights are widened to float32 before the products)."""
    return "int8" if "int8" in variant else "float32"


def _rates(call, size: int, reps: int) -> dict:
    """Median G(FL)OP/s of `call`, one product of two size x size matrices per call."""
    from toolkit.comparing.worker import time_calls

    samples_ns = time_calls(call, reps, 60.0, warmup=1)
    rates = [2 * size**3 / ns for ns in samples_ns]  # operations per ns = G operations/s
    return {"gflops": float(np.median(rates)), "gflops_reps": [float(r) for r in rates]}


def numpy_float32(threads: int, size: int, reps: int) -> dict:
    """np.matmul into a preallocated output, OpenBLAS limited to `threads` by threadpoolctl."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    c = np.empty_like(a)
    with threadpool_limits(threads, user_api="blas"):
        return _rates(lambda: np.matmul(a, b, out=c), size, reps)


def blas_in_use(threads: int) -> list[dict]:
    """What threadpoolctl reports of numpy's BLAS under the limit; `architecture` is the kernel
    OpenBLAS picked at run time (e.g. SkylakeX, Haswell, Zen)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    keys = ("internal_api", "version", "architecture", "num_threads", "filepath")
    with threadpool_limits(threads, user_api="blas"):
        libraries = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    return [{key: lib.get(key) for key in keys} for lib in libraries]


def _random_matrix(rng, dtype, size: int) -> np.ndarray:
    if dtype is np.float32:
        return rng.random((size, size), dtype=np.float32)
    return rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, (size, size)).astype(dtype)


def ort_product(op: str, dtypes: tuple, threads: int, size: int, reps: int) -> dict:
    """One ONNX Runtime node (`MatMul` or `MatMulInteger`): input `a` times initializer `b`."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    elem = {np.float32: TensorProto.FLOAT, np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}
    out_type = TensorProto.FLOAT if op == "MatMul" else TensorProto.INT32
    rng = np.random.default_rng(0)
    a, b = (_random_matrix(rng, dtype, size) for dtype in dtypes)
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["c"])],
        "peak",
        [helper.make_tensor_value_info("a", elem[dtypes[0]], [size, size])],
        [helper.make_tensor_value_info("c", out_type, [size, size])],
        [numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    options = ort.SessionOptions()  # as toolkit's runner sets it up
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    binding = session.io_binding()
    binding.bind_cpu_input("a", a)
    binding.bind_output("c")
    return {**_rates(lambda: session.run_with_iobinding(binding), size, reps), "op": op}


def measure_peaks(threads: int, sizes: tuple[int, ...] = SIZES, reps: int = REPS) -> dict:
    """Every candidate's rate at every size; pooled_peaks picks the fastest per precision."""
    float32, int8 = {}, {}
    for n in sizes:
        float32[f"numpy matmul {n}"] = numpy_float32(threads, n, reps)
        float32[f"onnxruntime MatMul {n}"] = ort_product(
            "MatMul", (np.float32, np.float32), threads, n, reps
        )
        int8[f"onnxruntime MatMulInteger {n}"] = ort_product(
            "MatMulInteger", (np.uint8, np.int8), threads, n, reps
        )
    return {
        "sizes": list(sizes),
        "threads": threads,
        "blas": blas_in_use(threads),
        "environment": {name: os.environ.get(name) for name in PINNING_VARIABLES},
        "candidates": {"float32": float32, "int8": int8},
    }


def measure_peak(threads: int, log: Path) -> dict:
    """measure_peaks in a process without the OpenBLAS pinning; records what the caller had."""
    env = {k: v for k, v in USER_ENV.items() if k not in PINNING_VARIABLES}
    run = run_timed([sys.executable, "-m", "tests.bench.gemm", str(threads)], log, env=env)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["caller_pinning"] = {name: USER_ENV.get(name) for name in PINNING_VARIABLES}
    return result


def pooled_peaks(runs: list[dict]) -> dict:
    """Runs taken in turns with compare pooled: per candidate the best of all its products (on a
    shared machine noise only ever slows a product down; STREAM reports best rates too); per
    precision the fastest candidate is the peak."""
    last = runs[-1]
    peaks = {}
    for kind, candidates in last["candidates"].items():
        pooled = {}
        for name, candidate in candidates.items():
            samples = [r for run in runs for r in run["candidates"][kind][name]["gflops_reps"]]
            pooled[name] = {
                **candidate,
                "gflops": max(samples),
                "median_gflops": median(samples),
                "gflops_reps": samples,
            }
        best = max(pooled, key=lambda name: pooled[name]["gflops"])
        peaks[kind] = {"source": best, "gflops": pooled[best]["gflops"], "candidates": pooled}
    return {**last, "runs": len(runs), "peaks": peaks}


def throughput_vs_peak(rows: list[dict], flops: int, peak: dict) -> dict:
    """GFLOP/s (int8: G integer operations/s) of every artifact's batch throughput, as a fraction
    of its precision's peak; the best artifact of each precision."""
    artifacts = [
        {
            "artifact": row["artifact"],
            "variant": row["variant"],
            "runtime": row["runtime"],
            "precision": precision(row["variant"]),
            "throughput_ips": row["throughput_ips"],
            "gflops": row["throughput_ips"] * flops / 1e9,
        }
        for row in rows
        if row["status"] == "ok"
    ]
    for artifact in artifacts:
        artifact["fraction"] = artifact["gflops"] / peak["peaks"][artifact["precision"]]["gflops"]
    best = {}
    for kind in GOALS:
        same = [a for a in artifacts if a["precision"] == kind]
        if same:
            best[kind] = max(same, key=lambda a: a["gflops"])
    return {"flops_per_image": flops, "peak": peak, "artifacts": artifacts, "best": best}


def gemm_ratios(result: dict) -> list[Ratio]:
    peaks = result["peak"]["peaks"]
    threads = result["peak"]["threads"]
    ratios = []
    for kind, best in result["best"].items():
        peak = peaks[kind]
        unit = "GFLOP/s" if kind == "float32" else "GOP/s"
        ratios.append(
            Ratio(
                f"gemm_peak_fraction {kind}",
                best["fraction"],
                f">= {GOALS[kind]:g}",
                best["fraction"] >= GOALS[kind],
                f"best {kind} artifact's images/s x FLOPs/image / {kind} GEMM peak "
                f"({threads} thread{'s' if threads > 1 else ''})",
                f"{best['artifact']}: {best['gflops']:.1f} vs {peak['gflops']:.1f} {unit} "
                f"({peak['source']})",
            )
        )
    return ratios


if __name__ == "__main__":
    print(json.dumps(measure_peaks(int(sys.argv[1]))))


def explain_short(out: Path, result: dict, images: np.ndarray, config) -> None:
    """Adds `evidence` to every artifact below its precision's goal: ONNX Runtime's profiler on
    the call compare's throughput test times (batch `config.batch_size`); for LiteRT, whose
    Python package has no op profiler, the ops it runs."""
    from tests.bench.quantization import litert_op_names, ort_op_profile

    batch = images[: config.batch_size]
    for artifact in result["artifacts"]:
        if artifact["fraction"] >= GOALS[artifact["precision"]]:
            continue
        path = out / artifact["artifact"]
        if artifact["runtime"] == "onnxruntime":
            profile = ort_op_profile(path, batch, config)
            flops = result["flops_per_image"] * len(batch)
            profile["product_gflops"] = flops / profile["product_us"] / 1e3
            artifact["evidence"] = {"batch": len(batch), "profile": profile}
        elif artifact["runtime"] == "litert":
            artifact["evidence"] = {"ops": litert_op_names(path)}
