"""Training's outputs: the model file, its history and metrics, the tutorial's figures.

The figures are drawn in processes of their own while this one trains and saves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolkit.data import Dataset, load_data
from toolkit.fsio import (
    atomic_path,
    check_replaceable,
    io_errors,
    sha256_file,
    write_json,
    write_text,
)
from toolkit.model.config import TrainConfig, TrainResult
from toolkit.model.training import since, timed, train

TRAINING_FIGURES = (
    "sample_image.png",
    "class_grid.png",
    "training_curves.png",
    "predictions.png",
    "confusion_matrix.png",
)


class FigureWorkers:
    """Two processes that draw the training figures while this one trains and saves, forked
    from the figure server once the dataset is read.

    Drawing takes longer than training's saving and nothing here needs it on the critical path.
    The slowest figure, predictions.png, has a process of its own that renders everything but
    the model's answers ahead, then the training curves; the other process draws the rest in
    turn. Figures come back as PNG bytes and are written only once training has succeeded, so
    an interrupted or failed run leaves the previous plots/ as they were.
    """

    def __init__(self):
        from toolkit.figures import FigureProcess

        self.figures = FigureProcess()  # its server imports pyplot while the dataset is read
        self.predictions = None
        self.drawn: list[str] = []  # what the figures process was asked for, in order

    def draw(self, name: str, draw: Callable, *args) -> None:
        self.figures.draw(draw, *args)
        self.drawn.append(name)

    def draw_dataset_figures(self, dataset: Dataset) -> None:
        """The figures that need only the dataset, sent as soon as it is read."""
        from toolkit.figures import (
            PREDICTIONS_SHOWN,
            class_grid_figure,
            predictions_worker,
            sample_image_figure,
            start_worker,
        )

        shown = slice(PREDICTIONS_SHOWN)
        test = dataset.test_images[shown], dataset.test_labels[shown], dataset.label_names
        self.predictions = start_worker(predictions_worker)
        self.predictions.send(test)
        self.draw("sample_image.png", sample_image_figure, dataset.train_images[0])
        self.draw(
            "class_grid.png",
            class_grid_figure,
            dataset.train_images[:25],
            dataset.train_labels[:25],
            dataset.label_names,
        )

    def draw_result_figures(self, dataset: Dataset, result: TrainResult) -> None:
        """The trained model's figures: its answers to the predictions worker, which then draws
        the training curves (its answers are quick to draw), and the confusion matrix."""
        from toolkit.figures import (
            PREDICTIONS_SHOWN,
            confusion_matrix_figure,
            send_job,
            training_curves_figure,
        )

        self.predictions.send(result.test_probabilities[:PREDICTIONS_SHOWN])
        send_job(self.predictions, training_curves_figure, result.history)
        predicted = np.argmax(result.test_probabilities, axis=1)
        self.draw(
            "confusion_matrix.png",
            confusion_matrix_figure,
            dataset.test_labels,
            predicted,
            dataset.label_names,
        )

    def write(self, folder: Path) -> list[Path]:
        """Waits for every figure and writes it into `folder`, in TRAINING_FIGURES' order."""
        from toolkit.figures import write_png

        pngs = dict(zip(self.drawn, self.figures.pngs(), strict=True))
        try:
            pngs["predictions.png"] = self.predictions.recv()
            pngs["training_curves.png"] = self.predictions.recv()
        except (EOFError, ConnectionError):
            raise RuntimeError("a figure worker process ended before its figures") from None
        return [write_png(pngs[name], folder / name) for name in TRAINING_FIGURES]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.figures.close()
        if self.predictions is not None:
            self.predictions.close()


class NoFigures:
    """FigureWorkers' stand-in for a run without figures (`train --no-figures`): nothing is
    drawn, and the figures of an earlier run are removed rather than left beside a new model."""

    def draw_dataset_figures(self, dataset: Dataset) -> None:
        pass

    def draw_result_figures(self, dataset: Dataset, result: TrainResult) -> None:
        pass

    def write(self, folder: Path) -> list[Path]:
        for name in TRAINING_FIGURES:
            path = folder / name
            check_replaceable(path)  # a folder or a FIFO there is refused, as a write would be
            with io_errors(path):
                path.unlink(missing_ok=True)  # a link itself, never what it points to
        return []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def training_figures(figures: bool) -> FigureWorkers | NoFigures:
    """The figure workers of a run, or their stand-in when it draws none."""
    return FigureWorkers() if figures else NoFigures()


def save_training_outputs(
    out: Path, dataset: Dataset, result: TrainResult, figures: bool = True
) -> list[Path]:
    """model.keras, training/{history.json,history.csv,metrics.json} and, with `figures`, the
    figures in plots/."""
    started = time.perf_counter()
    with training_figures(figures) as drawing:
        drawing.draw_dataset_figures(dataset)
        return _save_outputs(out, dataset, result, drawing, started)


def _save_outputs(
    out: Path,
    dataset: Dataset,
    result: TrainResult,
    figures: FigureWorkers | NoFigures,
    started: float,
) -> list[Path]:
    """Saves while the workers draw the result figures; metrics.json last, with the timings
    (`in_process`: seconds since `started`)."""
    figures.draw_result_figures(dataset, result)
    seconds = result.metrics["seconds"]
    model_path = out / "model.keras"
    with timed(seconds, "saving"):
        with atomic_path(model_path) as tmp:
            result.model.save(tmp)
            # Lets export tell whether this training produced the model it is exporting.
            result.metrics["model_sha256"] = sha256_file(tmp)
        history = result.history
        rows = ["epoch," + ",".join(history)]
        rows += [
            f"{i + 1}," + ",".join(f"{history[k][i]:.6f}" for k in history)
            for i in range(len(history["loss"]))
        ]
        saved = [
            model_path,
            write_json(out / "training" / "history.json", history),
            write_text(out / "training" / "history.csv", "\n".join(rows) + "\n"),
        ]
    with timed(seconds, "figures_wait"):
        saved += figures.write(out / "plots")
    seconds["in_process"] = since(started)
    return [*saved, write_json(out / "training" / "metrics.json", result.metrics)]


def run_training(
    out: Path,
    config: TrainConfig,
    data_dir: Path | None = None,
    resume: bool = False,
    on_dataset: Callable[[Dataset], None] = lambda dataset: None,
    on_progress: Callable[[int, int, int, dict[str, float]], None] | None = None,
    data: str | Path | None = None,
    figures: bool = True,
) -> TrainResult:
    """`toolkit train`: every output in `out`, with only the dataset's reading, TensorFlow's
    import, training and saving on the critical path.

    The dataset is read before TensorFlow's import, not beside it: a reading thread slowed the
    import (GIL hand-offs and page faults in one process) by more than the reading takes. Two
    worker processes draw the figures; those that need only the dataset while TensorFlow imports
    on the other core, not while the model trains on both. `on_dataset` sees the dataset before
    training starts (e.g. to warn that it is not verified). Without `figures`, none is drawn.
    """
    from toolkit.process import import_tensorflow

    start = time.perf_counter()
    seconds = {}
    with training_figures(figures) as drawing:
        with timed(seconds, "dataset_wait"):
            dataset = load_data(data, data_dir)
        drawing.draw_dataset_figures(dataset)
        with timed(seconds, "tensorflow_import"):
            import_tensorflow()
        on_dataset(dataset)
        result = train(dataset, config, out / "training" / "checkpoint", resume, on_progress)
        result.metrics["seconds"] = {**seconds, **result.metrics["seconds"]}
        _save_outputs(out, dataset, result, drawing, start)
    return result
