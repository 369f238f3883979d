"""Edge targets: the TFLite Micro and OpenVINO runners timed by the toolkit against a bare loop
of each runtime's own API on the same runtime object, and the int8 model's microcontroller
footprint.

`python -m tests.bench.targets --out OUT` runs it alone; without OUT/model_int8.tflite it first
exports an untrained tutorial-sized model there (timing and footprint depend on shapes only).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from tests.bench.latency import GOAL_BARE, timed_in_worker, tutorial_data
from tests.bench.runs import interleave, median
from tests.bench.summary import Ratio, ratio_table
from toolkit.comparing.measurement import MeasureSettings as MeasureConfig

# (runtime, artifact): each new runtime on a float32 and an int8 file.
TIMED = (
    ("tflite-micro", "model_int8.tflite"),
    ("tflite-micro", "model_float32.tflite"),
    ("openvino", "model_float32.onnx"),
    ("openvino", "model_int8.tflite"),
)


# The runtime object each runner builds, which the bare loop times again.
NATIVE = {"tflite-micro": "interpreter", "openvino": "compiled"}


@dataclass
class KeptRuntime:
    """A runner class for `measure` that keeps the runtime object its runner builds, so that
    the bare loop times that same object with the runtime's own API. Built anew, it measures
    another object: 24 TFLM interpreters of the int8 tutorial model built one after another in
    one process ran at p50s of 65-77 µs, one of them timed 16 times at 65-69 µs; two full runs
    failed the 10% bound (0.85x, 1.23x) on the int8 row, whose bound call is `invoke` itself."""

    runner_class: type
    native: object = None

    @property
    def module(self) -> str:
        return self.runner_class.module

    @property
    def runtime(self) -> str:
        return self.runner_class.runtime

    @property
    def package(self) -> str:
        return self.runner_class.package

    def __call__(self, path: Path, threads: int):
        runner = self.runner_class(path, threads)
        self.native = getattr(runner, NATIVE[self.runtime])
        return runner


def bare_call(runtime: str, native) -> Callable[[], object]:
    """The runtime's own call on zeros already in its input buffer, on `native`: a TFLM
    interpreter or an OpenVINO compiled model."""
    if runtime == "tflite-micro":
        detail = native.get_input_details(0)
        native.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
        return native.invoke
    import openvino as ov

    port = native.input(0)
    shape = [1, *(d.get_length() for d in list(port.get_partial_shape())[1:])]
    request = native.create_infer_request()
    request.set_input_tensor(ov.Tensor(np.zeros(shape, port.get_element_type().to_dtype())))
    return request.infer


def target_timings(out: Path, test_images, config: MeasureConfig, reps: int) -> list[dict]:
    """Per (runtime, artifact): `reps` worker rounds; median p50s and the bare-call ratio."""
    from toolkit.runners import RUNNERS

    scratch = tempfile.TemporaryDirectory(prefix="bench-data-")
    data = tutorial_data(Path(scratch.name), test_images)
    rows = []
    for runtime, name in TIMED:

        def timed(rep, runtime=runtime, path=out / name):
            kept = KeptRuntime(RUNNERS[runtime])
            return timed_in_worker(kept, path, data, config, own_bare_call)

        runs = interleave(reps, {"worker": timed})["worker"]
        row = {"runtime": runtime, "artifact": name, "reps": runs}
        for key in ("toolkit_p50_ms", "bare_p50_ms"):
            row[key] = median([run[key] for run in runs])
        row["bare_call_ratio"] = row["toolkit_p50_ms"] / row["bare_p50_ms"]
        rows.append(row)
    return rows


def own_bare_call(kept: KeptRuntime, path: Path, data, threads: int):
    """The runtime's own API on the object the measured runner built (the floor it is held to)."""
    return bare_call(kept.runtime, kept.native)


def micro_footprint(out: Path) -> dict:
    """What decides whether the int8 model fits a microcontroller: arena (RAM) and flash bytes."""
    from toolkit.formats.tflite_micro import measure_arena_bytes

    path = out / "model_int8.tflite"
    return {
        "artifact": path.name,
        "arena_bytes": measure_arena_bytes(path),
        "flash_bytes": path.stat().st_size,
    }


def target_ratios(rows: list[dict]) -> list[Ratio]:
    return [
        Ratio(
            f"bare_call_ratio {row['runtime']} {row['artifact']}",
            row["bare_call_ratio"],
            f"within {100 * GOAL_BARE:g}% of 1",
            abs(row["bare_call_ratio"] - 1) <= GOAL_BARE,
            "toolkit batch-1 p50 / bare invoke()/infer() loop p50 of the runtime's own API on "
            "the runner's runtime object, same process",
            f"{1000 * row['toolkit_p50_ms']:.2f} vs {1000 * row['bare_p50_ms']:.2f} µs",
        )
        for row in rows
    ]


def export_tutorial_sized_model(out: Path) -> None:
    """The tutorial's architecture, untrained, as the three files TIMED needs."""
    from toolkit.data import calibration_images, load_dataset
    from toolkit.exporters import EXPORTERS, ExportContext
    from toolkit.model import build_mlp
    from toolkit.process import import_tensorflow

    import_tensorflow()
    out.mkdir(parents=True, exist_ok=True)
    model, wanted = build_mlp(), {name for _, name in TIMED}
    model.save(out / "model.keras")
    calibration = calibration_images(load_dataset(), 500)
    context = ExportContext(model, out / "model.keras", calibration, 17, out / ".build")
    for variant in [*EXPORTERS["tflite"], *EXPORTERS["onnx"]]:
        if variant.filename in wanted:
            variant.write(model, out / variant.filename, context)


def main(
    out: Annotated[Path, typer.Option(help="Folder with the exported artifacts.")] = Path(
        "exported"
    ),
    reps: Annotated[int, typer.Option(min=1, help="Worker rounds per artifact; median.")] = 3,
    threads: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Times the edge runners against bare loops and prints the int8 model's footprint."""
    from rich.console import Console

    from toolkit.data import load_dataset

    out = out.resolve()
    if not (out / "model_int8.tflite").is_file():
        export_tutorial_sized_model(out)
    rows = target_timings(out, load_dataset().test_images, MeasureConfig(threads=threads), reps)
    console = Console(width=160)
    console.print(ratio_table(target_ratios(rows), "edge targets"))
    footprint = micro_footprint(out)
    console.print(
        f"{footprint['artifact']} in TFLite Micro: arena {footprint['arena_bytes']} bytes, "
        f"flash {footprint['flash_bytes']} bytes",
        highlight=False,
    )


if __name__ == "__main__":
    typer.run(main)
