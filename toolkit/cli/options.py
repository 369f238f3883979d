"""The CLI's option types, declared once: Annotated aliases whose limits and defaults come from
`toolkit.options` and whose choices come from the registries."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from toolkit.exporters import EXPORTERS
from toolkit.exporters.ethos_u import ACCELERATORS
from toolkit.model import ARCHITECTURES
from toolkit.options import CompareOptions, ExportOptions, PredictOptions, TrainOptions, limits
from toolkit.runners import RUNNERS

Arch = Enum("Arch", {name: name for name in ARCHITECTURES}, type=str)
Format = Enum("Format", {name: name for name in ["all", *EXPORTERS]}, type=str)
Runtime = Enum("Runtime", {name: name for name in RUNNERS}, type=str)
MixedPrecisionMode = Enum("MixedPrecisionMode", {name: name for name in ("auto", "off")}, type=str)
BatchMode = Enum("BatchMode", {name: name for name in ("1", "dynamic")}, type=str)
Npu = Enum("Npu", {name: name for name in ACCELERATORS}, type=str)


def fits_path_limits(value):
    """Refuses at parse time a path longer than the system's limits (PATH_MAX, NAME_MAX), which
    every later system call would reject, perhaps after the work was done."""
    for path in value if isinstance(value, list) else [value]:
        if path is None:
            continue
        full = os.fsencode(os.path.abspath(path))
        longest = max(len(part) for part in full.split(b"/"))
        path_max, name_max = os.pathconf("/", "PC_PATH_MAX"), os.pathconf("/", "PC_NAME_MAX")
        if len(full) >= path_max or longest > name_max:
            raise typer.BadParameter(
                f"longer than the system's limits ({len(full)} bytes, a name of {longest}; "
                f"at most {path_max - 1} and {name_max})"
            )
    return value


def _path_option(help: str, *names: str):
    return typer.Option(*names, help=help, callback=fits_path_limits)


def _no_figures(help: str):
    """Each command's --no-figures, with what that command then skips."""
    return Annotated[bool, typer.Option("--no-figures", help=help)]


def _bounded(cls, name: str, help: str, **more):
    """A typer.Option whose min and max are those of `cls`'s field `name`."""
    return typer.Option(**limits(cls, name), help=help, **more)


# Shared by several commands.
Out = Annotated[Path, _path_option("Working folder: model, artifacts, manifest, reports.", "--out")]
DataDir = Annotated[
    Path | None,
    _path_option(
        "Folder with the four Fashion-MNIST IDX files (.gz or not). Default: "
        "$FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist, ~/.keras/datasets/fashion-mnist.",
        "--data-dir",
    ),
]
Data = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="fashion-mnist (default), an .npz file (x_test, y_test, optional x_train, y_train, "
        "class_names) or a folder of images (DIR/train/<class>/*, DIR/test/<class>/*).",
    ),
]
Baseline = Annotated[Path | None, _path_option("An earlier report.json to report changes against.")]
NoVerify = Annotated[bool, typer.Option("--no-verify", help="Skip the manifest checksum check.")]
FailOutsideTolerance = Annotated[
    bool,
    typer.Option(
        "--fail-outside-tolerance",
        help="Gate: fail (exit 1) when a row misses the tolerance its file was validated to.",
    ),
]
NoReportFigures = _no_figures(
    "Skip the report's plots and flip galleries (a quicker gate); "
    "`toolkit report` draws the plots later."
)
NoRedrawnFigures = _no_figures(
    "Draw no plots (a quicker gate re-check): the page gets the tables, export's per-layer "
    "plots and the flip galleries compare drew."
)

# train
NoTrainingFigures = _no_figures(
    "Skip plots/ (a quicker run); an earlier run's plots there are removed."
)
ArchChoice = Annotated[Arch, typer.Option(help="mlp: the tutorial model; cnn: a small conv net.")]
Epochs = Annotated[int, _bounded(TrainOptions, "epochs", "Training epochs (tutorial: 10).")]
TrainBatch = Annotated[int, _bounded(TrainOptions, "batch_size", "Batch size (tutorial: 32).")]
Seed = Annotated[
    int, _bounded(TrainOptions, "seed", "Seeds Python, NumPy and TF; same seed, same weights.")
]
TrainLimit = Annotated[
    int | None, _bounded(TrainOptions, "limit", "Train on the first N training images only.")
]
Resume = Annotated[
    bool, typer.Option("--resume", help="Continue an interrupted run (same options).")
]

# export
NoQuantizationFigures = _no_figures(
    "Skip the per-layer int8 plots, quantization/*.png (a quicker export); "
    "the .json records are written."
)
Model = Annotated[Path | None, _path_option("Keras model to export (default: OUT/model.keras).")]
Formats = Annotated[list[Format], typer.Option("--format", help="Format(s) to write; repeatable.")]
CalibSamples = Annotated[
    int,
    _bounded(
        ExportOptions, "calib_samples", "Training images used to calibrate the int8 variants."
    ),
]
Opset = Annotated[int, _bounded(ExportOptions, "opset", "ONNX opset.")]
NoValidate = Annotated[
    bool, typer.Option("--no-validate", help="Keep artifacts that miss their tolerance.")
]
Scale = Annotated[
    float | None,
    typer.Option(help="Model input = x * SCALE + OFFSET (default 1/255 for 8-bit data, else 1)."),
]
Offset = Annotated[float, typer.Option(help="See --scale.")]
MixedPrecision = Annotated[
    MixedPrecisionMode,
    typer.Option(
        help="auto: an int8 variant that misses its tolerance keeps its worst layers in float."
    ),
]
MinAgreement = Annotated[
    float | None,
    _bounded(
        ExportOptions, "min_agreement", "int8 variants: top-1 agreement with the reference (0.97)."
    ),
]
ExportAccuracyDrop = Annotated[
    float | None,
    _bounded(
        ExportOptions,
        "max_accuracy_drop",
        "int8 variants, labelled data: accuracy points below the reference.",
    ),
]
Batch = Annotated[
    BatchMode,
    typer.Option(help="Batch of the TFLite files and C arrays: 1 (static, as devices run them)."),
]
CName = Annotated[
    str | None,
    typer.Option(
        "--c-name", help="C arrays' symbols: g_NAME_int8_model_data (default: the model's name)."
    ),
]
InputShapes = Annotated[
    list[str],
    typer.Option(
        "--input-shape",
        help="Fix an input's free dimensions: NAME=H,W,C (or H,W,C for one input); repeatable.",
    ),
]
Npus = Annotated[
    list[Npu], typer.Option("--npu", help="Ethos-U accelerator for --format ethos-u; repeatable.")
]

# compare
Threads = Annotated[int, _bounded(CompareOptions, "threads", "Threads for every runtime.")]
Runs = Annotated[int, _bounded(CompareOptions, "runs", "Timed batch-1 calls per artifact.")]
MaxSeconds = Annotated[
    float, _bounded(CompareOptions, "max_seconds", "Stop timing an artifact after this long.")
]
CompareBatch = Annotated[
    int, _bounded(CompareOptions, "batch_size", "Batch for the throughput test.")
]
GateAccuracyDrop = Annotated[
    float | None,
    _bounded(
        CompareOptions,
        "max_accuracy_drop",
        "Exit 1 when an artifact is more than PTS points below the reference.",
        metavar="PTS",
    ),
]
LatencyRegression = Annotated[
    float | None,
    _bounded(
        CompareOptions,
        "max_latency_regression",
        "With --baseline: exit 1 when p50 grew more than PCT %.",
        metavar="PCT",
    ),
]
Timeout = Annotated[
    float, _bounded(CompareOptions, "timeout", "Seconds before an artifact's worker is stopped.")
]
MaxMemory = Annotated[
    int | None,
    _bounded(
        CompareOptions,
        "max_memory",
        "Stop an artifact's worker that uses more memory (default: half the RAM).",
        metavar="MB",
    ),
]
Runtimes = Annotated[
    list[Runtime] | None,
    typer.Option(help="Measure only in this runtime; repeatable (default: every one)."),
]
Devices = Annotated[
    list[str] | None,
    typer.Option(
        "--device",
        help="Where rows run: local, or ssh://\\[user@]host\\[:port]\\[?python=PATH]; "
        "repeatable (default: local).",
        show_default=False,
    ),
]
SshConfig = Annotated[
    Path | None, _path_option("An ssh client config file for --device (ssh's -F).")
]
Cluster = Annotated[
    str | None,
    typer.Option(
        help="A Ray cluster (HOST:PORT, or ray://HOST:PORT from outside it): each --device LABEL "
        "is measured on its nodes started with --labels device=LABEL.",
        show_default=False,
    ),
]
CompareLimit = Annotated[
    int | None, _bounded(CompareOptions, "limit", "Evaluate on the first N items only.")
]

# predict
Images = Annotated[
    list[Path] | None,
    typer.Argument(
        help="PNG/JPEG/BMP/GIF or .npy files (resized to the model's input).",
        callback=fits_path_limits,
    ),
]
Artifact = Annotated[Path | None, _path_option("Artifact to run (default: OUT/model.keras).")]
Index = Annotated[
    list[int] | None,
    _bounded(PredictOptions, "index", "Evaluation-data item(s) to run; repeatable."),
]
Top = Annotated[int, typer.Option(min=1, max=1000, help="How many classes to show.")]
Plot = Annotated[Path | None, _path_option("Write the tutorial's prediction figure to this PNG.")]
PredictThreads = Annotated[int, _bounded(PredictOptions, "threads", "Runtime threads.")]
