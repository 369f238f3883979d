"""Part 1: the tutorial script as written against `toolkit train`, both as whole processes.

Speed: medians of whole-process wall times, the two run in turns. Accuracy: Welch's 95%
interval of the difference of mean test accuracies (toolkit seeds 0..N-1, the tutorial unseeded),
because one run's accuracy is a draw from a spread (about 0.8 pt here), not a property.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.bench import USER_ENV
from tests.bench.runs import TOOLKIT, BenchError, interleave, median, run_timed
from tests.bench.stats import parity, welch_interval
from tests.bench.summary import Ratio
from toolkit.data import DEBIAN_DIR, IDX_FILES

TUTORIAL = Path(__file__).with_name("tutorial.py")
# keras/src/datasets/fashion_mnist.py: get_file(<stem>.gz, cache_subdir="datasets/fashion-mnist")
# under $KERAS_HOME; a file already there is used as is (no hash is checked), so no download.
KERAS_CACHE_SUBDIR = Path("datasets", "fashion-mnist")
ACCURACY_LINE = re.compile(r"^Test accuracy:\s*([0-9.]+)", re.MULTILINE)
EPOCHS, BATCH_SIZE = 10, 32
GOAL_SPEEDUP = 4.5
GOAL_OVERHEAD_SECONDS = 1.5  # whole process <= TensorFlow import + training loop + this
PARITY_MARGIN_PTS = 0.3  # accuracy: the 95% interval contains 0 or lies within +-this


@dataclass(frozen=True)
class TrainRun:
    seconds: float
    test_accuracy: float
    parts: dict | None = None  # toolkit only: metrics.json's `seconds`, where the time went


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
    parts = {k: v for k, v in metrics["seconds"].items() if k != "epochs"}
    # Outside the library call: interpreter start, CLI import, output lock and exit.
    parts["outside"] = run.seconds - parts["in_process"]
    parts["overhead"] = run.seconds - parts["tensorflow_import"] - parts["training_loop"]
    return TrainRun(run.seconds, metrics["test_accuracy"], parts)


def compare_training(out: Path, reps: int, logs: Path) -> dict:
    """Tutorial and toolkit in turn; every toolkit run trains into `out`, leaving its model there.

    Rep N trains with --seed N, so the toolkit's accuracies are N draws as the tutorial's are.
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
    result["median_seconds"] = seconds
    result["speedup"] = seconds["tutorial"] / seconds["toolkit"]
    names = runs["toolkit"][0].parts
    result["median_parts"] = {k: median([r.parts[k] for r in runs["toolkit"]]) for k in names}
    # toolkit turns oneDNN off for itself (toolkit/__init__.py); the tutorial gets TF's default.
    result["tutorial_onednn_setting"] = USER_ENV.get("TF_ENABLE_ONEDNN_OPTS")
    result["accuracy"] = accuracy_statistics(runs)
    return result


def accuracy_statistics(runs: dict[str, list[TrainRun]]) -> dict:
    """Mean and standard deviation per side (pts) and Welch's 95% interval of toolkit - tutorial."""
    pts = {name: [100 * r.test_accuracy for r in results] for name, results in runs.items()}
    sides = {
        name: {"draws": len(v), "mean": statistics.fmean(v), "std": statistics.stdev(v)}
        for name, v in pts.items()
    }
    interval = welch_interval(pts["toolkit"], pts["tutorial"])
    return {
        **sides,
        "difference_pts": asdict(interval),
        "margin_pts": PARITY_MARGIN_PTS,
        "parity": parity(interval, PARITY_MARGIN_PTS),
    }


def training_ratios(result: dict) -> list[Ratio]:
    accuracy, parts = result["accuracy"], result["median_parts"]
    interval = accuracy["difference_pts"]
    overhead = parts["overhead"]
    return [
        Ratio(
            "train_speedup",
            result["speedup"],
            f">= {GOAL_SPEEDUP:g}x",
            result["speedup"] >= GOAL_SPEEDUP,
            "tutorial script wall time / `toolkit train` wall time (whole processes, medians)",
            f"{result['median_seconds']['tutorial']:.1f} s / "
            f"{result['median_seconds']['toolkit']:.1f} s, {len(result['toolkit'])} turns each",
        ),
        Ratio(
            "train_overhead_seconds",
            overhead,
            f"<= {GOAL_OVERHEAD_SECONDS:g} s",
            overhead <= GOAL_OVERHEAD_SECONDS,
            "`toolkit train` wall time - TensorFlow import - training loop (medians)",
            f"{result['median_seconds']['toolkit']:.2f} s = {parts['tensorflow_import']:.2f} s "
            f"import + {parts['training_loop']:.2f} s loop + {overhead:.2f} s",
        ),
        Ratio(
            "accuracy_difference_pts",
            interval["difference"],
            f"95% CI contains 0 or within +-{accuracy['margin_pts']:g} pt",
            accuracy["parity"],
            "mean test accuracy, toolkit (seeds 0..N-1) - tutorial (unseeded); Welch",
            f"CI [{interval['low']:+.2f}, {interval['high']:+.2f}] pt; "
            f"{accuracy['toolkit']['mean']:.2f} ± {accuracy['toolkit']['std']:.2f} % vs "
            f"{accuracy['tutorial']['mean']:.2f} ± {accuracy['tutorial']['std']:.2f} % "
            f"(mean ± std, {accuracy['toolkit']['draws']} vs "
            f"{accuracy['tutorial']['draws']} draws)",
        ),
    ]
