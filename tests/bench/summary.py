"""The headline ratios: one record type shared by every part, and the rich table that shows them."""

from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.markup import escape
from rich.table import Table


@dataclass(frozen=True)
class Ratio:
    """One headline figure: what it divides, the issue's goal for it (if any) and the verdict."""

    name: str
    value: float
    goal: str
    passed: bool | None  # None: the issue sets no goal, the figure is reported as measured
    meaning: str
    detail: str = ""


def verdict(ratio: Ratio) -> str:
    return {True: "pass", False: "FAIL", None: "–"}[ratio.passed]


def format_value(ratio: Ratio) -> str:
    if ratio.name.endswith("_seconds"):
        return f"{ratio.value:.2f} s"
    if ratio.name.endswith("_pts"):
        return f"{ratio.value:+.2f} pt"
    return f"{ratio.value:#.3g}x"  # '#' keeps trailing zeros: 1.00x, not 1x


def ratio_table(ratios: list[Ratio], title: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for header, justify in (("ratio", "left"), ("measured", "right"), ("goal", "left")):
        table.add_column(header, justify=justify)
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    styles = {True: "green", False: "bold red", None: "dim"}
    for ratio in ratios:
        table.add_row(
            escape(ratio.name),
            format_value(ratio),
            escape(ratio.goal),
            f"[{styles[ratio.passed]}]{verdict(ratio)}[/]",
            escape(ratio.detail),
        )
    return table
