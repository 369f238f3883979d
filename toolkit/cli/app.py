"""The `toolkit` command line: parses options, calls one library function, prints its result.

Heavy libraries (TensorFlow, ONNX Runtime, LiteRT) are imported inside the commands, so
`toolkit --help` starts in a fraction of a second.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from toolkit import interrupts
from toolkit.errors import ExitCode, ToolkitError, ToolkitWarning, first_line
from toolkit.exporters import EXPORTERS
from toolkit.exporting import DEFAULT_CALIB_SAMPLES, DEFAULT_OPSET
from toolkit.model import ARCHITECTURES
from toolkit.process import skip_final_collection
from toolkit.runners import RUNNERS

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

MAX_THREADS = 1024  # runtimes take a C int; far more than any CPU this runs on has cores
Arch = Enum("Arch", {name: name for name in ARCHITECTURES}, type=str)
Format = Enum("Format", {name: name for name in ["all", *EXPORTERS]}, type=str)
Runtime = Enum("Runtime", {name: name for name in RUNNERS}, type=str)
MixedPrecisionMode = Enum("MixedPrecisionMode", {"auto": "auto", "off": "off"}, type=str)


def _fits_path_limits(value):
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


OutOption = Annotated[
    Path,
    typer.Option(
        "--out",
        help="Working folder: model, artifacts, manifest, reports.",
        callback=_fits_path_limits,
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        callback=_fits_path_limits,
        help="Folder with the four Fashion-MNIST IDX files (.gz or not). Default: "
        "$FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist, ~/.keras/datasets/fashion-mnist.",
    ),
]


DataOption = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="fashion-mnist (default), an .npz file (x_test, y_test, optional x_train, y_train, "
        "class_names) or a folder of images (DIR/train/<class>/*, DIR/test/<class>/*).",
    ),
]


def _labelled(label: str, message: str, console_: Console = err_console) -> None:
    """A coloured label and a message printed verbatim (paths may contain [brackets])."""
    console_.print(f"{label} {escape(message)}", highlight=False)


def _plain(message: str) -> None:
    """A line printed verbatim: no markup, no highlighting (paths may contain [brackets])."""
    console.print(message, markup=False, highlight=False)


def _tolerant_output() -> None:
    """Characters the terminal's encoding lacks (PYTHONIOENCODING=ascii, a file name that is not
    UTF-8) are escaped, not a crash after the work is done; rich draws ASCII tables there."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _show_warning(message, category, *args, **kwargs) -> None:
    """The library's warnings as one line each; other libraries' warnings stay quiet."""
    if issubclass(category, ToolkitWarning):
        _labelled("[yellow]warning:[/]", str(message))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def handles_errors(command):
    """Turns ToolkitError into a one-line message and its exit code; no traceback unless --debug.

    Ctrl-C and SIGTERM only set a flag the pipeline checks between steps, so an interrupt always
    ends in exit 130 with the previous outputs intact; scratch files go to a private temp folder
    removed at the end.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from toolkit.scratch import private_tempdir

        skip_final_collection()  # the command's process ends with it
        _tolerant_output()
        try:
            with interrupts.deferred(), private_tempdir(), warnings.catch_warnings():
                warnings.simplefilter("always", ToolkitWarning)
                warnings.showwarning = _show_warning
                result = command(*args, **kwargs)
                interrupts.check()  # a signal during the last step still ends in 130
                return result
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
    data: DataOption = None,
    data_dir: DataDirOption = None,
    arch: Annotated[
        Arch, typer.Option(help="mlp: the tutorial model; cnn: a small conv net.")
    ] = "mlp",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (tutorial: 10).")] = 10,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size (tutorial: 32).")] = 32,
    seed: Annotated[
        int,
        typer.Option(
            min=0, max=2**32 - 1, help="Seeds Python, NumPy and TF; same seed, same weights."
        ),
    ] = 0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Train on the first N training images only.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run (same options).")
    ] = False,
) -> None:
    """Train the tutorial model on Fashion-MNIST; writes model.keras, training/ and plots/."""
    import toolkit

    with _EpochProgress(epochs) as progress:
        result = toolkit.train(
            out,
            arch=Arch(arch).value,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            limit=limit,
            resume=resume,
            data=data,
            data_dir=data_dir,
            on_progress=progress,
        )
    m = result.metrics
    if m["dataset"]["kind"] == "fashion-mnist" and not m["dataset"]["verified"]:
        _labelled(
            "[yellow]warning:[/]",
            f"{m['dataset']['source']}: files differ from the published Fashion-MNIST digests "
            "(another IDX dataset?)",
        )
    _plain(
        f"test accuracy {m['test_accuracy']:.4f}  loss {m['test_loss']:.4f}  "
        f"trained in {m['train_seconds']:.1f} s ({m['epochs']} epochs, {m['train_images']} images)"
        f"  -> {out / 'model.keras'}"
    )


def _artifact_line(artifact) -> str:
    from toolkit.reporting import human_size

    v = artifact.validation
    if not v:
        figure = "not validated"
    elif "min_agreement" in v["tolerance"] and "agreement" in v:
        figure = f"agreement {v['agreement']:.4f} (>= {v['tolerance']['min_agreement']})"
    elif "min_snr_db" in v["tolerance"]:
        snr = v.get("snr_db")  # null when the outputs are identical
        shown = "identical" if snr is None else f"{snr:.1f} dB"
        figure = f"SNR {shown} (>= {v['tolerance']['min_snr_db']:g} dB)"
    else:
        figure = f"max |diff| {v['max_abs_diff']:.2e} (<= {v['tolerance']['max_abs_diff']:g})"
    size = human_size(artifact.size_bytes)
    return f"  {artifact.name:<26} {artifact.format:<10} {size:>9}  {figure}"


@app.command()
@handles_errors
def export(
    out: OutOption = Path("exported"),
    model: Annotated[
        Path | None,
        typer.Option(
            help="Keras model to export (default: OUT/model.keras).", callback=_fits_path_limits
        ),
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
    data: DataOption = None,
    scale: Annotated[
        float | None,
        typer.Option(
            help="Model input = x * SCALE + OFFSET (default 1/255 for 8-bit data, else 1)."
        ),
    ] = None,
    offset: Annotated[float, typer.Option(help="See --scale.")] = 0.0,
    mixed_precision: Annotated[
        MixedPrecisionMode,
        typer.Option(
            help="auto: an int8 variant that misses its tolerance keeps its worst layers in float."
        ),
    ] = "auto",
    min_agreement: Annotated[
        float | None,
        typer.Option(
            min=0, max=1, help="int8 variants: top-1 agreement with the reference (0.97)."
        ),
    ] = None,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(
            min=0, help="int8 variants, labelled data: accuracy points below the reference."
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Export to Keras, SavedModel, TFLite (x4) and ONNX (x2), validate each, write the manifest."""
    import toolkit

    _plain(f"exporting {model or out / 'model.keras'} into {out}/")
    manifest = toolkit.export(
        out,
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
        on_artifact=lambda artifact: _plain(_artifact_line(artifact)),
    )
    _plain(f"{len(manifest.artifacts)} artifacts listed in {out / 'manifest.json'}")
    for entry in manifest.left_out:
        _labelled("[bold red]left out:[/]", entry["reason"])
    if manifest.left_out:
        raise typer.Exit(int(ExitCode.CONVERSION))


BaselineOption = Annotated[
    Path | None,
    typer.Option(
        help="An earlier report.json to report changes against.", callback=_fits_path_limits
    ),
]
NoVerifyOption = Annotated[
    bool, typer.Option("--no-verify", help="Skip the manifest checksum check.")
]


@app.command()
@handles_errors
def compare(
    out: OutOption = Path("exported"),
    threads: Annotated[
        int, typer.Option(min=1, max=MAX_THREADS, help="Threads for every runtime.")
    ] = 1,
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
    baseline: BaselineOption = None,
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
    max_memory: Annotated[
        int | None,
        typer.Option(
            min=64,
            metavar="MB",
            help="Stop an artifact's worker that uses more memory (default: half the RAM).",
        ),
    ] = None,
    no_verify: NoVerifyOption = False,
    runtime: Annotated[
        list[Runtime] | None,
        typer.Option(help="Measure only in this runtime; repeatable (default: every one)."),
    ] = None,
    data: DataOption = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Evaluate on the first N items only.")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run every artifact in its runtime: accuracy, agreement, latency, throughput, size, memory."""
    from rich.progress import Progress

    import toolkit

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("comparing", total=None)

        def advance(row):
            label = escape(f"{row.artifact} [{row.runtime}] {row.status}")
            progress.update(task, advance=1, description=label)

        report = toolkit.compare(
            out,
            threads=threads,
            runs=runs,
            max_seconds=max_seconds,
            batch_size=batch_size,
            max_accuracy_drop=max_accuracy_drop,
            baseline=baseline,
            max_latency_regression=max_latency_regression,
            timeout=timeout,
            max_memory=max_memory,
            verify=not no_verify,
            runtimes=[Runtime(r).value for r in runtime] if runtime else None,
            data=data,
            limit=limit,
            data_dir=data_dir,
            on_row=advance,
        )
    _print_report(report, out)


def _print_report(report, out: Path) -> None:
    """Warnings, the table fitted to the terminal, where the files are, and the gate's verdict
    (exit 1 when it failed)."""
    from toolkit.reporting import report_table

    for warning in report.warnings:
        _labelled("[yellow]warning:[/]", warning)
    console.print(report_table(report, width=console.width))
    _plain(f"reports in {out / 'report'}/ (report.json, .csv, .md, .html, plots, flips/)")
    failures = report.gate["failures"]
    for failure in failures:
        _labelled("[bold red]gate:[/]", failure)
    if failures:
        raise typer.Exit(int(ExitCode.GATE))


@app.command()
@handles_errors
def report(
    out: OutOption = Path("exported"),
    baseline: BaselineOption = None,
) -> None:
    """Re-render OUT/report/ from its report.json (and a baseline) without measuring again."""
    import toolkit

    _print_report(toolkit.report(out, baseline=baseline), out)


@app.command()
@handles_errors
def predict(
    images: Annotated[
        list[Path] | None,
        typer.Argument(
            help="PNG/JPEG/BMP/GIF or .npy files (resized to the model's input).",
            callback=_fits_path_limits,
        ),
    ] = None,
    out: OutOption = Path("exported"),
    artifact: Annotated[
        Path | None,
        typer.Option(
            help="Artifact to run (default: OUT/model.keras).", callback=_fits_path_limits
        ),
    ] = None,
    index: Annotated[
        list[int] | None,
        typer.Option(min=0, help="Evaluation-data item(s) to run; repeatable."),
    ] = None,
    top: Annotated[int, typer.Option(min=1, max=1000, help="How many classes to show.")] = 3,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Write the tutorial's prediction figure to this PNG.", callback=_fits_path_limits
        ),
    ] = None,
    threads: Annotated[int, typer.Option(min=1, max=MAX_THREADS, help="Runtime threads.")] = 1,
    no_verify: NoVerifyOption = False,
    data: DataOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run any artifact on inputs: the top classes of a classifier, a summary of other outputs."""
    import toolkit
    from toolkit.prediction import top_k

    result = toolkit.predict(
        images or [],
        out=out,
        artifact=artifact,
        index=index or [],
        plot=plot,
        threads=threads,
        verify=not no_verify,
        data=data,
        data_dir=data_dir,
    )
    for warning in result.warnings:
        _labelled("[yellow]warning:[/]", warning)
    classes = result.class_names
    if not classes:
        for name, output in zip(result.names, result.outputs, strict=True):
            values = ", ".join(f"{v:.4g}" for v in output.reshape(-1)[:8])
            more = " ..." if output.size > 8 else ""
            _plain(f"{name}: output {list(output.shape)} [{values}{more}]")
        return
    for name, label, best in zip(
        result.names, result.labels, top_k(result.outputs, top), strict=True
    ):
        truth = f"  (true: {classes[label]})" if label is not None else ""
        ranked = ", ".join(f"{classes[c]} {100 * p:.1f}%" for c, p in best)
        _plain(f"{name}: {classes[best[0][0]]}{truth}  ({ranked})")
    if plot is not None:
        _plain(f"figure written to {plot}")


@app.command()
@handles_errors
def verify(out: OutOption = Path("exported")) -> None:
    """Recompute every checksum in OUT/manifest.json; exit 4 naming each missing or changed file."""
    import toolkit

    result = toolkit.verify(out)
    for problem in result.problems:
        _labelled("[bold red]error:[/]", problem)
    if result.problems:
        raise typer.Exit(int(ExitCode.ARTIFACT))
    _plain(f"{len(result.manifest.artifacts)} artifacts match {out / 'manifest.json'}")


if __name__ == "__main__":
    app()
