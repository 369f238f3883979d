"""Part 4: int8 against float32 in the same runtime, and measured evidence where int8 is slower."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np

from tests.bench.summary import Ratio
from toolkit.comparing.measurement import MeasureSettings as MeasureConfig
from toolkit.comparing.worker import time_calls

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
PRODUCT_OPS = (
    "Gemm",
    "FusedGemm",
    "QGemm",
    "MatMul",
    "QLinearMatMul",
    "MatMulInteger",
    "Conv",
    "QLinearConv",
)


def int8_comparisons(rows: list[dict]) -> list[dict]:
    """Every int8 variant beside its runtime's float32 variant (rows: compare's medians)."""
    ok = [row for row in rows if row["status"] == "ok"]
    float32 = {row["runtime"]: row for row in ok if row["variant"] == "float32"}
    pairs = [(float32[row["runtime"]], row) for row in ok if "int8" in row["variant"]]
    return [
        {
            "runtime": quantized["runtime"],
            "artifact": quantized["artifact"],
            "float32": base["artifact"],
            "p50_ms": [base["latency_ms"]["p50"], quantized["latency_ms"]["p50"]],
            "throughput_ips": [base["throughput_ips"], quantized["throughput_ips"]],
            "size_bytes": [base["size_bytes"], quantized["size_bytes"]],
            "latency_speedup": base["latency_ms"]["p50"] / quantized["latency_ms"]["p50"],
            "throughput_speedup": quantized["throughput_ips"] / base["throughput_ips"],
            "size_ratio": quantized["size_bytes"] / base["size_bytes"],
            "accuracy_delta_pts": 100 * (quantized["accuracy"] - base["accuracy"]),
        }
        for base, quantized in pairs
        if base["runtime"] in float32
    ]


def _profiling_options(prefix: Path):
    """ORT session options with its profiler on; the runner sets everything else as usual."""
    import onnxruntime as ort

    real = ort.SessionOptions

    def make():
        options = real()
        options.enable_profiling = True
        options.profile_file_prefix = str(prefix)
        return options

    return make


def ort_op_profile(path: Path, images: np.ndarray, config: MeasureConfig) -> dict:
    """Kernel time per op type of the very call compare times (OnnxRuntimeRunner.bind).

    The profiler adds its own cost per kernel, so absolute times run high; the split between
    op types, and how many kernels one call launches, are what explain a difference.
    """
    import onnxruntime as ort

    from toolkit.runners import OnnxRuntimeRunner

    with tempfile.TemporaryDirectory(prefix="bench-ort-") as scratch:
        make = _profiling_options(Path(scratch) / "profile")
        with (
            mock.patch.object(ort, "SessionOptions", make),
            OnnxRuntimeRunner(path, config.threads) as runner,
        ):
            time_calls(runner.bind(images), config.runs, config.max_seconds, config.warmup)
            events = json.loads(Path(runner.session.end_profiling()).read_text())
    return summarize_profile(events)


def summarize_profile(events: list[dict]) -> dict:
    """Per op type: kernels and µs per call, from ORT's chrome-trace events."""
    calls = [e["dur"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    count, total = Counter(), Counter()
    for event in kernels:
        count[event["args"]["op_name"]] += 1
        total[event["args"]["op_name"]] += event["dur"]
    ops = {
        op: {"kernels_per_call": count[op] / len(calls), "us_per_call": total[op] / len(calls)}
        for op in sorted(total, key=total.get, reverse=True)
    }

    def us(names) -> float:
        return sum(ops[op]["us_per_call"] for op in ops if op in names)

    return {
        "calls": len(calls),
        "model_run_us": float(np.mean(calls)),
        "kernel_us": sum(op["us_per_call"] for op in ops.values()),
        "kernels_per_call": sum(op["kernels_per_call"] for op in ops.values()),
        "qdq_us": us(QDQ_OPS),
        "qdq_kernels_per_call": sum(ops[op]["kernels_per_call"] for op in ops if op in QDQ_OPS),
        "product_us": us(PRODUCT_OPS),
        "ops": ops,
    }


def litert_op_names(path: Path) -> list[str]:
    """The graph's ops as LiteRT runs them: structure only, its Python package has no profiler."""
    from toolkit.process import quiet_stderr
    from toolkit.runners import LiteRTRunner

    with quiet_stderr(), LiteRTRunner(path) as runner:
        return [op["op_name"] for op in runner.interpreter._get_ops_details()]


def explain_slower(out: Path, comparisons: list[dict], images: np.ndarray, config) -> None:
    """Adds `evidence` to each comparison where int8 lost on latency (batch 1) or throughput."""
    for comparison in comparisons:
        slower = {
            "latency": (comparison["latency_speedup"] < 1, images[:1]),
            "throughput": (comparison["throughput_speedup"] < 1, images[: config.batch_size]),
        }
        evidence = {}
        for what, (lost, batch) in slower.items():
            if not lost:
                continue
            names = (comparison["float32"], comparison["artifact"])
            if comparison["runtime"] == "onnxruntime":
                evidence[what] = {
                    "batch": len(batch),
                    "profiles": {n: ort_op_profile(out / n, batch, config) for n in names},
                }
            elif comparison["runtime"] == "litert":
                evidence[what] = {"ops": {n: litert_op_names(out / n) for n in names}}
        comparison["evidence"] = evidence


def int8_ratios(comparisons: list[dict]) -> list[Ratio]:
    ratios = []
    for c in comparisons:
        accuracy = f"accuracy {c['accuracy_delta_pts']:+.2f} pt"
        figures = (
            ("latency", c["latency_speedup"], "float32 p50 / int8 p50 (batch 1)"),
            ("throughput", c["throughput_speedup"], "int8 images/s / float32 images/s (batch)"),
        )
        for what, value, meaning in figures:
            note = "" if value >= 1 else "; int8 slower: see part 4"
            ratios.append(
                Ratio(
                    f"int8_speedup {what} {c['artifact']}",
                    value,
                    "none set",
                    None,
                    meaning,
                    accuracy + note,
                )
            )
        ratios.append(
            Ratio(
                f"int8_size_ratio {c['artifact']}",
                c["size_ratio"],
                "none set",
                None,
                f"int8 file size / {c['float32']} file size",
                accuracy,
            )
        )
    return ratios
