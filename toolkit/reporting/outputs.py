"""The HTML page's figures per output, for a model with several outputs (a detector's boxes and
scores, a multi-task model's heads): one table per output, rows in the results table's order."""

from __future__ import annotations

import html

from toolkit.reporting.cells import num, sorted_rows
from toolkit.results import Report

esc = html.escape
CLASS_FIGURES = (  # (header, key, format, scale) of a classifier output
    ("accuracy %", "accuracy", "{:.2f}", 100),
    ("agreement %", "agreement", "{:.2f}", 100),
    ("flipped", "flipped", "{:d}", 1),
)
VALUE_FIGURES = (
    ("max |diff|", "max_abs_diff", "{:.3g}", 1),
    ("RMSE", "rmse", "{:.3g}", 1),
    ("SNR dB", "snr_db", "{:.1f}", 1),
    ("cosine", "cosine", "{:.6f}", 1),
)


def outputs_section(report: Report) -> list[str]:
    """ "Per output": each output's figures in every measured row; nothing for one output."""
    rows = [row for row in sorted_rows(report.rows) if row.ok and row.outputs]
    if len(report.outputs) < 2 or not rows:
        return []
    parts = [
        "<h2>Per output</h2>",
        '<p class="hint">A row\'s figures in the results table are the worst of these.</p>',
    ]
    for output in report.outputs:
        name, kind = output["name"], output.get("kind", "values")
        figures = (*CLASS_FIGURES, *VALUE_FIGURES) if kind != "values" else VALUE_FIGURES
        header = "".join(f"<th>{esc(h)}</th>" for h, *_ in figures)
        shape = " x ".join(str(d) for d in output.get("shape", []))
        parts.append(
            f"<details open><summary><code>{esc(name)}</code> ({esc(kind)}, {esc(shape)})"
            f"</summary><table><thead><tr><th>artifact</th>{header}</tr></thead><tbody>"
        )
        for row in rows:
            values = row.outputs.get(name, {})
            cells = "".join(
                f"<td>{esc(num(values.get(key), spec, scale))}</td>"
                for _, key, spec, scale in figures
            )
            parts.append(f"<tr><td>{esc(report.label(row))}</td>{cells}</tr>")
        parts.append("</tbody></table></details>")
    return parts
