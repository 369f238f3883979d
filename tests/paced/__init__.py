"""A runtime that logs when each of its workers imports, loads and times (to the file named by
PACED_LOG), so a test can check how compare paces its workers against each other."""

import os
import time
from pathlib import Path

import numpy as np

from toolkit.runners.base import Runner

IMPORT_SECONDS = 0.3  # long enough that an import beside another phase would show


def log(phase: str, edge: str) -> None:
    with open(os.environ["PACED_LOG"], "a") as file:
        file.write(f"{os.getpid()} {phase} {edge} {time.monotonic_ns()}\n")


class PacedRunner(Runner):
    runtime = "paced"
    module = "tests.paced.runtime"  # imported in the worker: logs and takes IMPORT_SECONDS
    package = "numpy"
    suffixes = (".paced",)
    input_names, output_names = ["images"], ["probabilities"]

    def __init__(self, path: Path, threads: int = 1):
        log("load", "start")
        super().__init__(path, threads)
        time.sleep(0.05)
        log("load", "end")
        self.timing = False

    def _predict_batch(self, inputs):
        return {"probabilities": np.zeros((len(inputs["images"]), 2), np.float32)}

    def _bind(self, inputs):
        if not self.timing:
            self.timing = True
            log("time", "start")
        return lambda: time.sleep(0.001)

    def bound_outputs(self):
        return {"probabilities": np.zeros((1, 2), np.float32)}

    def extras(self):
        log("time", "end")
        return {}


def paced_worker(connection, job, path, data, handoff=None) -> None:
    """The local executor's worker with the paced runtime registered (a spawned process
    starts with the registry as toolkit ships it)."""
    from toolkit.comparing.executors.local import measuring_worker
    from toolkit.runners import RUNNERS

    RUNNERS[PacedRunner.runtime] = PacedRunner
    measuring_worker(connection, job, path, data, handoff)
