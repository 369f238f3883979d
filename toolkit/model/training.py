"""The training loop: the tutorial's hyper-parameters, fast, reproducible and resumable.

An epoch is one XLA-compiled program that gathers its own batches: Keras's fit, with or without
XLA, returns to Python every few steps, and smaller programs (for a livelier progress bar) pay
for the returns too (README, Performance).
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit import interrupts
from toolkit.data import Dataset
from toolkit.errors import ExitCode, ToolkitError
from toolkit.formats.keras import set_tf_threads
from toolkit.model.architectures import ARCHITECTURES, compile_model
from toolkit.model.checkpoint import Checkpoint
from toolkit.model.config import TrainConfig, TrainResult
from toolkit.process import recorded_versions

EVALUATION_BATCH = 2500  # test items per forward pass when scoring the trained model


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and TF and turns on op determinism: one seed, bit-identical weights."""
    import keras
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


TRAIN_THREADS = 2  # TensorFlow's intra-op threads while training, whatever the core count


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


@dataclass
class _Setup:
    """A model ready to train and the training set as TensorFlow constants."""

    model: object
    run_steps: Callable
    items: object  # tf.Tensor of the stored items
    labels: object
    divisor: object
    offset: object
    count: int


def _setup(dataset: Dataset, config: TrainConfig) -> _Setup:
    """Threads, seeds, the model and its compiled epoch, and the training set as constants."""
    import tensorflow as tf

    # A fixed thread count, so the weights do not depend on the machine's core count; two,
    # because in the XLA-compiled epoch a second thread pays for itself.
    set_tf_threads(TRAIN_THREADS)
    seed_everything(config.seed)
    images = dataset.train_images[: config.limit] if config.limit else dataset.train_images
    labels = dataset.train_labels[: len(images)]
    model = ARCHITECTURES[config.arch](tuple(images.shape[1:]), len(dataset.label_names))
    compile_model(model)
    model.optimizer.build(model.trainable_variables)
    # Items stay in their stored dtype (uint8 pixels: a quarter of float32's bytes); each batch
    # is preprocessed inside the compiled epoch exactly as Preprocessing.apply does it.
    return _Setup(
        model,
        compiled_training_steps(model),
        tf.constant(images),
        tf.constant(labels.astype(np.int32)),
        tf.constant(np.float32(1 / dataset.preprocess.scale)),
        tf.constant(np.float32(dataset.preprocess.offset)),
        len(images),
    )


def _run_epochs(setup: _Setup, config: TrainConfig, checkpoint, first_epoch, history, on_progress):
    """Epochs `first_epoch`..config.epochs, each saved to `checkpoint` once done; returns the
    seconds of each epoch."""
    import tensorflow as tf

    model, steps_per_epoch, seconds = setup.model, -(-setup.count // config.batch_size), []
    for epoch in range(first_epoch, config.epochs):
        epoch_start = time.perf_counter()
        order = epoch_order(config.seed, epoch, setup.count).astype(np.int32)
        batches = [tf.constant(b) for b in epoch_batches(order, config.batch_size)]
        model.reset_metrics()
        done = 0
        for batch_indices in batches:
            interrupts.check()
            setup.run_steps(setup.items, setup.labels, batch_indices, setup.divisor, setup.offset)
            done += len(batch_indices)
            if on_progress:
                on_progress(epoch, done, steps_per_epoch, _metric_values(model))
        for key, value in _metric_values(model).items():
            history.setdefault(key, []).append(value)
        checkpoint.save(model, config, epoch + 1, history)
        seconds.append(since(epoch_start))
    return seconds


def _evaluate(model, dataset: Dataset) -> tuple[np.ndarray, float, float]:
    """Test-set probabilities, loss (as Keras computes it) and accuracy, from one forward pass."""
    items = dataset.test_images
    probabilities = np.concatenate(
        [
            np.asarray(model(dataset.inputs(items[i : i + EVALUATION_BATCH]), training=False))
            for i in range(0, len(items), EVALUATION_BATCH)
        ]
    )
    labels = dataset.test_labels.astype(np.int64)
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
    return probabilities, float(-np.mean(np.log(picked))), accuracy


def train(
    dataset: Dataset,
    config: TrainConfig,
    checkpoint_dir: Path,
    resume: bool = False,
    on_progress: Callable[[int, int, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Trains with the tutorial's hyper-parameters; on Ctrl-C keeps the last epoch for --resume."""
    check_trainable(dataset)
    seconds: dict = {}
    with timed(seconds, "setup"):
        setup = _setup(dataset, config)
        checkpoint = Checkpoint(checkpoint_dir)
        history: dict[str, list[float]] = {}
        first_epoch = 0
        if resume:
            first_epoch, history = checkpoint.load(setup.model, config)
        else:
            checkpoint.clear()
    start = time.perf_counter()
    try:
        seconds["epochs"] = _run_epochs(
            setup, config, checkpoint, first_epoch, history, on_progress
        )
    except KeyboardInterrupt:
        done = len(history.get("loss", []))
        raise ToolkitError(
            f"training interrupted after {done} of {config.epochs} epochs; state kept in "
            f"{checkpoint_dir}: rerun the same command with --resume to continue",
            ExitCode.INTERRUPTED,
        ) from None
    train_seconds = time.perf_counter() - start
    seconds["training_loop"] = round(train_seconds, 3)
    with timed(seconds, "evaluation"):
        probabilities, test_loss, test_accuracy = _evaluate(setup.model, dataset)
        checkpoint.clear()
    figures = {"test_accuracy": test_accuracy, "test_loss": test_loss}
    figures |= {"train_seconds": round(train_seconds, 3), "train_images": setup.count}
    metrics = _metrics(setup.model, dataset, config, figures, first_epoch if resume else None)
    metrics["seconds"] = seconds
    return TrainResult(setup.model, history, probabilities, metrics)


def _metrics(model, dataset: Dataset, config: TrainConfig, figures: dict, resumed) -> dict:
    """training/metrics.json but for `seconds`: the figures, the settings, the provenance."""
    return {
        "test_accuracy": figures["test_accuracy"],
        "test_loss": figures["test_loss"],
        "train_seconds": figures["train_seconds"],
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "arch": config.arch,
        "limit": config.limit,
        "train_images": figures["train_images"],
        "parameters": int(model.count_params()),
        "resumed_from_epoch": resumed,
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
        # Where the process's time went (run_training adds the parts around training);
        # `training_loop` is `train_seconds`, the XLA compilation in its first epoch.
        "seconds": {},
    }


def check_trainable(dataset: Dataset) -> None:
    """Training needs labelled items in both splits."""
    if dataset.train_images is None or dataset.train_labels is None:
        raise ToolkitError(
            f"{dataset.source}: no labelled training split (x_train and y_train, or train/)",
            ExitCode.DATASET,
        )
    if dataset.test_labels is None:
        raise ToolkitError(f"{dataset.source}: no test labels (y_test)", ExitCode.DATASET)


def since(start: float) -> float:
    """Seconds since `start` (a perf_counter reading), to the millisecond."""
    return round(time.perf_counter() - start, 3)


@contextlib.contextmanager
def timed(seconds: dict, part: str):
    """Records the seconds the block takes as `seconds[part]`."""
    start = time.perf_counter()
    yield
    seconds[part] = since(start)


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
