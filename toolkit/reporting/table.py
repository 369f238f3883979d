"""The terminal table: a figure is shown whole or its column is hidden, never cut."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from toolkit.reporting.cells import (
    OUTSIDE,
    STAR,
    Column,
    columns,
    failed_rows,
    mark,
    outside_reason,
    outside_rows,
    reason,
    recommended_label,
    sorted_rows,
    title,
)
from toolkit.results import Report


def _table(report: Report, shown: list[Column], notes: list[str]) -> Table:
    caption = [f"{mark(report, r)} {report.label(r)}: {reason(r)}" for r in failed_rows(report)]
    caption += [f"{OUTSIDE} {report.label(r)}: {outside_reason(r)}" for r in outside_rows(report)]
    if recommended := recommended_label(report):
        caption.insert(0, f"{STAR} recommended: {recommended}")
    caption += notes
    table = Table(
        title=Text(title(report)),
        caption=Text("\n".join(caption)) if caption else None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
    )
    for column in shown:
        table.add_column(column.header, justify="right" if column.numeric else "left", no_wrap=True)
    for row in sorted_rows(report.rows):
        style = "red" if not row.ok else "bold" if report.is_recommended(row) else None
        style = "yellow" if row.ok and row.within_tolerance is False else style
        table.add_row(*(Text(column.cell(row)) for column in shown), style=style)
    return table


def report_table(report: Report, width: int | None = None) -> Table:
    """The terminal table: one row per (artifact, runtime), fastest first, the recommended one
    starred; failed rows last, their reasons in the caption, where a long one can wrap.

    With a `width`, the least important columns are hidden until the table fits (the caption
    names them): a figure is shown whole or not at all.
    """
    shown = columns(report)
    hidden: list[str] = []
    while True:
        notes = [f"hidden at this width: {', '.join(hidden)} (see report.md or report.html)"]
        table = _table(report, shown, notes if hidden else [])
        droppable = [c for c in shown if c.drop_rank]
        if width is None or not droppable or _width(table) <= width:
            return table
        least_important = max(droppable, key=lambda c: c.drop_rank)
        shown.remove(least_important)
        hidden.insert(0, least_important.header)


def _width(table: Table) -> int:
    """The width the table's columns need (the title and caption wrap; they do not count)."""
    console = Console(file=io.StringIO(), width=10_000)
    return console.measure(table).maximum
