"""What the CLI prints, and how errors become one line and an exit code."""

from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from toolkit import interrupts
from toolkit.errors import ExitCode, ToolkitError, ToolkitWarning, first_line
from toolkit.process import skip_final_collection

# Logs and CI capture output without a terminal: give tables room rather than rich's 80 columns.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)
state = {"debug": False}


def labelled(label: str, message: str, console_: Console = err_console) -> None:
    """A coloured label and a message printed verbatim (paths may contain [brackets])."""
    console_.print(f"{label} {escape(message)}", highlight=False)


def plain(message: str) -> None:
    """A line printed verbatim: no markup, no highlighting (paths may contain [brackets])."""
    console.print(message, markup=False, highlight=False)


def warnings_of(messages) -> None:
    """Each warning of a result as one labelled line."""
    for message in messages:
        labelled("[yellow]warning:[/]", message)


def _tolerant_output() -> None:
    """Characters the terminal's encoding lacks (PYTHONIOENCODING=ascii, a file name that is not
    UTF-8) are escaped, not a crash after the work is done; rich draws ASCII tables there."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _show_warning(message, category, *args, **kwargs) -> None:
    """The library's warnings as one line each; other libraries' warnings stay quiet."""
    if issubclass(category, ToolkitWarning):
        labelled("[yellow]warning:[/]", str(message))


def _fail(label: str, message: str, code: ExitCode) -> typer.Exit:
    labelled(label, message)
    return typer.Exit(int(code))


def handles_errors(command):
    """Turns ToolkitError into a one-line message and its exit code; no traceback unless --debug.

    Ctrl-C and SIGTERM only set a flag the pipeline checks between steps, so an interrupt always
    ends in exit 130 with the previous outputs intact; the API calls keep their scratch files
    in a private temp folder removed at the end.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        skip_final_collection()  # the command's process ends with it
        _tolerant_output()
        try:
            with interrupts.deferred(), warnings.catch_warnings():
                warnings.simplefilter("always", ToolkitWarning)
                warnings.showwarning = _show_warning
                result = command(*args, **kwargs)
                interrupts.check()  # a signal during the last step still ends in 130
                return result
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the last resort: never exit 1 (the gate's code)
            if state["debug"]:
                raise
            if isinstance(exc, ToolkitError):
                raise _fail("[bold red]error:[/]", str(exc), exc.code) from None
            reason = f"{type(exc).__name__}: {first_line(exc)} (rerun with --debug for details)"
            raise _fail("[bold red]internal error:[/]", reason, ExitCode.INTERNAL) from None
        except KeyboardInterrupt:
            if state["debug"]:
                raise
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper


class EpochProgress:
    """One rich progress bar per epoch, fed by the library's on_progress callback."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.epoch: int | None = None
        self.progress = None

    def _start(self, epoch: int, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

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

    def __call__(self, epoch: int, done: int, total: int, logs: dict[str, float]) -> None:
        if epoch != self.epoch:
            self._start(epoch, total)
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


class RowProgress:
    """A transient spinner naming each compare row as it is measured."""

    def __enter__(self):
        from rich.progress import Progress

        self.progress = Progress(console=console, transient=True).__enter__()
        self.task = self.progress.add_task("comparing", total=None)
        return self

    def __call__(self, row) -> None:
        label = escape(f"{row.artifact} [{row.runtime}] {row.status}")
        self.progress.update(self.task, advance=1, description=label)

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)


class ArtifactLines:
    """Export's progress: a line naming what is exported where, then a line per artifact."""

    def __init__(self, model: Path | None, out: Path):
        self.model, self.out = model, out

    def __enter__(self):
        plain(f"exporting {self.model or self.out / 'model.keras'} into {self.out}/")
        return lambda artifact: plain(artifact_line(artifact))

    def __exit__(self, *exc):
        return None


def print_training(result, out: Path) -> None:
    """The training summary: accuracy, loss, time, and where the model is."""
    m = result.metrics
    if m["dataset"]["kind"] == "fashion-mnist" and not m["dataset"]["verified"]:
        labelled(
            "[yellow]warning:[/]",
            f"{m['dataset']['source']}: files differ from the published Fashion-MNIST digests "
            "(another IDX dataset?)",
        )
    plain(
        f"test accuracy {m['test_accuracy']:.4f}  loss {m['test_loss']:.4f}  "
        f"trained in {m['train_seconds']:.1f} s ({m['epochs']} epochs, {m['train_images']} images)"
        f"  -> {out / 'model.keras'}"
    )


def artifact_line(artifact) -> str:
    """One exported artifact: name, format, size and the figure it was validated by."""
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


def print_export(manifest, out: Path) -> None:
    """Where the manifest is and what was left out (exit 5 when anything was)."""
    plain(f"{len(manifest.artifacts)} artifacts listed in {out / 'manifest.json'}")
    for entry in manifest.left_out:
        labelled("[bold red]left out:[/]", entry["reason"])
    if manifest.left_out:
        raise typer.Exit(int(ExitCode.CONVERSION))


def print_report(report, out: Path) -> None:
    """Warnings, the table fitted to the terminal, where the files are, and the gate's verdict
    (exit 1 when it failed)."""
    from toolkit.comparing.judging import measured_nothing
    from toolkit.reporting import report_table

    warnings_of(report.warnings)
    console.print(report_table(report, width=console.width))
    plain(f"reports in {out / 'report'}/ (report.json, .csv, .md, .html, plots, flips/)")
    failures = report.gate["failures"]
    for failure in failures:
        labelled("[bold red]gate:[/]", failure)
    if measured_nothing(report):  # before the gate's exit: nothing to judge is worse
        raise ToolkitError(
            f"{out / 'report' / 'report.json'}: no artifact could be measured (each row "
            "failed or is unsupported; the table gives the reasons)",
            ExitCode.ARTIFACT,
        )
    if failures:
        raise typer.Exit(int(ExitCode.GATE))


def print_predictions(result, top: int, plot: Path | None) -> None:
    """The top classes of each input (a summary of the outputs when they are not class scores)."""
    from toolkit.prediction import top_k

    warnings_of(result.warnings)
    if isinstance(result.outputs, dict):
        _print_named_predictions(result, top)
        return
    classes = result.class_names
    if not classes:
        for name, output in zip(result.names, result.outputs, strict=True):
            values = ", ".join(f"{v:.4g}" for v in output.reshape(-1)[:8])
            more = " ..." if output.size > 8 else ""
            plain(f"{name}: output {list(output.shape)} [{values}{more}]")
        return
    for name, label, best in zip(
        result.names, result.labels, top_k(result.outputs, top), strict=True
    ):
        truth = f"  (true: {classes[label]})" if label is not None else ""
        ranked = ", ".join(f"{classes[c]} {100 * p:.1f}%" for c, p in best)
        plain(f"{name}: {classes[best[0][0]]}{truth}  ({ranked})")
    if plot is not None:
        plain(f"figure written to {plot}")


def _print_named_predictions(result, top: int) -> None:
    """A model with several outputs: each input, then each output by name on a line."""
    from toolkit.prediction import top_k

    for i, name in enumerate(result.names):
        plain(f"{name}:")
        for head in result.heads:
            output = result.outputs[head["name"]][i : i + 1]
            classes = head["class_names"] if head["kind"] in ("classifier", "binary") else []
            if classes:
                best = top_k(output, top)[0]
                ranked = ", ".join(f"{classes[c]} {100 * p:.1f}%" for c, p in best)
                plain(f"  {head['name']}: {classes[best[0][0]]}  ({ranked})")
            else:
                values = ", ".join(f"{v:.4g}" for v in output.reshape(-1)[:8])
                more = " ..." if output.size > 8 else ""
                plain(f"  {head['name']}: output {list(output.shape[1:])} [{values}{more}]")


def print_verification(result, out: Path) -> None:
    """Each missing or changed file (exit 4), or how many artifacts matched."""
    for problem in result.problems:
        labelled("[bold red]error:[/]", problem)
    if result.problems:
        raise typer.Exit(int(ExitCode.ARTIFACT))
    plain(f"{len(result.manifest.artifacts)} artifacts match {out / 'manifest.json'}")
