"""The tutorial model (and a small CNN), trained fast, reproducibly and resumably."""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from toolkit import interrupts
from toolkit.data import IMAGE_SIDE, NUM_CLASSES, Dataset
from toolkit.errors import ExitCode, ToolkitError, first_line

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
# An epoch is one XLA-compiled program that gathers its own batches. Measured on 2 cores for
# the tutorial's 10 epochs: Keras's fit (64 steps per call) 22 s, fit with XLA 15 s, this 3.8 s.
# Smaller programs (256 steps per call, for a livelier progress bar) cost 7.4 s.


TUTORIAL_SHAPE = (IMAGE_SIDE, IMAGE_SIDE)


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


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the results, recorded beside every output."""
    from importlib.metadata import PackageNotFoundError, version

    import toolkit
    from toolkit.runners import RUNNERS

    versions = {"toolkit": toolkit.__version__}
    converters = ("tensorflow", "keras", "numpy", "onnx", "tf2onnx")
    for name in dict.fromkeys([*converters, *(r.package for r in RUNNERS.values())]):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def compile_model(model) -> None:
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def compiled_training_steps(model):
    """Keras's own train_step (same loss, optimizer and metrics) looped inside one XLA program.

    The batches are gathered inside the program from the whole training set, so an epoch
    never round-trips to Python per batch nor copies a shuffled training set.
    """
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def run_steps(images, labels, batch_indices):
        for step in tf.range(tf.shape(batch_indices)[0]):
            index = batch_indices[step]
            model.train_step((tf.gather(images, index), tf.gather(labels, index)))

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
    seed_everything(config.seed)
    images = dataset.train_images[: config.limit] if config.limit else dataset.train_images
    labels = dataset.train_labels[: len(images)]
    x, y = tf.constant(dataset.inputs(images)), tf.constant(labels.astype(np.int32))
    classes = len(dataset.class_names) if dataset.class_names else int(labels.max()) + 1
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

    start = time.perf_counter()
    try:
        for epoch in range(first_epoch, config.epochs):
            order = epoch_order(config.seed, epoch, len(images)).astype(np.int32)
            batches = [tf.constant(b) for b in epoch_batches(order, config.batch_size)]
            model.reset_metrics()
            done = 0
            for batch_indices in batches:
                interrupts.check()
                run_steps(x, y, batch_indices)
                done += len(batch_indices)
                if on_progress:
                    on_progress(epoch, done, steps_per_epoch, _metric_values(model))
            for key, value in _metric_values(model).items():
                history.setdefault(key, []).append(value)
            checkpoint.save(model, config, epoch + 1, history)
    except KeyboardInterrupt:
        done = len(history.get("loss", []))
        raise ToolkitError(
            f"training interrupted after {done} of {config.epochs} epochs; state kept in "
            f"{checkpoint_dir}: rerun the same command with --resume to continue",
            ExitCode.INTERRUPTED,
        ) from None
    train_seconds = time.perf_counter() - start

    # One forward pass serves the metrics and the figures; loss as Keras computes it.
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
            "jit_compile": True,
            "steps_per_call": "one epoch",
            **thread_settings(),
        },
        "dataset": {
            "source": str(dataset.source),
            "verified": dataset.verified,
            "kind": dataset.kind,
        },
        "versions": library_versions(),
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


def save_training_outputs(out: Path, dataset: Dataset, result: TrainResult) -> list[Path]:
    """model.keras, training/{history.json,history.csv,metrics.json} and the figures in plots/."""
    from toolkit.artifacts import atomic_path, sha256_file, write_json, write_text
    from toolkit.figures import plot_training_figures

    model_path = out / "model.keras"
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
    return [
        model_path,
        write_json(out / "training" / "history.json", history),
        write_text(out / "training" / "history.csv", "\n".join(rows) + "\n"),
        write_json(out / "training" / "metrics.json", result.metrics),
        *plot_training_figures(dataset, history, result.test_probabilities, out / "plots"),
    ]


def load_keras_model(path: Path):
    """A `.keras` file loaded with safe_mode=True, refused with a clear reason when it is not one.

    Model files are code (Keras, TF and ONNX security policies say so): legacy formats that need
    unsafe deserialization are never loaded, and the model's shape is checked before any use.
    """
    import zipfile

    from toolkit.artifacts import check_artifact_file

    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise ToolkitError(
            f"{path}: legacy HDF5 model refused (loading it is not safe); convert it where you "
            "trust it: keras.models.load_model(path).save('model.keras')",
            ExitCode.ARTIFACT,
        )
    if path.suffix.lower() != ".keras":
        raise ToolkitError(f"{path}: expected a .keras model file", ExitCode.ARTIFACT)
    if not path.is_file():
        raise ToolkitError(f"{path}: model file not found", ExitCode.ARTIFACT)
    check_artifact_file(path)
    if not zipfile.is_zipfile(path):
        raise ToolkitError(
            f"{path}: not a Keras archive (empty, truncated or another format)", ExitCode.ARTIFACT
        )
    check_unpacked_size(path)
    import keras

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad archive
        reason = first_line(exc)
        raise ToolkitError(
            f"{path}: cannot load as a Keras model: {reason}", ExitCode.ARTIFACT
        ) from None
    check_model_io(model, path)
    return model


# Keras stores weights uncompressed-ish (float data barely deflates): a real archive unpacks to
# a few times its size. Far more is a zip bomb, refused before Keras extracts anything.
MAX_UNPACK_RATIO = 100
MAX_UNPACK_SLACK = 16 << 20  # config, metadata and tiny models compress well: some room


def check_unpacked_size(path: Path) -> None:
    """Refuses a `.keras` archive whose members would unpack to far more than the file's size."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ToolkitError(
            f"{path}: not a Keras archive ({first_line(exc)})", ExitCode.ARTIFACT
        ) from None
    limit = MAX_UNPACK_RATIO * path.stat().st_size + MAX_UNPACK_SLACK
    if unpacked > limit:
        raise ToolkitError(
            f"{path}: its members unpack to {unpacked} bytes, over {limit} for a file of this "
            "size (a zip bomb?); refusing to load it",
            ExitCode.ARTIFACT,
        )


def check_model_io(model, path: Path) -> None:
    """Any model with one float input of fixed shape (batch aside) and one output can be
    exported and compared; say what was found otherwise."""
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        found = f"{len(inputs or [])} inputs and {len(outputs or [])} outputs"
        raise ToolkitError(
            f"{path}: expected one input and one output, found {found}", ExitCode.ARTIFACT
        )
    input_shape, output_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
    if any(d is None for d in input_shape[1:]) or any(d is None for d in output_shape[1:]):
        raise ToolkitError(
            f"{path}: dimensions other than the batch must be fixed, found input "
            f"{input_shape} and output {output_shape}",
            ExitCode.ARTIFACT,
        )
    dtype = str(inputs[0].dtype)
    if not dtype.startswith(("float", "bfloat")):
        raise ToolkitError(
            f"{path}: expected a float input, found {dtype}; feed the model float features",
            ExitCode.ARTIFACT,
        )
