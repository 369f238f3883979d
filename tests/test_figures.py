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
    draw_answer,
    png_bytes,
    predictions_figure,
    pyplot,
)


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
