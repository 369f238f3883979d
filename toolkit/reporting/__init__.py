"""A compare result as people read it: the terminal table, report files, plots and flip galleries.

Every rendering reads one `toolkit.results.Report` (report.json is its `to_json()`), so
`toolkit report` re-renders from a stored report.json exactly what compare wrote; only the
galleries need the inputs. Nothing here prints or imports a runtime; matplotlib loads on first
plot. cells: columns and units; table: the terminal; text: Markdown and CSV; html: the page
(page.css, page.js); plots and galleries: the figures; write: all of them, staged.
"""

from toolkit.reporting.cells import human_size, three_digits
from toolkit.reporting.html import PLOTS, report_html
from toolkit.reporting.table import report_table
from toolkit.reporting.text import report_csv, report_markdown
from toolkit.reporting.write import write_reports

__all__ = [
    "PLOTS",
    "human_size",
    "report_csv",
    "report_html",
    "report_markdown",
    "report_table",
    "three_digits",
    "write_reports",
]
