"""A real-size model and int8 that needs mixed precision, each through the CLI as a user runs it.

`mobilenet_figures`: MobileNetV2 (alpha 0.35, 96x96x3, 1,000 classes) on 10,000 synthetic
images: whole-process export and compare seconds, peak memory (compare's own process and its
largest worker), and LiteRT's toolkit/bare-invoke ratio for the float32 and int8 files.
`mixed_figures`: a model whose full int8 misses the tolerance, exported with and without the
mixed-precision search: agreement, accuracy, size and p50 of full int8 vs mixed, and both export
times. `python -m tests.bench.any_model --out DIR` runs both alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from tests.bench.latency import GOAL_BARE, runner_bare_call, timed_in_worker
from tests.bench.runs import BenchError
from tests.bench.summary import Ratio
from toolkit.comparing.data import EvalData
from toolkit.comparing.measurement import MeasureSettings as MeasureConfig

DESKTOP = ["--format", "keras", "--format", "savedmodel", "--format", "tflite", "--format", "onnx"]


def _toolkit(*args: str, expect: int | tuple[int, ...] = 0) -> tuple[float, float]:
    """Wall seconds of one toolkit command and the peak resident MB of its largest process
    (itself or one of its workers), measured from a wrapper process of its own; `expect` is the
    exit code (or codes) it must end with."""
    wrapper = (
        "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    command = [sys.executable, "-m", "toolkit", *map(str, args)]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    code, peak_mb = done.stdout.split()[-2:]
    if int(code) not in (expect if isinstance(expect, tuple) else (expect,)):
        raise BenchError(f"toolkit {args[0]} exited {code}: {done.stderr[-500:]!r}")
    return seconds, float(peak_mb)


def export_and_compare(out: Path, export_args: tuple, compare_args: tuple) -> dict:
    """`toolkit export` then `toolkit compare` into `out`: each one's seconds and peak MB."""
    export_s, export_peak = _toolkit("export", "--out", out, *export_args)
    compare_s, compare_peak = _toolkit("compare", "--out", out, *compare_args)
    return {
        "export_seconds": export_s,
        "compare_seconds": compare_s,
        "export_peak_mb": export_peak,
        "compare_peak_mb": compare_peak,
    }


def mobilenet_figures(folder: Path, items: int = 10_000) -> dict:
    from tests import models
    from toolkit.data import Preprocessing
    from toolkit.process import import_tensorflow
    from toolkit.runners import LiteRTRunner

    keras = import_tensorflow().keras
    keras.utils.set_random_seed(0)
    models.mobilenet_v2().save(folder / "mobilenet.keras")
    images, labels = models.class_images(items, (96, 96, 3), 2)
    np.savez(folder / "synthetic.npz", x_train=images[:500], x_test=images, y_test=labels)
    out = folder / "out"
    cli = export_and_compare(
        out,
        ("--model", folder / "mobilenet.keras", "--data", folder / "synthetic.npz", *DESKTOP),
        ("--runtime", "keras", "--runtime", "litert", "--runs", "200"),
    )
    report = json.loads((out / "report" / "report.json").read_text())
    worker_peak = max(r["peak_rss_mb"] or 0 for r in report["rows"])
    config = MeasureConfig(runs=500, max_seconds=2)
    with tempfile.TemporaryDirectory(prefix="bench-mnv2-") as scratch:
        data = EvalData.write(images[:256], Path(scratch), Preprocessing(1 / 255), (96, 96, 3))
        bare = {
            name: timed_in_worker(LiteRTRunner, out / name, data, config, runner_bare_call)
            for name in ("model_float32.tflite", "model_int8.tflite")
        }
    return {
        "items": items,
        **cli,
        "largest_worker_peak_mb": worker_peak,
        "litert": {
            name: {**timing, "ratio": timing["toolkit_p50_ms"] / timing["bare_p50_ms"]}
            for name, timing in bare.items()
        },
    }


def mixed_figures(folder: Path) -> dict:
    """Full int8 (kept with --no-validate) against the mixed model auto picks, same data."""
    from tests.test_quantization import build_outlier_model, synthetic_images

    build_outlier_model("weights").save(folder / "outliers.keras")
    x_train, y_train = synthetic_images(np.random.default_rng(5), 1000)
    x_test, y_test = synthetic_images(np.random.default_rng(6), 2000)
    data = folder / "outliers.npz"
    np.savez(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    common = ["--model", folder / "outliers.keras", "--data", data, "--format", "tflite"]
    seconds = {
        "off": _toolkit("export", "--out", folder / "off", *common, "--mixed-precision", "off",
                        expect=5)[0],
        # Dynamic-range int8 has no mixed fallback and is left out here (exit 5) either way.
        "auto": _toolkit("export", "--out", folder / "auto", *common, expect=5)[0],
    }  # fmt: skip
    _toolkit("export", "--out", folder / "full", *common, "--no-validate")
    rows = {}
    for side, name in (("full", "model_int8.tflite"), ("auto", "model_mixed_int8.tflite")):
        _toolkit("compare", "--out", folder / side, "--runtime", "litert", "--runs", "500")
        report = json.loads((folder / side / "report" / "report.json").read_text())
        row = next(r for r in report["rows"] if r["artifact"] == name and r["runtime"] == "litert")
        rows[side] = {k: row[k] for k in ("artifact", "agreement", "accuracy", "size_bytes")}
        rows[side]["p50_ms"] = row["latency_ms"]["p50"]
    manifest = json.loads((folder / "auto" / "manifest.json").read_text())
    mixed = next(a for a in manifest["artifacts"] if a["variant"] == "mixed_int8")
    return {
        "full_int8": rows["full"],
        "mixed": rows["auto"],
        "float_layers": mixed["quantization"]["float_layers"],
        "export_seconds_without_search": seconds["off"],
        "export_seconds_with_search": seconds["auto"],
    }


def any_model_ratios(mobilenet: dict, mixed: dict) -> list[Ratio]:
    ratios = [
        Ratio(
            f"bare_invoke_ratio MobileNetV2 {name}",
            timing["ratio"],
            f"within {100 * GOAL_BARE:g}% of 1",
            abs(timing["ratio"] - 1) <= GOAL_BARE,
            "toolkit batch-1 p50 / bare invoke() loop p50, same worker",
            f"{1000 * timing['toolkit_p50_ms']:.1f} vs {1000 * timing['bare_p50_ms']:.1f} µs",
        )
        for name, timing in mobilenet["litert"].items()
    ]
    ratios.append(
        Ratio(
            "mobilenet_compare_peak_gb",
            mobilenet["compare_peak_mb"] / 1024,
            "< 2.5",
            mobilenet["compare_peak_mb"] < 2.5 * 1024,
            f"largest process of `compare` on {mobilenet['items']:,} 96x96x3 items (GB)",
            f"export {mobilenet['export_seconds']:.1f} s ({mobilenet['export_peak_mb']:,.0f} MB), "
            f"compare {mobilenet['compare_seconds']:.1f} s",
        )
    )
    full, auto = mixed["full_int8"], mixed["mixed"]
    ratios.append(
        Ratio(
            "mixed_vs_full_int8_agreement",
            auto["agreement"] / full["agreement"],
            "mixed meets 0.97",
            auto["agreement"] >= 0.97,
            f"float layers {', '.join(mixed['float_layers'])}",
            f"agreement {full['agreement']:.4f} -> {auto['agreement']:.4f}, "
            f"size {full['size_bytes']:,} -> {auto['size_bytes']:,} B, "
            f"p50 {1000 * full['p50_ms']:.2f} -> {1000 * auto['p50_ms']:.2f} µs, export "
            f"{mixed['export_seconds_without_search']:.1f} -> "
            f"{mixed['export_seconds_with_search']:.1f} s",
        )
    )
    return ratios


def main(out: Annotated[Path, typer.Option()] = Path("exported")) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as one, tempfile.TemporaryDirectory(dir=out) as two:
        mobilenet, mixed = mobilenet_figures(Path(one)), mixed_figures(Path(two))
    (out / "any_model.json").write_text(
        json.dumps({"mobilenet": mobilenet, "mixed": mixed}, indent=2)
    )
    from rich.console import Console

    from tests.bench.summary import ratio_table

    Console().print(ratio_table(any_model_ratios(mobilenet, mixed), "any model, mixed precision"))


if __name__ == "__main__":
    typer.run(main)
