"""Imported by the fork server that starts toolkit's figure processes: pyplot once, on the Agg
backend, so each figure process forks with it already imported."""

from toolkit.figures import pyplot

pyplot()
