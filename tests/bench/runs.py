"""Whole processes timed by wall clock, and steps repeated A B A B so drift hits all alike."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tests.bench import USER_ENV

ROOT = Path(__file__).resolve().parents[2]
# The console script beside this interpreter: the command exactly as a user types it.
TOOLKIT = str(Path(sys.executable).with_name("toolkit"))
T = TypeVar("T")


class BenchError(Exception):
    """A step could not be measured; the message names it and where its output went."""


@dataclass(frozen=True)
class Run:
    seconds: float
    stdout: str


def run_timed(
    command: list[str], log: Path, env: dict[str, str] = USER_ENV, cwd: Path = ROOT
) -> Run:
    """Wall-clock seconds of the whole process, start-up included; its output is kept in `log`."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {' '.join(command)}\n{done.stdout}\n--- stderr ---\n{done.stderr}")
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BenchError(f"{command[0]} exited {done.returncode} ({tail[0]}); see {log}")
    return Run(seconds, done.stdout)


def interleave(reps: int, steps: dict[str, Callable[[int], T]]) -> dict[str, list[T]]:
    """Runs the steps in turn, `reps` rounds (A B A B ...); returns each step's results."""
    results: dict[str, list[T]] = {name: [] for name in steps}
    for rep in range(reps):
        for name, step in steps.items():
            results[name].append(step(rep))
    return results


def median(values: list[float]) -> float:
    return float(statistics.median(values))
