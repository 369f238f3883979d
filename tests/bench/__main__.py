"""`python -m tests.bench --out OUT` (`make bench`): runs every part, writes OUT/bench/, prints."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tests.bench import cluster, device
from tests.bench.any_model import any_model_ratios, mixed_figures, mobilenet_figures
from tests.bench.detector import detector_figures
from tests.bench.document import bench_markdown
from tests.bench.figure import plot_bench
from tests.bench.gemm import (
    explain_short,
    flops_per_image,
    gemm_ratios,
    measure_peak,
    pooled_peaks,
    throughput_vs_peak,
)
from tests.bench.latency import compare_litert_timings, latency_ratios
from tests.bench.mlperf_tiny import mlperf_tiny_figures, mlperf_tiny_ratios
from tests.bench.pipeline import export_and_compare, pipeline_ratios
from tests.bench.quantization import explain_slower, int8_comparisons, int8_ratios
from tests.bench.runs import BenchError
from tests.bench.summary import ratio_table
from tests.bench.targets import micro_footprint, target_ratios, target_timings
from tests.bench.training import compare_training, training_ratios
from toolkit.comparing.measurement import MeasureSettings as MeasureConfig
from toolkit.comparing.scoring import environment
from toolkit.errors import ToolkitError
from toolkit.fsio import write_json, write_text
from toolkit.store import load_manifest

# The full mode: at least 10 accuracy draws per side for the Welch interval, and every short run
# 3 times (medians).
FULL = {"train_reps": 10, "reps": 3}
QUICK = {"train_reps": 3, "reps": 1}
FULL_ITEMS, QUICK_ITEMS = 10_000, 1_000  # MobileNetV2's evaluation items (96x96x3)
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


@contextlib.contextmanager
def part(name: str, seconds: dict[str, float]):
    """Announces a part and records how long it took, so a slow bench shows where."""
    console.print(f"[bold]{name}[/] ...", highlight=False)
    start = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - start, 1)
    console.print(f"  {name}: {seconds[name]:.0f} s", highlight=False)


def optional_part(title: str, skip_reason, measure, seconds: dict[str, float]):
    """A part that needs what a machine may lack (sshd, Ray, root): `measure` timed as a part,
    or a function returning the reason it was skipped."""
    reason = skip_reason()
    if reason is not None:
        console.print(f"[bold]{title}[/]: skipped, {reason}", highlight=False)
        return lambda *args: {"skipped": reason}

    def timed(*args) -> dict:
        with part(title, seconds):
            return measure(*args)

    return timed


def model_flops(out: Path) -> int:
    from toolkit.formats.keras import load_keras_model
    from toolkit.process import import_tensorflow

    import_tensorflow()
    return flops_per_image(load_keras_model(out / "model.keras"))


def device_parts(out: Path, reps: int, seconds: dict[str, float]) -> dict:
    """Parts 10 and 11, on OUT's exported model: the ssh device and the Ray fleet."""
    title = "10 the ssh device agent vs a bare invoke() loop on the device"
    measure_device = optional_part(title, device.skip_reason, device.device_timings, seconds)
    title = "11 compare over two Ray device labels vs one"
    measure_cluster = optional_part(title, cluster.skip_reason, cluster.cluster_timings, seconds)
    return {"device": measure_device(out, reps), "cluster": measure_cluster(out, reps)}


def bench_ratios(bench: dict) -> list:
    """Every part's headline ratios, in the parts' order; a skipped part has none."""
    return [
        *training_ratios(bench["training"]),
        *latency_ratios(bench["litert"]),
        *gemm_ratios(bench["gemm"]),
        *int8_ratios(bench["int8"]),
        *pipeline_ratios(bench["pipeline"]),
        *target_ratios(bench["targets"]["timings"]),
        *any_model_ratios(**bench["any_model"]),
        *mlperf_tiny_ratios(bench["mlperf_tiny"]),
        *([] if "skipped" in bench["device"] else device.device_ratios(bench["device"])),
        *([] if "skipped" in bench["cluster"] else cluster.cluster_ratios(bench["cluster"])),
    ]


def run_bench(
    out: Path, train_reps: int, reps: int, threads: int, items: int = 10_000
) -> tuple[dict, list]:
    """Every part (the GEMM runs in turns with compare); bench.json's content and the ratios."""
    from toolkit.data import load_dataset, normalize
    from toolkit.process import recorded_versions as library_versions

    logs, seconds = out / "bench" / "logs", {}
    config = MeasureConfig(threads=threads)
    bench = {"command": "python -m tests.bench " + " ".join(sys.argv[1:])}
    bench["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    bench["load_average"] = {"start": os.getloadavg()[0]}
    bench["settings"] = {"train_reps": train_reps, "reps": reps, **asdict(config)}
    with part("1 training: tutorial vs toolkit train", seconds):
        bench["training"] = compare_training(out, train_reps, logs)
    with part("5 export and compare, with the GEMM peaks of part 3 in the same turns", seconds):
        gemm = {"gemm": lambda rep: measure_peak(threads, logs / f"gemm-{rep}.log")}
        bench["pipeline"] = export_and_compare(out, threads, reps, logs, alongside=gemm)
    rows = bench["pipeline"]["report"]["rows"]
    dataset = load_dataset()
    with part("2 LiteRT: toolkit vs bare loop vs LiteRT tool", seconds):
        tflite = [a.name for a in load_manifest(out).artifacts if a.runtime == "litert"]
        bench["litert"] = compare_litert_timings(
            out, tflite, dataset.test_images, config, reps, logs
        )
    with part("3 throughput against the GEMM peaks", seconds):
        peak = pooled_peaks(bench["pipeline"].pop("gemm"))
        bench["gemm"] = throughput_vs_peak(rows, model_flops(out), peak)
        explain_short(out, bench["gemm"], normalize(dataset.test_images), config)
    with part("4 int8 vs float32", seconds):
        bench["int8"] = int8_comparisons(rows)
        explain_slower(out, bench["int8"], normalize(dataset.test_images), config)
    with part("6 edge targets: TFLite Micro and OpenVINO vs their bare calls", seconds):
        bench["targets"] = {
            "timings": target_timings(out, dataset.test_images, config, reps),
            "footprint": micro_footprint(out),
        }
    title = "7 a real-size model (MobileNetV2) and int8 that needs mixed precision"
    with (
        part(title, seconds),
        tempfile.TemporaryDirectory(dir=out) as one,
        tempfile.TemporaryDirectory(dir=out) as two,
    ):
        bench["any_model"] = {
            "mobilenet": mobilenet_figures(Path(one), items),
            "mixed": mixed_figures(Path(two)),
        }
    title = "8 a detector (SSD-lite, MobileNetV2 0.35 at 96x96)"
    with part(title, seconds), tempfile.TemporaryDirectory(dir=out) as three:
        bench["detector"] = detector_figures(Path(three))
    # The real-size models test_any_model takes small: every desktop format, every runtime.
    with (
        part("9 MLPerf Tiny models at their size", seconds),
        tempfile.TemporaryDirectory(dir=out) as four,
    ):
        bench["mlperf_tiny"] = mlperf_tiny_figures(Path(four))
    bench.update(device_parts(out, reps, seconds))
    bench["environment"] = environment(library_versions())
    bench["load_average"]["end"] = os.getloadavg()[0]
    bench["part_seconds"] = seconds
    ratios = bench_ratios(bench)
    bench["ratios"] = [asdict(ratio) for ratio in ratios]
    return bench, ratios


def main(
    out: Annotated[Path, typer.Option(help="Working folder; results go to OUT/bench/.")] = Path(
        "exported"
    ),
    train_reps: Annotated[
        int,
        typer.Option(min=2, help="Training runs per side (each 8-60 s): accuracy draws, median."),
    ] = FULL["train_reps"],
    reps: Annotated[int, typer.Option(min=1, help="Repetitions of every short run.")] = FULL[
        "reps"
    ],
    threads: Annotated[int, typer.Option(min=1, help="Runtime and BLAS threads.")] = 1,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            envvar="BENCH_QUICK",
            help=f"Development mode: {QUICK['train_reps']} training runs per side and "
            f"{QUICK['reps']} of the rest, unless given. The README quotes the full mode.",
        ),
    ] = False,
) -> None:
    """Measure the issue's ratios and write OUT/bench/bench.{json,md,png}."""
    if quick:
        train_reps = QUICK["train_reps"] if train_reps == FULL["train_reps"] else train_reps
        reps = QUICK["reps"] if reps == FULL["reps"] else reps
    start = time.perf_counter()
    out = out.resolve()
    try:
        items = QUICK_ITEMS if quick else FULL_ITEMS
        bench, ratios = run_bench(out, train_reps, reps, threads, items)
    except (BenchError, ToolkitError) as exc:
        console.print(f"[bold red]bench failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    bench["total_seconds"] = round(time.perf_counter() - start, 1)
    folder = out / "bench"
    write_json(folder / "bench.json", bench)
    write_text(folder / "bench.md", bench_markdown(bench, ratios))
    plot_bench(bench, folder / "bench.png")
    console.print(ratio_table(ratios, f"bench · {bench['total_seconds'] / 60:.1f} min"))
    console.print(f"written: {folder}/bench.md, bench.json, bench.png", highlight=False)


if __name__ == "__main__":
    typer.run(main)
