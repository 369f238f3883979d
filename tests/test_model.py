"""The tutorial model's shape and training's reproducibility and resume."""

import json

import numpy as np
import pytest

from toolkit.model import ARCHITECTURES, TrainConfig, epoch_order, train

EXPECTED_PARAMETERS = {"mlp": 101_770}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_architecture_shapes(arch):
    model = ARCHITECTURES[arch]()
    assert tuple(model.input_shape) == (None, 28, 28)
    assert tuple(model.output_shape) == (None, 10)
    assert model.inputs[0].name == "images"
    assert model.layers[-1].name == "probabilities"
    assert model.count_params() <= 101_770


def test_tutorial_model_parameter_count():
    assert ARCHITECTURES["mlp"]().count_params() == EXPECTED_PARAMETERS["mlp"]


def test_epoch_order_depends_only_on_seed_and_epoch():
    assert np.array_equal(epoch_order(3, 1, 100), epoch_order(3, 1, 100))
    assert not np.array_equal(epoch_order(3, 1, 100), epoch_order(3, 2, 100))


def _weights(dataset, tmp_path, name, **config):
    # Two epochs of four batches: the seed decides the initial weights and each epoch's order.
    result = train(dataset, TrainConfig(limit=128, epochs=2, **config), tmp_path / name)
    return result.model.get_weights()


def test_same_seed_gives_bit_identical_weights(dataset, tmp_path):
    first = _weights(dataset, tmp_path, "a", seed=7)
    second = _weights(dataset, tmp_path, "b", seed=7)
    other = _weights(dataset, tmp_path, "c", seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a, c) for a, c in zip(first, other, strict=True))


def test_sigterm_keeps_the_epoch_and_resume_matches_an_uninterrupted_run(tmp_path):
    """Interrupt a real `toolkit train` process, resume it, and get bit-identical weights."""
    import signal
    import time

    import keras

    from tests.cli_process import CliProcess, run_cli

    # Small epochs (each process's cost is the epoch's compilation), but many: the signal must
    # land well before the last one.
    options = ["--limit", "256", "--epochs", "40", "--seed", "3", "--no-figures"]

    def command(out, *extra):
        return ["train", "--out", out, *options, *extra]

    # beside the interrupted run: it depends on nothing there
    straight = CliProcess(*command(tmp_path / "straight"))
    interrupted = tmp_path / "interrupted"
    process = CliProcess(*command(interrupted))
    state = interrupted / "training" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 120
    while not state.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert not (interrupted / "model.keras").exists()

    resumed = run_cli(*command(interrupted, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    _, straight_stderr = straight.communicate(timeout=300)
    assert straight.returncode == 0, straight_stderr

    def weights(out):
        return keras.saving.load_model(out / "model.keras").get_weights()

    assert all(
        np.array_equal(a, b)
        for a, b in zip(weights(interrupted), weights(tmp_path / "straight"), strict=True)
    )
    history = json.loads((interrupted / "training" / "history.json").read_text())
    assert len(history["loss"]) == 40
    metrics = json.loads((interrupted / "training" / "metrics.json").read_text())
    assert 0 < metrics["resumed_from_epoch"] < 40


def test_resume_without_an_interrupted_run_is_a_usage_error(dataset, tmp_path):
    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError, match="nothing to resume") as error:
        train(dataset, TrainConfig(limit=100, epochs=1), tmp_path / "none", resume=True)
    assert error.value.code == 2


def test_epoch_batches_keep_the_partial_last_batch():
    from toolkit.model import epoch_batches

    batches = epoch_batches(np.arange(70), 32)
    assert [b.shape for b in batches] == [(2, 32), (1, 6)]
    assert np.array_equal(np.concatenate([b.ravel() for b in batches]), np.arange(70))
    assert [b.shape for b in epoch_batches(np.arange(64), 32)] == [(2, 32)]
    assert [b.shape for b in epoch_batches(np.arange(5), 32)] == [(1, 5)]


# One Adam step moves a weight by about the learning rate (1e-3) at most, so a skipped, repeated
# or reordered batch, or another loss or optimizer setting, shows as ~1e-3 (a different batch
# order: ~3e-2 here). What may differ is rounding: XLA fuses the epoch and sums matrix products
# and the loss mean in another order than TF's kernels in fit (2^-24 relative per operation on
# weights of ~0.1); over this epoch's 32 steps it measured at most 5e-7. 1e-5 sits between.
FIT_TOLERANCE = 1e-5


def _max_difference(first, second) -> float:
    return max(float(np.abs(a - b).max()) for a, b in zip(first, second, strict=True))


def test_a_compiled_epoch_computes_what_keras_fit_computes(dataset, tmp_path):
    """Same initial weights and batch order: toolkit's XLA epoch against Keras's own fit."""
    from toolkit.data import normalize
    from toolkit.model import build_mlp, compile_model, seed_everything

    seed, count = 5, 1000  # 31 batches of 32 and a last one of 8, trained on as fit does
    images, labels = dataset.train_images[:count], dataset.train_labels[:count]

    def train_with_keras_fit(order):
        seed_everything(seed)  # as train() does before building: the same initial weights
        model = build_mlp()
        compile_model(model)
        initial = model.get_weights()
        data = normalize(images[order]), labels[order]
        model.fit(*data, batch_size=32, epochs=1, shuffle=False, verbose=0)
        return initial, model.get_weights()

    untrained = train(dataset, TrainConfig(limit=count, epochs=0, seed=seed), tmp_path / "a")
    ours = train(dataset, TrainConfig(limit=count, epochs=1, seed=seed), tmp_path / "b")
    initial, theirs = train_with_keras_fit(epoch_order(seed, 0, count))
    assert _max_difference(untrained.model.get_weights(), initial) == 0
    assert _max_difference(ours.model.get_weights(), theirs) <= FIT_TOLERANCE
    # The tolerance is tight enough to see one epoch's batches in another order.
    _, reordered = train_with_keras_fit(epoch_order(seed, 1, count))
    assert _max_difference(ours.model.get_weights(), reordered) > 100 * FIT_TOLERANCE
