"""report.html: one self-contained page (inline CSS and script, PNGs as data URIs) that requests
nothing, so CI can publish it as it is. Every string from report.json is escaped."""

from __future__ import annotations

import base64
import html
from functools import cache
from importlib import resources
from pathlib import Path

from toolkit.reporting.cells import (
    OUTSIDE,
    STAR,
    Column,
    class_name,
    columns,
    failed_rows,
    gallery_name,
    gate_limits,
    latency_text,
    latency_unit,
    num,
    outside_reason,
    outside_rows,
    reason,
    recommended_label,
    sorted_rows,
    title,
)
from toolkit.reporting.outputs import outputs_section
from toolkit.results import ESTIMATED, Report, Row

PLOTS = {  # file name -> caption, in the order the HTML page shows them
    "accuracy_vs_latency.png": "Accuracy vs p50 latency; the Pareto front is blue and connected",
    "latency_distribution.png": "Latency per call",
    "size.png": "File size",
    "per_class_accuracy.png": "Accuracy per class (%); beyond 20 classes, those that lost most",
}
NPU_FIGURES = (  # Vela's estimate, in the order the page lists it
    "inference_ms",
    "inferences_per_second",
    "clock_hz",
    "cycles_total",
    "macs",
    "sram_bytes",
    "flash_bytes",
    "npu_operators",
    "cpu_operators",
)
# Nothing on the page may reach the network: only inline styles, inline scripts, data: images.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
esc = html.escape


@cache
def _package_text(name: str) -> str:
    """A file shipped beside this module: page.css, and page.js (which sorts the results table
    by the clicked header, blanks last, and opens every collapsed section before printing)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _png(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{esc(alt)}">'


def _gate_cells(report: Report, row: Row) -> set[str]:
    """Headers of the row's cells past a gate: the accuracy drop against the reference, the p50
    growth against the baseline (the same rules as the gate's own check)."""
    max_drop = report.gate.get("max_accuracy_drop")
    max_growth = report.gate.get("max_latency_regression")
    reference = report.reference_row.accuracy
    cells = set()
    if None not in (max_drop, row.accuracy, reference) and 100 * (reference - row.accuracy) > (
        max_drop
    ):
        cells.add("acc %")
    if None not in (max_growth, row.delta_p50_pct) and row.delta_p50_pct > max_growth:
        cells.add("Δp50 %")
    return cells


def _delta_class(column: Column, row: Row) -> str:
    """Green when a change is an improvement, red when it is worse (higher latency is worse)."""
    value = column.value(row)
    if column.header not in ("Δacc pt", "Δp50 %") or not value:
        return ""
    better = value > 0 if column.header == "Δacc pt" else value < 0
    return "better" if better else "worse"


def _cell(report: Report, row: Row, column: Column, regressions: set[str], new: set) -> str:
    classes = ["num"] if column.numeric else []
    classes += [_delta_class(column, row)]
    classes += ["regression"] if column.header in regressions else []
    value = column.value(row) if column.numeric else column.cell(row)
    text = esc(column.cell(row))
    if column.header == "artifact" and row.key in new:
        text += '<span class="badge">new</span>'
    attribute = f' class="{" ".join(c for c in classes if c)}"' if any(classes) else ""
    sort_value = "" if value is None else esc(str(value))
    return f'<td{attribute} data-v="{sort_value}">{text}</td>'


def _results_table(report: Report) -> str:
    shown = columns(report)
    new = {tuple(key) for key in report.baseline_new or []}
    head = "".join(
        f'<th{" class=num" if c.numeric else ""} title="click to sort">{esc(c.header)}</th>'
        for c in shown
    )
    body = []
    for row in sorted_rows(report.rows):
        kind = "failed" if not row.ok else "recommended" if report.is_recommended(row) else ""
        kind = "outside" if row.ok and row.within_tolerance is False else kind
        regressions = _gate_cells(report, row)
        cells = "".join(_cell(report, row, column, regressions, new) for column in shown)
        body.append(f'<tr class="{kind}">{cells}</tr>')
    return (
        '<div class="wide"><table class="sortable" id="results">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _gate_verdict(report: Report) -> list[str]:
    limits = gate_limits(report)
    if failures := report.gate.get("failures") or []:
        items = "".join(f"<li>{esc(f)}</li>" for f in failures)
        return [
            f'<div class="verdict fail"><strong>Gate failed</strong> ({len(failures)} '
            f"{'problem' if len(failures) == 1 else 'problems'}; allowed: "
            f"{esc('; '.join(limits) or 'every row measured')})<ul>{items}</ul></div>"
        ]
    if limits:
        return [
            f'<div class="verdict pass"><strong>Gate passed</strong>: every row is '
            f"{esc(' and '.join(limits))}.</div>"
        ]
    return []


def _verdict(report: Report) -> list[str]:
    """The gate's verdict, what the baseline comparison found and the recommendation."""
    parts = _gate_verdict(report)
    if report.baseline is not None:
        new, gone = len(report.baseline_new or []), len(report.baseline_gone or [])
        parts.append(
            f'<div class="verdict none">Compared with <code>{esc(report.baseline)}</code>: '
            "Δacc in points and Δp50 in % beside each row; "
            f"{new} {'row' if new == 1 else 'rows'} new, {gone} gone.</div>"
        )
    parts += [f'<div class="verdict fail">Warning: {esc(w)}</div>' for w in report.warnings]
    if recommended := recommended_label(report):
        parts.append(
            f"<p>Recommended: <strong>{esc(recommended)}</strong> {STAR} "
            "(lowest p50 latency within 0.5 pt of the reference's accuracy)</p>"
        )
    else:
        parts.append(
            "<p>No artifact is recommended: none is ok and close enough to the reference.</p>"
        )
    return parts


def _gone_rows(report: Report) -> list[str]:
    if not report.baseline_gone:
        return []
    unit, size = latency_unit(row["p50"] for row in report.baseline_gone)
    rows = "".join(
        f"<tr><td>{esc(row['artifact'])}</td><td>{esc(row['runtime'])}</td>"
        f'<td class="num">{num(row["accuracy"], "{:.2f}", 100)}</td>'
        f'<td class="num">{latency_text(row["p50"], size)}</td></tr>'
        for row in report.baseline_gone
    )
    return [
        "<h3>In the baseline, gone now</h3>",
        "<table><thead><tr><th>artifact</th><th>runtime</th>"
        f'<th class="num">acc % then</th><th class="num">p50 {unit} then</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>",
    ]


def _cell_change(cell: dict) -> str:
    """More hits on the diagonal or fewer off it is better; the reverse is worse."""
    more = cell["artifact"] > cell["reference"]
    return "better" if more == (cell["true"] == cell["predicted"]) else "worse"


def _confusion_changes(report: Report, row: Row) -> str:
    if not row.confusion_changes:
        return ""
    lines = "".join(
        f"<tr><td>{esc(class_name(report, cell['true']))}</td>"
        f"<td>{esc(class_name(report, cell['predicted']))}</td>"
        f'<td class="num">{cell["reference"]}</td><td class="num">{cell["artifact"]}</td>'
        f'<td class="num {_cell_change(cell)}">{cell["artifact"] - cell["reference"]:+d}</td></tr>'
        for cell in row.confusion_changes
    )
    return (
        "<p>Confusion cells that changed against the reference (true class → predicted class, "
        "test-set counts):</p><table><thead><tr><th>true class</th><th>predicted</th>"
        '<th class="num">reference</th><th class="num">this artifact</th>'
        f'<th class="num">change</th></tr></thead><tbody>{lines}</tbody></table>'
    )


def _flipped_row(report: Report, row: Row, images: dict[str, bytes]) -> list[str]:
    share = f" ({100 * row.flipped / report.test_images:.2f}%)" if report.test_images else ""
    parts = [
        f"<details><summary>{esc(report.label(row))}: {row.flipped} flipped of "
        f"{report.test_images:,}{share}</summary>"
    ]
    name = gallery_name(report, row)
    if name in images:
        caption = (
            f"The {len(row.top_flips or [])} flips the reference was surest about: "
            "true label, the reference's class and probability, this artifact's."
        )
        parts.append(
            f"<figure>{_png(images[name], caption)}<figcaption>{esc(caption)} "
            f"(<code>{esc(name)}</code>)</figcaption></figure>"
        )
    else:
        parts.append(f"<p>No gallery: <code>{esc(name)}</code> was not found.</p>")
    return parts + [_confusion_changes(report, row), "</details>"]


def _flips_section(report: Report, images: dict[str, bytes]) -> list[str]:
    rows = [row for row in sorted_rows(report.rows) if row.ok and row.flipped]
    parts = ["<h2>What flipped</h2>"]
    if not any(row.ok and row.flipped is not None for row in report.rows):
        return parts + ["<p>The outputs are not class scores: no top-1 class to flip.</p>"]
    if not rows:
        return parts + ["<p>No artifact changed a single top-1 prediction of the reference.</p>"]
    parts.append(
        '<p class="hint">Inputs whose top-1 class differs from the reference\'s, the ones the '
        "reference was surest about first; report.json lists each row's "
        "<code>flipped_indices</code>.</p>"
    )
    for row in rows:
        parts += _flipped_row(report, row, images)
    return parts


def _quantization_section(report: Report, images: dict[str, bytes]) -> list[str]:
    """Per-layer int8 error for every int8 row, and the layers a mixed model keeps in float."""
    parts, shown = [], set()
    for row in report.rows:
        record = row.quantization.get("per_layer")
        name = record and Path(record).with_suffix(".png").as_posix()
        if not name or name in shown or name not in images:
            continue
        shown.add(name)
        kept = row.quantization.get("float_layers")
        summary = f"{row.artifact}: error per layer, in graph order"
        if kept:
            replaced = row.quantization.get("replaces", {}).get("artifact")
            summary += f" (replaces {replaced}; kept in float: {', '.join(kept)})"
        parts.append(
            f"<details open><summary>{esc(summary)}</summary><figure>"
            f"{_png(images[name], summary)}</figure></details>"
        )
    return ["<h2>Per-layer int8 error</h2>", *parts] if parts else []


def _npu_section(report: Report) -> list[str]:
    """Vela's estimate for every compiled NPU file: not measured, so apart from the results."""
    parts = []
    for row in report.rows:
        vela = row.extras.get("vela") if row.status == ESTIMATED else None
        figures = vela.get("estimate") if isinstance(vela, dict) else None
        if not isinstance(figures, dict):
            continue
        shown = [(key, figures.get(key)) for key in NPU_FIGURES]
        shown += [(key, vela.get(key)) for key in ("system_config", "memory_mode", "per_layer")]
        fallback = (
            figures.get("cpu_fallback") if isinstance(figures.get("cpu_fallback"), list) else []
        )
        shown += [
            (f"on the CPU: {entry.get('op')}", entry.get("reason"))
            for entry in fallback
            if isinstance(entry, dict)
        ]
        cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in shown)
        summary = f"{report.label(row)}: Vela {vela.get('vela_version', '?')}'s estimate"
        parts.append(
            f"<details open><summary>{esc(summary)}</summary><table><tbody>{cells}"
            "</tbody></table></details>"
        )
    if not parts:
        return []
    note = "Estimated by Arm's Vela compiler, not measured: no NPU ran these files."
    return ["<h2>NPU estimates</h2>", f'<p class="hint">{esc(note)}</p>', *parts]


def _environment(report: Report) -> list[str]:
    parts = ["<details><summary>Environment</summary><table><tbody>"]
    for key, value in report.environment.items():
        pairs = value.items() if isinstance(value, dict) else [(None, value)]
        parts += [
            f"<tr><th>{esc(key if k is None else f'{key}: {k}')}</th><td>{esc(str(v))}</td></tr>"
            for k, v in pairs
        ]
    settings = ", ".join(f"{k} {v}" for k, v in report.settings.items())
    parts.append(f"<tr><th>settings</th><td>{esc(settings)}</td></tr></tbody></table></details>")
    return parts


def _plots_section(images: dict[str, bytes]) -> list[str]:
    return ["<h2>Plots</h2>"] + [
        f"<details open><summary>{esc(caption)}</summary><figure>"
        f"{_png(images[name], caption)}</figure></details>"
        for name, caption in PLOTS.items()
        if name in images
    ]


def report_html(report: Report, images: dict[str, bytes]) -> str:
    """report.html: one self-contained page (inline CSS and script, PNGs as data URIs, a CSP that
    forbids any request); `images` maps a file name from PLOTS or `gallery_name` to its PNG."""
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Compare report · {esc(report.created)}</title>"
        f"<style>\n{_package_text('page.css')}</style></head>",
        "<body><h1>Compare report</h1>",
        f'<p class="meta">{esc(title(report))}</p>',
        *_verdict(report),
        "<h2>Results</h2>",
        '<p class="hint">Click a column header to sort. Latency columns each use one unit.</p>',
        _results_table(report),
        *outputs_section(report),
        *_gone_rows(report),
    ]
    if failed := failed_rows(report):
        parts.append("<h2>Not measured</h2><ul>")
        parts += [f"<li><code>{esc(report.label(r))}</code>: {esc(reason(r))}</li>" for r in failed]
        parts.append("</ul>")
    if outside := outside_rows(report):
        parts.append(f"<h2>{OUTSIDE} Outside the tolerance validated at export</h2><ul>")
        parts += [
            f"<li><code>{esc(report.label(r))}</code>: {esc(outside_reason(r))}</li>"
            for r in outside
        ]
        parts.append("</ul>")
    parts += _flips_section(report, images)
    parts += _quantization_section(report, images)
    parts += _npu_section(report)
    parts += _plots_section(images)
    parts += _environment(report)
    parts.append(f"<script>\n{_package_text('page.js')}</script></body></html>\n")
    return "\n".join(parts)
