"""The `toolkit` command line: parses options, calls one library function, prints its result.

Heavy libraries (TensorFlow, ONNX Runtime, LiteRT) are imported inside the commands, so
`toolkit --help` starts in a fraction of a second.
"""

from __future__ import annotations

import functools
import signal
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from toolkit.errors import ExitCode, ToolkitError
from toolkit.exporters import EXPORTERS
from toolkit.model import ARCHITECTURES

app = typer.Typer(
    help="Train the Fashion-MNIST tutorial model, export it to edge formats, compare them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
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
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(int(exc.code)) from None
        except KeyboardInterrupt:
            if _state["debug"]:
                raise
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    _state["debug"] = debug


def _keras_progress(epochs: int):
    """A Keras callback that drives one rich progress bar per epoch."""
    import keras
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    class RichEpochProgress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.progress = Progress(
                TextColumn(f"epoch {epoch + 1}/{epochs}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                console=console,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=self.params["steps"], stats="")

        def on_train_batch_end(self, batch, logs=None):
            stats = f"loss {logs['loss']:.4f} acc {logs['accuracy']:.4f}" if logs else ""
            self.progress.update(self.task, completed=batch + 1, stats=stats)

        def on_epoch_end(self, epoch, logs=None):
            self.progress.update(self.task, completed=self.params["steps"])
            self.progress.stop()

    return RichEpochProgress()


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
    from toolkit import import_tensorflow
    from toolkit.artifacts import OutputLock
    from toolkit.data import load_dataset
    from toolkit.model import TrainConfig, save_training_outputs
    from toolkit.model import train as train_model

    import_tensorflow()

    dataset = load_dataset(data_dir)
    if not dataset.verified:
        err_console.print(
            f"[yellow]warning:[/] {dataset.source}: files differ from the published "
            "Fashion-MNIST digests (another IDX dataset?)",
            highlight=False,
        )
    config = TrainConfig(
        arch=Arch(arch).value, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit
    )
    with OutputLock(out):
        result = train_model(
            dataset,
            config,
            out / "training" / "checkpoint",
            resume=resume,
            callbacks=[_keras_progress(epochs)],
        )
        save_training_outputs(out, dataset, result)
    m = result.metrics
    console.print(
        f"test accuracy {m['test_accuracy']:.4f}  loss {m['test_loss']:.4f}  "
        f"trained in {m['train_seconds']:.1f} s ({m['epochs']} epochs, {m['train_images']} images)"
        f"  -> {out / 'model.keras'}",
        highlight=False,
        soft_wrap=True,
    )


def _human_size(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def _artifact_line(artifact) -> str:
    v = artifact.validation
    if not v:
        figure = "not validated"
    elif "min_agreement" in v["tolerance"]:
        figure = f"agreement {v['agreement']:.4f} (>= {v['tolerance']['min_agreement']})"
    else:
        figure = f"max |diff| {v['max_abs_diff']:.2e} (<= {v['tolerance']['max_abs_diff']:g})"
    return f"  {artifact.name:<26} {artifact.format:<10} {_human_size(artifact.size_bytes):>9}  {figure}"


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
    ] = 500,
    opset: Annotated[int, typer.Option(min=13, help="ONNX opset.")] = 17,
    no_validate: Annotated[
        bool, typer.Option("--no-validate", help="Keep artifacts that miss their tolerance.")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Export to Keras, SavedModel, TFLite (x4) and ONNX (x2), validate each, write the manifest."""
    from toolkit import import_tensorflow
    from toolkit.export import export_artifacts

    import_tensorflow()
    console.print(f"exporting {model or out / 'model.keras'} into {out}/", highlight=False)
    manifest = export_artifacts(
        out, model, [Format(f).value for f in format], calib_samples, opset,
        validate=not no_validate, data_dir=data_dir,
        on_artifact=lambda a: console.print(_artifact_line(a), highlight=False),
    )
    console.print(f"{len(manifest.artifacts)} artifacts listed in {out / 'manifest.json'}",
                  highlight=False)


@app.command()
@handles_errors
def verify(out: OutOption = Path("exported")) -> None:
    """Recompute every checksum in OUT/manifest.json; exit 4 naming each missing or changed file."""
    from toolkit.artifacts import OutputLock, load_manifest, recover_staging, verify_manifest

    with OutputLock(out):
        recover_staging(out)
        manifest = load_manifest(out)
        problems = verify_manifest(out, manifest)
    for problem in problems:
        err_console.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(int(ExitCode.ARTIFACT))
    console.print(f"{len(manifest.artifacts)} artifacts match {out / 'manifest.json'}")


if __name__ == "__main__":
    app()
