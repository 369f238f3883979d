"""What every executor implements: run jobs where they must run, hand back Measurements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from toolkit.comparing.data import EvalData
from toolkit.comparing.measurement import Job, Measurement
from toolkit.results import FAILED, OK, UNSUPPORTED

STATUSES = (OK, UNSUPPORTED, FAILED)
# (status, Measurement) when ok, else (status, the one-line reason).
Outcome = tuple[str, Measurement | str]
OnResult = Callable[[int, str, Measurement | str], None]


class Executor(Protocol):
    """Runs each job (an artifact of `out` in a registered runtime) on `data` and returns one
    outcome per job, in order; `on_result(index, status, result)` hears of each as it ends."""

    def run(
        self, jobs: Sequence[Job], out: Path, data: EvalData, on_result: OnResult
    ) -> list[Outcome]: ...
