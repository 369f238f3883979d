"""Writes every rendering of a Report into a staging folder that then replaces OUT/report whole,
so a failed or interrupted write leaves the previous report as it was."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolkit.errors import ExitCode, ToolkitError
from toolkit.figures import FigureProcess, save_figure, write_png
from toolkit.fsio import EMBED_MAX_BYTES, plain_relative, read_confined, write_bytes, write_text
from toolkit.reporting import html
from toolkit.reporting.cells import gallery_name
from toolkit.reporting.galleries import flip_gallery_figure, gallery_input
from toolkit.reporting.plots import (
    accuracy_vs_latency_figure,
    latency_distribution_figure,
    per_class_accuracy_figure,
    size_figure,
)
from toolkit.reporting.text import report_csv, report_markdown
from toolkit.results import Report, Row
from toolkit.store import Staging


def write_reports(
    report: Report,
    folder: Path,
    inputs: np.ndarray | None = None,
    figures: FigureProcess | None = None,
    draw: bool = True,
) -> list[Path]:
    """Writes report.json/.csv/.md, the plots, the flip galleries and report.html, all into a
    staging folder beside `folder` that then replaces it whole; returns the final paths
    (report.html last).

    Galleries are drawn from `inputs` (the evaluation set, indexed like `top_flips`); without
    them, those already in `folder/flips/` are kept. A `figures` process takes the next figure
    whenever it is idle while this one draws the others. Without `draw`, no plot or gallery is
    drawn (`compare --no-figures`): the page shows the tables only.
    """
    report = Report.from_json(report.to_json())  # render what report.json says, as re-renders do
    with Staging(folder.parent) as staging:
        staged = staging.dir / folder.name
        paths = _write_files(report, staged, inputs, folder, figures, draw)
        staging.commit([folder.name])
    return [folder / path.relative_to(staged) for path in paths]


def _write_files(
    report: Report, staged: Path, inputs, folder: Path, figures, draw: bool
) -> list[Path]:
    jobs = _figure_jobs(report, inputs) if draw else []
    paths = [
        # allow_nan=False: to_json maps non-finite figures to null, so report.json stays JSON.
        write_text(
            staged / "report.json", json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n"
        ),
        write_text(staged / "report.csv", report_csv(report)),
        write_text(staged / "report.md", report_markdown(report)),
        *_draw_figures(jobs, staged, figures),
    ]
    if inputs is None:  # a re-render without the data keeps the galleries drawn before
        for row in _galleries(report):
            paths += _kept(staged, gallery_name(report, row), [folder])
    paths += _quantization_plots(report, staged, folder)
    # Every file here was drawn now or read through read_confined, so each is bounded.
    images = {p.relative_to(staged).as_posix(): p.read_bytes() for p in paths if p.suffix == ".png"}
    paths.append(write_text(staged / "report.html", html.report_html(report, images)))
    return paths


def _galleries(report: Report) -> list[Row]:
    return [row for row in report.rows if row.ok and row.top_flips]


def _figure_jobs(report: Report, inputs) -> list[tuple[str, Callable, tuple, bool]]:
    """(file name, draw, args, trim) of every report figure, the slowest first so the two
    drawing processes finish together: the galleries, laid out in inches, then the plots."""
    jobs = []
    if inputs is not None:
        for row in _galleries(report):
            shown = [flip["index"] for flip in row.top_flips]
            flipped = {i: gallery_input(inputs[i]) for i in shown}
            jobs.append(
                (gallery_name(report, row), flip_gallery_figure, (report, row, flipped), False)
            )
    return jobs + [
        ("per_class_accuracy.png", per_class_accuracy_figure, (report,), True),
        ("accuracy_vs_latency.png", accuracy_vs_latency_figure, (report,), True),
        ("latency_distribution.png", latency_distribution_figure, (report,), True),
        ("size.png", size_figure, (report.rows,), True),
    ]


def _draw_figures(jobs, staged: Path, figures: FigureProcess | None) -> list[Path]:
    """Draws the jobs in turn, handing the next one to the `figures` process whenever it is
    idle: the two share the work without knowing what each figure costs. Paths in job order."""
    drawn, sent = {}, []
    for name, draw, args, trim in jobs:
        if figures is not None and figures.idle():
            figures.draw(draw, *args, trim=trim)
            sent.append(name)
        else:
            drawn[name] = save_figure(draw(*args), _inside(staged, name), trim)
    for name, png in zip(sent, figures.pngs() if sent else [], strict=True):
        drawn[name] = write_png(png, _inside(staged, name))
    return [drawn[name] for name, *_ in jobs]


def _quantization_plots(report: Report, staged: Path, folder: Path) -> list[Path]:
    """The per-layer int8 error plots export drew (OUT/quantization/), copied beside the report
    so the page and a later re-render need nothing outside report/."""
    paths = []
    for row in report.rows:
        record = row.quantization.get("per_layer")
        if not record:
            continue
        name = f"{str(record).removesuffix('.json')}.png"
        if not any(path == _inside(staged, name) for path in paths):
            paths += _kept(staged, name, [folder.parent, folder])
    return paths


def _inside(staged: Path, name: str) -> Path:
    """staged/`name`, refused (exit 4) unless `name` is plain names: it may come from a file."""
    try:
        return staged.joinpath(*plain_relative(name, "file name").parts)
    except ValueError as exc:
        raise ToolkitError(f"{staged.name}/report.json: {exc}", ExitCode.ARTIFACT) from None


def _kept(staged: Path, name: str, folders: list[Path]) -> list[Path]:
    """staged/`name` copied from the first of `folders` holding `name`, through no link and
    within the page's size bound; [] when none does."""
    for folder in folders:
        data = read_confined(folder, name, ExitCode.ARTIFACT, EMBED_MAX_BYTES)
        if data is not None:
            return [write_bytes(_inside(staged, name), data)]
    return []
