"""The `toolkit` command line: each command parses its options, builds the options object,
calls the API once and hands the result to `render`.

Heavy libraries (TensorFlow, ONNX Runtime, LiteRT) are imported inside the commands, so
`toolkit --help` starts without them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from toolkit.cli.options import (
    Arch,
    ArchChoice,
    Artifact,
    Baseline,
    Batch,
    BatchMode,
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
    Format,
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
    MixedPrecisionMode,
    Model,
    NoValidate,
    NoVerify,
    Npu,
    Npus,
    Offset,
    Opset,
    Out,
    Plot,
    PredictThreads,
    Resume,
    Runs,
    Runtime,
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
    EpochProgress,
    RowProgress,
    artifact_line,
    handles_errors,
    plain,
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
) -> None:
    """Train the tutorial model on Fashion-MNIST; writes model.keras, training/ and plots/."""
    from toolkit import api

    options = TrainOptions(
        out=out,
        data=data,
        data_dir=data_dir,
        arch=Arch(arch).value,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        limit=limit,
        resume=resume,
    )
    with EpochProgress(epochs) as progress:
        result = api.run_train(options, on_progress=progress)
    print_training(result, out)


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
) -> None:
    """Export to Keras, SavedModel, TFLite (x4), ONNX (x2), TFLite Micro C arrays and Ethos-U,
    validate each, write the manifest."""
    from toolkit import api

    options = ExportOptions(
        out=out,
        model=model,
        formats=[Format(f).value for f in format],
        calib_samples=calib_samples,
        opset=opset,
        validate=not no_validate,
        data=data,
        scale=scale,
        offset=offset,
        mixed_precision=MixedPrecisionMode(mixed_precision).value,
        min_agreement=min_agreement,
        max_accuracy_drop=max_accuracy_drop,
        data_dir=data_dir,
        batch=BatchMode(batch).value,
        c_name=c_name,
        npus=[Npu(n).value for n in npu],
        input_shapes=list(input_shape),
    )
    plain(f"exporting {model or out / 'model.keras'} into {out}/")
    manifest = api.run_export(options, on_artifact=lambda artifact: plain(artifact_line(artifact)))
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
    device: Devices = None,
    ssh_config: SshConfig = CompareOptions.ssh_config,
    cluster: Cluster = CompareOptions.cluster,
) -> None:
    """Run every artifact in its runtime: accuracy, agreement, latency, throughput, size, memory."""
    from toolkit import api

    options = CompareOptions(
        out=out,
        threads=threads,
        runs=runs,
        max_seconds=max_seconds,
        batch_size=batch_size,
        max_accuracy_drop=max_accuracy_drop,
        baseline=baseline,
        max_latency_regression=max_latency_regression,
        fail_outside_tolerance=fail_outside_tolerance,
        timeout=timeout,
        max_memory=max_memory,
        verify=not no_verify,
        runtimes=[Runtime(r).value for r in runtime] if runtime else None,
        data=data,
        limit=limit,
        data_dir=data_dir,
        devices=device or CompareOptions.devices,
        ssh_config=ssh_config,
        cluster=cluster,
    )
    with RowProgress() as progress:
        report = api.run_compare(options, on_row=progress)
    print_report(report, out)


@app.command()
@handles_errors
def report(out: Out = ReportOptions.out, baseline: Baseline = ReportOptions.baseline) -> None:
    """Re-render OUT/report/ from its report.json (and a baseline) without measuring again."""
    from toolkit import api

    print_report(api.run_report(ReportOptions(out=out, baseline=baseline)), out)


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
    from toolkit import api

    options = PredictOptions(
        images=images or [],
        out=out,
        artifact=artifact,
        index=index or [],
        plot=plot,
        threads=threads,
        verify=not no_verify,
        data=data,
        data_dir=data_dir,
    )
    print_predictions(api.run_predict(options), top, plot)


@app.command()
@handles_errors
def verify(out: Out = VerifyOptions.out) -> None:
    """Recompute every checksum in OUT/manifest.json; exit 4 naming each missing or changed file."""
    from toolkit import api

    print_verification(api.run_verify(VerifyOptions(out=out)), out)
