"""The `toolkit` command line: each command declares its options, `_run` builds the options
object from them and calls the command's entry of `api.COMMANDS`, and `render` prints the result.

Heavy libraries (TensorFlow, ONNX Runtime, LiteRT) are imported inside the API's run functions,
so `toolkit --help` starts without them.
"""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from toolkit import api
from toolkit.cli.options import (
    ArchChoice,
    Artifact,
    Baseline,
    Batch,
    CalibSamples,
    Cluster,
    CName,
    CompareBatch,
    CompareLimit,
    Data,
    DataDir,
    Devices,
    Epochs,
    ExportAccuracyDrop,
    FailOutsideTolerance,
    Formats,
    GateAccuracyDrop,
    Images,
    Index,
    InputShapes,
    LatencyRegression,
    MaxMemory,
    MaxSeconds,
    MinAgreement,
    MixedPrecision,
    Model,
    NoQuantizationFigures,
    NoRedrawnFigures,
    NoReportFigures,
    NoTrainingFigures,
    NoValidate,
    NoVerify,
    Npus,
    Offset,
    Opset,
    Out,
    Plot,
    PredictThreads,
    Resume,
    Runs,
    Runtimes,
    Scale,
    Seed,
    SshConfig,
    Threads,
    Timeout,
    Top,
    TrainBatch,
    TrainLimit,
)
from toolkit.cli.render import (
    ArtifactLines,
    EpochProgress,
    RowProgress,
    handles_errors,
    print_export,
    print_predictions,
    print_report,
    print_training,
    print_verification,
    state,
)
from toolkit.options import (
    CompareOptions,
    ExportOptions,
    PredictOptions,
    ReportOptions,
    TrainOptions,
    VerifyOptions,
)

app = typer.Typer(
    help="Train the Fashion-MNIST tutorial model, export it to edge formats, compare them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    state["debug"] = debug


@app.command()
@handles_errors
def train(
    out: Out = TrainOptions.out,
    data: Data = TrainOptions.data,
    data_dir: DataDir = TrainOptions.data_dir,
    arch: ArchChoice = TrainOptions.arch,
    epochs: Epochs = TrainOptions.epochs,
    batch_size: TrainBatch = TrainOptions.batch_size,
    seed: Seed = TrainOptions.seed,
    limit: TrainLimit = TrainOptions.limit,
    resume: Resume = TrainOptions.resume,
    no_figures: NoTrainingFigures = not TrainOptions.figures,
) -> None:
    """Train the tutorial model on Fashion-MNIST; writes model.keras, training/ and plots/."""
    print_training(_run("train", locals(), EpochProgress(epochs)), out)


@app.command()
@handles_errors
def export(
    out: Out = ExportOptions.out,
    model: Model = ExportOptions.model,
    format: Formats = ExportOptions.formats,
    calib_samples: CalibSamples = ExportOptions.calib_samples,
    opset: Opset = ExportOptions.opset,
    no_validate: NoValidate = not ExportOptions.validate,
    data: Data = ExportOptions.data,
    scale: Scale = ExportOptions.scale,
    offset: Offset = ExportOptions.offset,
    mixed_precision: MixedPrecision = ExportOptions.mixed_precision,
    min_agreement: MinAgreement = ExportOptions.min_agreement,
    max_accuracy_drop: ExportAccuracyDrop = ExportOptions.max_accuracy_drop,
    data_dir: DataDir = ExportOptions.data_dir,
    batch: Batch = ExportOptions.batch,
    c_name: CName = ExportOptions.c_name,
    npu: Npus = ExportOptions.npus,
    input_shape: InputShapes = ExportOptions.input_shapes,
    no_figures: NoQuantizationFigures = not ExportOptions.figures,
) -> None:
    """Export to Keras, SavedModel, TFLite (x4), ONNX (x2), TFLite Micro C arrays and Ethos-U,
    validate each, write the manifest."""
    manifest = _run("export", locals(), ArtifactLines(model, out))
    print_export(manifest, out)


@app.command()
@handles_errors
def compare(
    out: Out = CompareOptions.out,
    threads: Threads = CompareOptions.threads,
    runs: Runs = CompareOptions.runs,
    max_seconds: MaxSeconds = CompareOptions.max_seconds,
    batch_size: CompareBatch = CompareOptions.batch_size,
    max_accuracy_drop: GateAccuracyDrop = CompareOptions.max_accuracy_drop,
    baseline: Baseline = CompareOptions.baseline,
    max_latency_regression: LatencyRegression = CompareOptions.max_latency_regression,
    fail_outside_tolerance: FailOutsideTolerance = CompareOptions.fail_outside_tolerance,
    timeout: Timeout = CompareOptions.timeout,
    max_memory: MaxMemory = CompareOptions.max_memory,
    no_verify: NoVerify = not CompareOptions.verify,
    runtime: Runtimes = CompareOptions.runtimes,
    data: Data = CompareOptions.data,
    limit: CompareLimit = CompareOptions.limit,
    data_dir: DataDir = CompareOptions.data_dir,
    no_figures: NoReportFigures = not CompareOptions.figures,
    device: Devices = None,
    ssh_config: SshConfig = CompareOptions.ssh_config,
    cluster: Cluster = CompareOptions.cluster,
) -> None:
    """Run every artifact in its runtime: accuracy, agreement, latency, throughput, size, memory."""
    report = _run("compare", locals(), RowProgress())
    print_report(report, out)


@app.command()
@handles_errors
def report(
    out: Out = ReportOptions.out,
    baseline: Baseline = ReportOptions.baseline,
    no_figures: NoRedrawnFigures = not ReportOptions.figures,
) -> None:
    """Re-render OUT/report/ from its report.json (and a baseline) without measuring again."""
    print_report(_run("report", locals()), out)


@app.command()
@handles_errors
def predict(
    images: Images = None,
    out: Out = PredictOptions.out,
    artifact: Artifact = PredictOptions.artifact,
    index: Index = None,
    top: Top = 3,
    plot: Plot = PredictOptions.plot,
    threads: PredictThreads = PredictOptions.threads,
    no_verify: NoVerify = not PredictOptions.verify,
    data: Data = PredictOptions.data,
    data_dir: DataDir = PredictOptions.data_dir,
) -> None:
    """Run any artifact on inputs: the top classes of a classifier, a summary of other outputs."""
    print_predictions(_run("predict", locals()), top, plot)


@app.command()
@handles_errors
def verify(out: Out = VerifyOptions.out) -> None:
    """Recompute every checksum in OUT/manifest.json; exit 4 naming each missing or changed file."""
    print_verification(_run("verify", locals()), out)


def _run(command: str, params: dict, callback: contextlib.AbstractContextManager | None = None):
    """Runs `command` on the options its Typer parameters build; `callback` (a progress display)
    is entered only once the options are known to be good."""
    options_class, run = api.COMMANDS[command]
    options = options_class.from_command_line(params)
    if callback is None:
        return run(options)
    with callback as on_step:
        return run(options, on_step)
