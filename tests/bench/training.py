"""Part 1: the tutorial script as written against `toolkit train`, both as whole processes."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.bench import USER_ENV
from tests.bench.runs import TOOLKIT, BenchError, interleave, median, run_timed
from tests.bench.summary import Ratio
from toolkit.data import DEBIAN_DIR, IDX_FILES

TUTORIAL = Path(__file__).with_name("tutorial.py")
# keras/src/datasets/fashion_mnist.py: get_file(<stem>.gz, cache_subdir="datasets/fashion-mnist")
# under $KERAS_HOME; a file already there is used as is (no hash is checked), so no download.
KERAS_CACHE_SUBDIR = Path("datasets", "fashion-mnist")
ACCURACY_LINE = re.compile(r"^Test accuracy:\s*([0-9.]+)", re.MULTILINE)
EPOCHS, BATCH_SIZE = 10, 32
GOAL_SPEEDUP, GOAL_ACCURACY_PTS = 3.0, 0.5


@dataclass(frozen=True)
class TrainRun:
    seconds: float
    test_accuracy: float


def fill_keras_cache(keras_home: Path) -> Path:
    """A private $KERAS_HOME with the four .gz files where load_data looks; ~/.keras untouched."""
    folder = keras_home / KERAS_CACHE_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    for idx in IDX_FILES:
        shutil.copy(DEBIAN_DIR / f"{idx.stem}.gz", folder)
    return keras_home


def run_tutorial(scratch: Path, log: Path) -> TrainRun:
    """The tutorial from a scratch folder, so nothing of this repository is on its sys.path."""
    env = {**USER_ENV, "KERAS_HOME": str(fill_keras_cache(scratch / "keras"))}
    script = shutil.copy(TUTORIAL, scratch / TUTORIAL.name)
    run = run_timed([sys.executable, str(script)], log, env=env, cwd=scratch)
    found = ACCURACY_LINE.search(run.stdout)
    if not found:
        raise BenchError(f"the tutorial printed no 'Test accuracy:' line; see {log}")
    return TrainRun(run.seconds, float(found.group(1)))


def run_toolkit_train(out: Path, log: Path, seed: int) -> TrainRun:
    command = [TOOLKIT, "train", "--out", str(out), "--epochs", str(EPOCHS), "--seed", str(seed)]
    run = run_timed([*command, "--batch-size", str(BATCH_SIZE)], log)
    metrics = json.loads((out / "training" / "metrics.json").read_text())
    return TrainRun(run.seconds, metrics["test_accuracy"])


def compare_training(out: Path, reps: int, logs: Path) -> dict:
    """Tutorial and toolkit in turn; every toolkit run trains into `out`, leaving its model there.

    Rep N trains with --seed N: one seed always gives the same accuracy, so comparing it with the
    unseeded tutorial's median would set one draw against a spread (seeds 0-5 gave 86.4-89.0%).
    """
    with tempfile.TemporaryDirectory(prefix="bench-tutorial-") as scratch:
        runs = interleave(
            reps,
            {
                "tutorial": lambda rep: run_tutorial(Path(scratch), logs / f"tutorial-{rep}.log"),
                "toolkit": lambda rep: run_toolkit_train(out, logs / f"train-{rep}.log", seed=rep),
            },
        )
    result = {name: [asdict(run) for run in results] for name, results in runs.items()}
    seconds = {name: median([r.seconds for r in results]) for name, results in runs.items()}
    accuracy = {name: median([r.test_accuracy for r in results]) for name, results in runs.items()}
    result["median_seconds"], result["median_accuracy"] = seconds, accuracy
    result["speedup"] = seconds["tutorial"] / seconds["toolkit"]
    # toolkit turns oneDNN off for itself (toolkit/__init__.py); the tutorial gets TF's default.
    result["tutorial_onednn_setting"] = USER_ENV.get("TF_ENABLE_ONEDNN_OPTS")
    result["accuracy_delta_pts"] = 100 * (accuracy["toolkit"] - accuracy["tutorial"])
    return result


def training_ratios(result: dict) -> list[Ratio]:
    delta = result["accuracy_delta_pts"]
    return [
        Ratio(
            "train_speedup",
            result["speedup"],
            f">= {GOAL_SPEEDUP:g}x, accuracy within {GOAL_ACCURACY_PTS:g} pt",
            result["speedup"] >= GOAL_SPEEDUP and abs(delta) <= GOAL_ACCURACY_PTS,
            "tutorial script wall time / `toolkit train` wall time (whole processes, medians)",
            f"accuracy {100 * result['median_accuracy']['toolkit']:.2f}% vs "
            f"{100 * result['median_accuracy']['tutorial']:.2f}% ({delta:+.2f} pt)",
        )
    ]
