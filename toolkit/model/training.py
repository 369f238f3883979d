"""The tutorial model (and a small CNN), trained fast, reproducibly and resumably."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from toolkit import interrupts
from toolkit.data import IMAGE_SIDE, NUM_CLASSES, Dataset, load_data
from toolkit.errors import ExitCode, ToolkitError
from toolkit.formats.keras import INPUT_NAME, OUTPUT_NAME, set_tf_threads
from toolkit.process import recorded_versions

# An epoch is one XLA-compiled program that gathers its own batches. Measured on 2 cores for
# the tutorial's 10 epochs: Keras's fit (64 steps per call) 22 s, fit with XLA 15 s, this 3.8 s.
# Smaller programs (256 steps per call, for a livelier progress bar) cost 7.4 s.


TUTORIAL_SHAPE = (IMAGE_SIDE, IMAGE_SIDE)
CNN_MIN_SIDE = 10  # 10 -> conv 8 -> pool 4 -> conv 2 -> pool 1


def build_mlp(input_shape: tuple = TUTORIAL_SHAPE, classes: int = NUM_CLASSES):
    """The tutorial model: Flatten -> Dense(128, relu) -> Dense(classes, softmax)."""
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=input_shape, name=INPUT_NAME),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(classes, activation="softmax", name=OUTPUT_NAME),
        ],
        name="mlp",
    )


def build_cnn(input_shape: tuple = TUTORIAL_SHAPE, classes: int = NUM_CLASSES):
    """An edge-sized conv net (about 57k parameters on 28x28) so export and compare see
    convolutions; (H, W) inputs get a channel axis."""
    import keras

    if len(input_shape) not in (2, 3):
        raise ToolkitError(
            f"--arch cnn needs image-like items (H, W) or (H, W, C), found {input_shape}; "
            "use --arch mlp",
            ExitCode.USAGE,
        )
    if min(input_shape[:2]) < CNN_MIN_SIDE:
        raise ToolkitError(
            f"--arch cnn needs items of at least {CNN_MIN_SIDE}x{CNN_MIN_SIDE} (two 3x3 "
            f"convolutions and poolings), found {input_shape}; use --arch mlp",
            ExitCode.USAGE,
        )
    image_shape = input_shape if len(input_shape) == 3 else (*input_shape, 1)
    return keras.Sequential(
        [
            keras.Input(shape=input_shape, name=INPUT_NAME),
            keras.layers.Reshape(image_shape),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(classes, activation="softmax", name=OUTPUT_NAME),
        ],
        name="cnn",
    )


ARCHITECTURES = {"mlp": build_mlp, "cnn": build_cnn}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights."""

    arch: str = "mlp"
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    limit: int | None = None


@dataclass
class TrainResult:
    """What a training run produced, for the CLI summary and training/metrics.json."""

    model: object
    history: dict[str, list[float]]
    test_probabilities: np.ndarray
    metrics: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and TF and turns on op determinism: one seed, bit-identical weights."""
    import keras
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


TRAIN_THREADS = 2  # TensorFlow's intra-op threads while training, whatever the core count


def compile_model(model) -> None:
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def xla_trainable(model) -> bool:
    """XLA has no deterministic max-pooling gradient (TF 2.21 refuses it under op determinism):
    a model with max pooling runs the same epoch loop as a plain graph instead."""
    return not any("MaxPool" in type(layer).__name__ for layer in model.layers)


def compiled_training_steps(model):
    """Keras's own train_step (same loss, optimizer and metrics) looped inside one XLA program.

    The batches are gathered inside the program from the whole training set, so an epoch
    never round-trips to Python per batch nor copies a shuffled training set. The set stays in
    its stored dtype (uint8 pixels: a quarter of float32's bytes) and each batch is preprocessed
    as it is gathered, x / divisor + offset, as Preprocessing.apply computes it.
    """
    import tensorflow as tf

    @tf.function(jit_compile=xla_trainable(model))
    def run_steps(items, labels, batch_indices, divisor, offset):
        for step in tf.range(tf.shape(batch_indices)[0]):
            index = batch_indices[step]
            # `divisor` is an argument, not a constant: XLA rewrites a division by a constant
            # into a multiplication by its reciprocal, which is not bit-identical to
            # Preprocessing.apply's division.
            inputs = tf.cast(tf.gather(items, index), tf.float32) / divisor + offset
            model.train_step((inputs, tf.gather(labels, index)))

    return run_steps


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The shuffle of one epoch, a pure function of (seed, epoch) so a resumed run sees the same."""
    return np.random.default_rng([seed, epoch]).permutation(size)


def epoch_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Index arrays: the full batches as one (steps, batch) array, then the partial last batch
    (trained on, as Keras's fit does) as one more of its own shape."""
    full = len(order) // batch_size * batch_size
    batches = [order[:full].reshape(-1, batch_size)] if full else []
    if full < len(order):
        batches.append(order[full:][None])
    return batches


class _Checkpoint:
    """Weights, optimizer state and history after each finished epoch, for `train --resume`.

    Each epoch's weights get their own file and state.json names the current one: replacing
    state.json is the commit point, so an interrupt during a save never mixes two epochs.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.meta = folder / "state.json"

    def load(self, model, config: TrainConfig) -> tuple[int, dict[str, list[float]]]:
        if not self.meta.exists():
            raise ToolkitError(
                f"{self.folder}: nothing to resume (no interrupted training here)", ExitCode.USAGE
            )
        from toolkit.artifacts import read_json

        corrupt = f"{self.meta}: corrupt checkpoint; train again without --resume"
        what = "checkpoint state (corrupt checkpoint; train again without --resume)"
        meta = read_json(self.meta, ExitCode.USAGE, what)
        if not self._valid(meta) or not (self.folder / meta["weights"]).is_file():
            raise ToolkitError(corrupt, ExitCode.USAGE)
        weights = self.folder / meta["weights"]
        if meta.get("config") != asdict(config):
            raise ToolkitError(
                f"{self.meta}: the interrupted run used other options {meta.get('config')}; "
                "resume with the same options",
                ExitCode.USAGE,
            )
        model.optimizer.build(model.trainable_variables)
        model.load_weights(weights)
        return meta["epochs_done"], meta["history"]

    @staticmethod
    def _valid(meta: object) -> bool:
        """state.json as `_Checkpoint.save` writes it: a plain weights file name, a count of epochs
        and one list of numbers per metric, as long as that count."""
        from toolkit.artifacts import PLAIN_NAME
        from toolkit.schema import matches

        return (
            isinstance(meta, dict)
            and matches(meta.get("weights"), str)
            and PLAIN_NAME.fullmatch(meta["weights"]) is not None
            and matches(meta.get("epochs_done"), int)
            and meta["epochs_done"] >= 1
            and matches(meta.get("history"), dict[str, list[float]])
            and all(len(values) == meta["epochs_done"] for values in meta["history"].values())
        )

    def save(self, model, config: TrainConfig, epochs_done: int, history) -> None:
        from toolkit.artifacts import io_errors, write_json

        weights = f"epoch-{epochs_done}.weights.h5"
        try:
            with io_errors(self.folder / weights):
                self.folder.mkdir(parents=True, exist_ok=True)
                model.save_weights(self.folder / weights)
        except BaseException:
            (self.folder / weights).unlink(missing_ok=True)
            raise
        meta = {
            "config": asdict(config),
            "epochs_done": epochs_done,
            "history": history,
            "weights": weights,
        }
        write_json(self.meta, meta)
        for old in self.folder.glob("epoch-*.weights.h5"):
            if old.name != weights:
                old.unlink()

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def train(
    dataset: Dataset,
    config: TrainConfig,
    checkpoint_dir: Path,
    resume: bool = False,
    on_progress: Callable[[int, int, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Trains with the tutorial's hyper-parameters; on Ctrl-C keeps the last epoch for --resume."""

    import tensorflow as tf

    check_trainable(dataset)
    seconds: dict = {}
    setup_start = time.perf_counter()
    # A fixed thread count, so the weights do not depend on the machine's core count. Two: in
    # the XLA-compiled epoch a second thread pays (0.27-0.35 s an epoch against 0.39-0.40 s
    # with one, on 2 shared cores; without XLA one thread had been faster).
    set_tf_threads(TRAIN_THREADS)
    seed_everything(config.seed)
    images = dataset.train_images[: config.limit] if config.limit else dataset.train_images
    labels = dataset.train_labels[: len(images)]
    # Items stay in their stored dtype (uint8 pixels: a quarter of float32's bytes); each batch
    # is preprocessed inside the compiled epoch exactly as Preprocessing.apply does it.
    x, y = tf.constant(images), tf.constant(labels.astype(np.int32))
    preprocess = dataset.preprocess
    divisor = tf.constant(np.float32(1 / preprocess.scale))
    offset = tf.constant(np.float32(preprocess.offset))
    classes = len(dataset.label_names)
    model = ARCHITECTURES[config.arch](tuple(images.shape[1:]), classes)
    compile_model(model)
    model.optimizer.build(model.trainable_variables)
    run_steps = compiled_training_steps(model)
    steps_per_epoch = -(-len(images) // config.batch_size)

    checkpoint = _Checkpoint(checkpoint_dir)
    history: dict[str, list[float]] = {}
    first_epoch = 0
    if resume:
        first_epoch, history = checkpoint.load(model, config)
    else:
        checkpoint.clear()
    seconds["setup"] = _since(setup_start)

    start = time.perf_counter()
    seconds["epochs"] = []
    try:
        for epoch in range(first_epoch, config.epochs):
            epoch_start = time.perf_counter()
            order = epoch_order(config.seed, epoch, len(images)).astype(np.int32)
            batches = [tf.constant(b) for b in epoch_batches(order, config.batch_size)]
            model.reset_metrics()
            done = 0
            for batch_indices in batches:
                interrupts.check()
                run_steps(x, y, batch_indices, divisor, offset)
                done += len(batch_indices)
                if on_progress:
                    on_progress(epoch, done, steps_per_epoch, _metric_values(model))
            for key, value in _metric_values(model).items():
                history.setdefault(key, []).append(value)
            checkpoint.save(model, config, epoch + 1, history)
            seconds["epochs"].append(_since(epoch_start))
    except KeyboardInterrupt:
        done = len(history.get("loss", []))
        raise ToolkitError(
            f"training interrupted after {done} of {config.epochs} epochs; state kept in "
            f"{checkpoint_dir}: rerun the same command with --resume to continue",
            ExitCode.INTERRUPTED,
        ) from None
    train_seconds = time.perf_counter() - start
    seconds["training_loop"] = round(train_seconds, 3)

    # One forward pass serves the metrics and the figures; loss as Keras computes it.
    evaluation_start = time.perf_counter()
    test_items = dataset.test_images
    probabilities = np.concatenate(
        [
            np.asarray(model(dataset.inputs(test_items[i : i + 2500]), training=False))
            for i in range(0, len(test_items), 2500)
        ]
    )
    test_labels = dataset.test_labels.astype(np.int64)
    picked = np.clip(probabilities[np.arange(len(test_labels)), test_labels], 1e-7, 1.0)
    test_loss = float(-np.mean(np.log(picked)))
    test_accuracy = float(np.mean(probabilities.argmax(axis=1) == test_labels))
    checkpoint.clear()
    seconds["evaluation"] = _since(evaluation_start)
    metrics = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "train_seconds": round(train_seconds, 3),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "arch": config.arch,
        "limit": config.limit,
        "train_images": len(images),
        "parameters": int(model.count_params()),
        "resumed_from_epoch": first_epoch if resume else None,
        "determinism": {
            "op_determinism": True,
            "jit_compile": xla_trainable(model),
            "steps_per_call": "one epoch",
            **thread_settings(),
        },
        "dataset": {
            "source": str(dataset.source),
            "verified": dataset.verified,
            "kind": dataset.kind,
        },
        "versions": recorded_versions(),
        # Where the process's time went (toolkit.model.run_training adds the parts around
        # training); `training_loop` is `train_seconds`, the XLA compilation in its first epoch.
        "seconds": seconds,
    }
    return TrainResult(model, history, probabilities, metrics)


def check_trainable(dataset: Dataset) -> None:
    """Training needs labelled items in both splits."""
    if dataset.train_images is None or dataset.train_labels is None:
        raise ToolkitError(
            f"{dataset.source}: no labelled training split (x_train and y_train, or train/)",
            ExitCode.DATASET,
        )
    if dataset.test_labels is None:
        raise ToolkitError(f"{dataset.source}: no test labels (y_test)", ExitCode.DATASET)


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 3)


@contextlib.contextmanager
def _timed(seconds: dict, part: str):
    start = time.perf_counter()
    yield
    seconds[part] = _since(start)


def _metric_values(model) -> dict[str, float]:
    """The running epoch means of loss and accuracy, as Keras's fit reports them."""
    return {key: float(value) for key, value in model.get_metrics_result().items()}


def thread_settings() -> dict[str, int]:
    """TensorFlow's thread pools (0 means TF picks by core count)."""
    import tensorflow as tf

    return {
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "cpu_count": os.cpu_count() or 0,
    }


TRAINING_FIGURES = (
    "sample_image.png",
    "class_grid.png",
    "training_curves.png",
    "predictions.png",
    "confusion_matrix.png",
)


class FigureWorkers:
    """Two spawned processes that draw the training figures while this one trains and saves.

    Drawing takes longer than training's saving and nothing here needs it on the critical path.
    The slowest figure, predictions.png, has a process of its own that renders everything but
    the model's answers ahead, then the training curves; the other process draws the rest in
    turn. Figures come back as PNG bytes and are written only once training has succeeded, so
    an interrupted or failed run leaves the previous plots/ as they were.
    """

    def __init__(self):
        from toolkit.figures import FigureProcess, predictions_worker, start_worker

        self.figures = FigureProcess()
        self.predictions = start_worker(predictions_worker)
        self.drawn: list[str] = []  # what the figures process was asked for, in order

    def draw(self, name: str, draw: Callable, *args) -> None:
        self.figures.draw(draw, *args)
        self.drawn.append(name)

    def draw_dataset_figures(self, dataset: Dataset) -> None:
        """The figures that need only the dataset, sent as soon as it is read."""
        from toolkit.figures import PREDICTIONS_SHOWN, class_grid_figure, sample_image_figure

        shown = slice(PREDICTIONS_SHOWN)
        test = dataset.test_images[shown], dataset.test_labels[shown], dataset.label_names
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
        the training curves (its answers take 0.1 s), and the confusion matrix."""
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
        self.predictions.close()


def save_training_outputs(out: Path, dataset: Dataset, result: TrainResult) -> list[Path]:
    """model.keras, training/{history.json,history.csv,metrics.json} and the figures in plots/."""
    started = time.perf_counter()
    with FigureWorkers() as figures:
        figures.draw_dataset_figures(dataset)
        return _save_outputs(out, dataset, result, figures, started)


def _save_outputs(
    out: Path, dataset: Dataset, result: TrainResult, figures: FigureWorkers, started: float
) -> list[Path]:
    """Saves while the workers draw the result figures; metrics.json last, with the timings
    (`in_process`: seconds since `started`)."""
    from toolkit.artifacts import atomic_path, sha256_file, write_json, write_text

    figures.draw_result_figures(dataset, result)
    seconds = result.metrics["seconds"]
    model_path = out / "model.keras"
    with _timed(seconds, "saving"):
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
    with _timed(seconds, "figures_wait"):
        saved += figures.write(out / "plots")
    seconds["in_process"] = _since(started)
    return [*saved, write_json(out / "training" / "metrics.json", result.metrics)]


def run_training(
    out: Path,
    config: TrainConfig,
    data_dir: Path | None = None,
    resume: bool = False,
    on_dataset: Callable[[Dataset], None] = lambda dataset: None,
    on_progress: Callable[[int, int, int, dict[str, float]], None] | None = None,
    data: str | Path | None = None,
) -> TrainResult:
    """`toolkit train`: every output in `out`, with only the dataset's reading, TensorFlow's
    import, training and saving on the critical path.

    The dataset is read before TensorFlow's import, not beside it: a reading thread made the
    import 0.4-0.8 s slower (GIL hand-offs and page faults in one process), more than the
    0.3 s the reading takes. Two worker processes draw the figures; those that need only the
    dataset while TensorFlow imports on the other core, not while the model trains on both.
    `on_dataset` sees the dataset before training starts (e.g. to warn that it is not verified).
    """
    from toolkit.process import import_tensorflow

    start = time.perf_counter()
    seconds = {}
    with FigureWorkers() as figures:
        with _timed(seconds, "dataset_wait"):
            dataset = load_data(data, data_dir)
        figures.draw_dataset_figures(dataset)
        with _timed(seconds, "tensorflow_import"):
            import_tensorflow()
        on_dataset(dataset)
        result = train(dataset, config, out / "training" / "checkpoint", resume, on_progress)
        result.metrics["seconds"] = {**seconds, **result.metrics["seconds"]}
        _save_outputs(out, dataset, result, figures, start)
    return result
