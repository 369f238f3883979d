"""The figure process: figures drawn beside the caller, handed back in order."""

import io
import struct
import time

import numpy as np
from PIL import Image

from toolkit.data import CLASS_NAMES
from toolkit.figures import (
    PREDICTIONS_SHOWN,
    FigureProcess,
    PredictionsGrid,
    class_grid_figure,
    confusion_matrix_figure,
    draw_answer,
    literal_text,
    png_bytes,
    predictions_figure,
    pyplot,
)
from toolkit.quantization.records import LayerErrors, TensorError, layer_errors_figure


def slow_figure(seconds: float, width_inches: int):
    time.sleep(seconds)
    return pyplot().figure(figsize=(width_inches, 1))


def png_width(png: bytes) -> int:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">I", png[16:20])[0]  # IHDR's width


def test_idle_only_once_every_queued_figure_is_back_and_pngs_keep_their_order():
    with FigureProcess() as figures:
        assert figures.idle()
        figures.draw(slow_figure, 1.0, 1, trim=False)
        figures.draw(slow_figure, 0.0, 2, trim=False)
        assert not figures.idle()
        deadline = time.monotonic() + 60
        while not figures.idle():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [png_width(png) for png in figures.pngs()] == [100, 200]  # 100 dpi
        assert figures.idle() and figures.pngs() == []


def modules_before_start(connection) -> None:
    """A figure worker that says which of pyplot and another server's preload it had before it
    started."""
    import sys

    connection.send([name in sys.modules for name in ("matplotlib.pyplot", "colorsys")])
    connection.close()


def test_figure_processes_fork_from_a_server_that_imported_pyplot_and_nothing_heavier():
    """Every figure process of a process forks from one server that imported pyplot (each
    spawned interpreter imported it again), and from no other server (TensorFlow's, in a
    process that has one): its memory and start stay a figure process's."""
    from toolkit.figures import start_worker
    from toolkit.process import fork_server

    assert fork_server(("colorsys",)) is not None  # started first: a server of its own
    for _ in range(2):
        connection = start_worker(modules_before_start)
        assert connection.recv() == [True, False]
        connection.close()


def test_answered_predictions_look_like_a_full_render_of_the_answered_grid():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (PREDICTIONS_SHOWN, 28, 28), np.uint8)
    labels = rng.integers(0, 10, PREDICTIONS_SHOWN)
    probabilities = rng.dirichlet(np.full(10, 0.3), PREDICTIONS_SHOWN)
    blitted = PredictionsGrid(images, CLASS_NAMES).answered_png(probabilities, labels, CLASS_NAMES)

    fig, panels = predictions_figure(images, CLASS_NAMES)
    for panel, answer, label in zip(panels, probabilities, labels, strict=True):
        draw_answer(*panel, answer, int(label), CLASS_NAMES)
    rendered = png_bytes(fig, trim=False)

    blitted_pixels, rendered_pixels = (
        np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
        for png in (blitted, rendered)
    )
    assert blitted_pixels.shape == rendered_pixels.shape == (1000, 1200, 3)
    differing = np.abs(blitted_pixels - rendered_pixels).max(axis=2) > 8
    assert differing.mean() < 1e-3
    assert (rendered_pixels != 255).any(axis=2).mean() > 0.05  # not two blank pages


MATH = r"$\undefinedmacro$"  # mathtext matplotlib cannot parse: drawn as is, or it raises


def test_literal_text_is_never_mathtext_and_draws_the_name_unchanged():
    from matplotlib import cbook
    from matplotlib.text import Text

    for name in (MATH, "$5 bill", "a \\$ b $", "$$", "plain"):
        assert not cbook.is_math_text(literal_text(name))
        assert Text(text=literal_text(name))._preprocess_math(literal_text(name)) == (name, False)


def test_class_and_layer_names_with_dollar_signs_are_drawn_literally():
    rng = np.random.default_rng(0)
    names = [f"{MATH} {name}" for name in CLASS_NAMES[:-1]] + ["$5 bill"]
    images = rng.integers(0, 256, (PREDICTIONS_SHOWN, 28, 28), np.uint8)
    labels = rng.integers(0, 10, PREDICTIONS_SHOWN)
    probabilities = rng.dirichlet(np.full(10, 0.3), PREDICTIONS_SHOWN)
    tensor = TensorError(MATH, "t", "activation", "FULLY_CONNECTED", "n", {"rmse": 0.1})
    errors = LayerErrors("tflite", "debugger", "rmse", "rmse", 8, (tensor,))
    grid = PredictionsGrid(images, names)
    assert grid.answered_png(probabilities, labels, names).startswith(b"\x89PNG")
    for fig in (
        class_grid_figure(images, labels, names),
        confusion_matrix_figure(labels, probabilities.argmax(axis=1), names),
        layer_errors_figure(errors, f"{MATH}.tflite"),
    ):
        assert png_bytes(fig).startswith(b"\x89PNG")
