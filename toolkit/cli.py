"""The `toolkit` command line: parses options, calls one library function, prints its result.

Heavy libraries (TensorFlow, ONNX Runtime, LiteRT) are imported inside the commands, so
`toolkit --help` starts in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from toolkit.errors import ExitCode, ToolkitError, first_line
from toolkit.export import DEFAULT_CALIB_SAMPLES, DEFAULT_OPSET
from toolkit.exporters import EXPORTERS
from toolkit.model import ARCHITECTURES

app = typer.Typer(
    help="Train the Fashion-MNIST tutorial model, export it to edge formats, compare them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Logs and CI capture output without a terminal: give tables room rather than rich's 80 columns.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)
_state = {"debug": False}

Arch = Enum("Arch", {name: name for name in ARCHITECTURES}, type=str)
Format = Enum("Format", {name: name for name in ["all", *EXPORTERS]}, type=str)

OutOption = Annotated[
    Path, typer.Option("--out", help="Working folder: model, artifacts, manifest, reports.")
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder with the four Fashion-MNIST IDX files (.gz or not). Default: "
        "$FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist, ~/.keras/datasets/fashion-mnist.",
    ),
]


def _labelled(label: str, message: str, console_: Console = err_console) -> None:
    """A coloured label and a message printed verbatim (paths may contain [brackets])."""
    console_.print(f"{label} {escape(message)}", highlight=False)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def handles_errors(command):
    """Turns ToolkitError into a one-line message and its exit code; no traceback unless --debug."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            return command(*args, **kwargs)
        except ToolkitError as exc:
            if _state["debug"]:
                raise
            _labelled("[bold red]error:[/]", str(exc))
            raise typer.Exit(int(exc.code)) from None
        except KeyboardInterrupt:
            if _state["debug"]:
                raise
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the last resort: never exit 1 (the gate's code)
            if _state["debug"]:
                raise
            reason = f"{type(exc).__name__}: {first_line(exc)}"
            _labelled("[bold red]internal error:[/]", f"{reason} (rerun with --debug for details)")
            raise typer.Exit(int(ExitCode.INTERNAL)) from None

    return wrapper


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    _state["debug"] = debug


class _EpochProgress:
    """One rich progress bar per epoch, fed by the library's on_progress callback."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.epoch: int | None = None
        self.progress = None

    def __call__(self, epoch: int, done: int, total: int, logs: dict[str, float]) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        if epoch != self.epoch:
            self.close()
            self.epoch = epoch
            self.progress = Progress(
                TextColumn(f"epoch {epoch + 1}/{self.epochs}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                console=console,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=total, stats="")
        stats = f"loss {logs['loss']:.4f} acc {logs['accuracy']:.4f}"
        self.progress.update(self.task, completed=done, stats=stats)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@app.command()
@handles_errors
def train(
    out: OutOption = Path("exported"),
    data_dir: DataDirOption = None,
    arch: Annotated[
        Arch, typer.Option(help="mlp: the tutorial model; cnn: a small conv net.")
    ] = "mlp",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (tutorial: 10).")] = 10,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size (tutorial: 32).")] = 32,
    seed: Annotated[
        int, typer.Option(help="Seeds Python, NumPy and TF; same seed, same weights.")
    ] = 0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Train on the first N training images only.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run (same options).")
    ] = False,
) -> None:
    """Train the tutorial model on Fashion-MNIST; writes model.keras, training/ and plots/."""
    from toolkit.artifacts import OutputLock
    from toolkit.model import TrainConfig, run_training

    def warn_if_unverified(dataset) -> None:
        if not dataset.verified:
            _labelled(
                "[yellow]warning:[/]",
                f"{dataset.source}: files differ from the published Fashion-MNIST digests "
                "(another IDX dataset?)",
            )

    config = TrainConfig(
        arch=Arch(arch).value, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit
    )
    with OutputLock(out), _EpochProgress(epochs) as progress:
        result = run_training(out, config, data_dir, resume, warn_if_unverified, progress)
    m = result.metrics
    console.print(
        f"test accuracy {m['test_accuracy']:.4f}  loss {m['test_loss']:.4f}  "
        f"trained in {m['train_seconds']:.1f} s ({m['epochs']} epochs, {m['train_images']} images)"
        f"  -> {out / 'model.keras'}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _artifact_line(artifact) -> str:
    from toolkit.report import human_size

    v = artifact.validation
    if not v:
        figure = "not validated"
    elif "min_agreement" in v["tolerance"]:
        figure = f"agreement {v['agreement']:.4f} (>= {v['tolerance']['min_agreement']})"
    else:
        figure = f"max |diff| {v['max_abs_diff']:.2e} (<= {v['tolerance']['max_abs_diff']:g})"
    size = human_size(artifact.size_bytes)
    return f"  {artifact.name:<26} {artifact.format:<10} {size:>9}  {figure}"


@app.command()
@handles_errors
def export(
    out: OutOption = Path("exported"),
    model: Annotated[
        Path | None, typer.Option(help="Keras model to export (default: OUT/model.keras).")
    ] = None,
    format: Annotated[
        list[Format], typer.Option("--format", help="Format(s) to write; repeatable.")
    ] = ["all"],  # noqa: B006 - Typer reads the default from here
    calib_samples: Annotated[
        int, typer.Option(min=1, help="Training images used to calibrate the int8 variants.")
    ] = DEFAULT_CALIB_SAMPLES,
    opset: Annotated[int, typer.Option(min=13, help="ONNX opset.")] = DEFAULT_OPSET,
    no_validate: Annotated[
        bool, typer.Option("--no-validate", help="Keep artifacts that miss their tolerance.")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Export to Keras, SavedModel, TFLite (x4) and ONNX (x2), validate each, write the manifest."""
    from toolkit import import_tensorflow
    from toolkit.export import export_artifacts

    import_tensorflow()
    console.print(
        f"exporting {model or out / 'model.keras'} into {out}/", markup=False, highlight=False
    )
    manifest = export_artifacts(
        out,
        model,
        [Format(f).value for f in format],
        calib_samples,
        opset,
        validate=not no_validate,
        data_dir=data_dir,
        on_artifact=lambda a: console.print(_artifact_line(a), markup=False, highlight=False),
    )
    console.print(
        f"{len(manifest.artifacts)} artifacts listed in {out / 'manifest.json'}", highlight=False
    )


def _require_folder(out: Path) -> None:
    """Read-only commands must not create the folder (or its lock file) they were pointed at."""
    if not out.is_dir():
        raise ToolkitError(
            f"{out}: no such folder; run `toolkit export --out {out}` first", ExitCode.ARTIFACT
        )


def _checked_manifest(out: Path, no_verify: bool):
    """The manifest, refusing (exit 4) when a listed file changed, unless --no-verify."""
    from toolkit.artifacts import load_manifest, verify_manifest

    manifest = load_manifest(out)
    problems = [] if no_verify else verify_manifest(out, manifest)
    if problems:
        raise ToolkitError(
            f"{problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + "; re-export, or pass --no-verify",
            ExitCode.ARTIFACT,
        )
    return manifest


NoVerifyOption = Annotated[
    bool, typer.Option("--no-verify", help="Skip the manifest checksum check.")
]


@app.command()
@handles_errors
def compare(
    out: OutOption = Path("exported"),
    threads: Annotated[int, typer.Option(min=1, help="Threads for every runtime.")] = 1,
    runs: Annotated[
        int, typer.Option(min=1, max=10_000_000, help="Timed batch-1 calls per artifact.")
    ] = 1000,
    max_seconds: Annotated[
        float, typer.Option(min=0.01, max=3600, help="Stop timing an artifact after this long.")
    ] = 5.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch for the throughput test.")] = 256,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Exit 1 when an artifact is more than PTS points below the reference.",
            metavar="PTS",
        ),
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="An earlier report.json to report changes against.")
    ] = None,
    max_latency_regression: Annotated[
        float | None,
        typer.Option(
            min=0, help="With --baseline: exit 1 when p50 grew more than PCT %.", metavar="PCT"
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(min=1, max=86400, help="Seconds before an artifact's worker is stopped."),
    ] = 300.0,
    no_verify: NoVerifyOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Run every artifact in its runtime: accuracy, agreement, latency, throughput, size, memory."""
    from rich.progress import Progress

    from toolkit.artifacts import OutputLock, recover_staging
    from toolkit.data import load_dataset
    from toolkit.evaluate import (
        MeasureConfig,
        apply_baseline,
        baseline_mismatches,
        compare_artifacts,
        gate_failures,
        load_baseline,
    )
    from toolkit.report import recommend, report_table, write_reports

    if max_latency_regression is not None and baseline is None:
        raise ToolkitError("--max-latency-regression needs --baseline", ExitCode.USAGE)
    earlier = load_baseline(baseline) if baseline is not None else None
    _require_folder(out)
    dataset = load_dataset(data_dir)
    config = MeasureConfig(
        threads=threads,
        runs=runs,
        max_seconds=max_seconds,
        batch_size=batch_size,
        timeout_seconds=timeout,
    )
    with OutputLock(out), Progress(console=console, transient=True) as progress:
        recover_staging(out)
        manifest = _checked_manifest(out, no_verify)
        task = progress.add_task("comparing", total=len(manifest.artifacts))

        def advance(artifact, status):
            progress.update(task, advance=1, description=f"{artifact.name} {status}")

        report, samples = compare_artifacts(
            out, manifest, dataset.test_images, dataset.test_labels, config, advance
        )
        if earlier is not None:
            apply_baseline(report, earlier)
            for difference in baseline_mismatches(report, earlier):
                _labelled(
                    "[yellow]warning:[/]",
                    f"{baseline}: {difference}; latency deltas compare unlike settings",
                )
        reference = next(r for r in report["rows"] if r["artifact"] == report["reference"])
        report["recommended"] = recommend(report["rows"], reference["accuracy"])
        failures = gate_failures(report, max_accuracy_drop, max_latency_regression)
        report["gate"] = {
            "max_accuracy_drop": max_accuracy_drop,
            "max_latency_regression": max_latency_regression,
            "failures": failures,
        }
        write_reports(report, samples, out / "report")
    console.print(report_table(report))
    console.print(
        f"reports in {out / 'report'}/ (report.json, .csv, .md, .html, plots)", highlight=False
    )
    for failure in failures:
        _labelled("[bold red]gate:[/]", failure)
    if failures:
        raise typer.Exit(int(ExitCode.GATE))


@app.command()
@handles_errors
def predict(
    images: Annotated[
        list[Path] | None, typer.Argument(help="28x28 grayscale PNG/JPEG/.npy files.")
    ] = None,
    out: OutOption = Path("exported"),
    artifact: Annotated[
        Path | None, typer.Option(help="Artifact to run (default: OUT/model.keras).")
    ] = None,
    index: Annotated[
        list[int] | None,
        typer.Option(min=0, max=9999, help="Test-set image(s) to classify; repeatable."),
    ] = None,
    top: Annotated[int, typer.Option(min=1, max=10, help="How many classes to show.")] = 3,
    plot: Annotated[
        Path | None, typer.Option(help="Write the tutorial's prediction figure to this PNG.")
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="Runtime threads.")] = 1,
    no_verify: NoVerifyOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Classify images with any artifact and print the top classes with their probabilities."""
    import numpy as np

    from toolkit import quiet_stderr
    from toolkit.artifacts import MANIFEST_NAME, load_manifest
    from toolkit.data import CLASS_NAMES, load_dataset, normalize
    from toolkit.figures import plot_image_predictions
    from toolkit.predict import check_listed_checksum, load_image, runtime_for, top_k
    from toolkit.runners import RUNNERS

    if not images and not index:
        raise ToolkitError("give image files, or --index N for test-set images", ExitCode.USAGE)
    path = artifact or out / "model.keras"
    manifest = load_manifest(path.parent) if (path.parent / MANIFEST_NAME).is_file() else None
    if not no_verify:
        check_listed_checksum(path, manifest)
    names, pixels, labels = [], [], []
    for image_path in images or []:
        array, warning = load_image(image_path)
        if warning:
            _labelled("[yellow]warning:[/]", warning)
        names.append(str(image_path))
        pixels.append(array)
        labels.append(None)
    if index:
        dataset = load_dataset(data_dir)
        for i in index:
            names.append(f"test image {i}")
            pixels.append(dataset.test_images[i])
            labels.append(int(dataset.test_labels[i]))
    batch = np.stack(pixels)
    with quiet_stderr(), RUNNERS[runtime_for(path, manifest)](path, threads) as runner:
        probabilities = runner.predict(normalize(batch))
    for name, label, best in zip(names, labels, top_k(probabilities, top), strict=True):
        truth = f"  (true: {CLASS_NAMES[label]})" if label is not None else ""
        ranked = ", ".join(f"{CLASS_NAMES[c]} {100 * p:.1f}%" for c, p in best)
        console.print(
            f"{name}: {CLASS_NAMES[best[0][0]]}{truth}  ({ranked})", markup=False, highlight=False
        )
    if plot is not None:
        plot_image_predictions(batch, probabilities, labels, CLASS_NAMES, plot)
        console.print(f"figure written to {plot}", markup=False, highlight=False)


@app.command()
@handles_errors
def verify(out: OutOption = Path("exported")) -> None:
    """Recompute every checksum in OUT/manifest.json; exit 4 naming each missing or changed file."""
    from toolkit.artifacts import OutputLock, load_manifest, recover_staging, verify_manifest

    _require_folder(out)
    # A read-only copy (a mounted release, say) can be verified, just not locked or repaired.
    writable = os.access(out, os.W_OK)
    with OutputLock(out) if writable else contextlib.nullcontext():
        if writable:
            recover_staging(out)
        manifest = load_manifest(out)
        problems = verify_manifest(out, manifest)
    for problem in problems:
        _labelled("[bold red]error:[/]", problem)
    if problems:
        raise typer.Exit(int(ExitCode.ARTIFACT))
    console.print(f"{len(manifest.artifacts)} artifacts match {out / 'manifest.json'}")


if __name__ == "__main__":
    app()
