"""Flip galleries: the inputs whose top-1 class an artifact changed, as the reference saw them."""

from __future__ import annotations

import textwrap

import numpy as np

from toolkit.figures import literal_text, pyplot
from toolkit.reporting.cells import class_name, short
from toolkit.results import Report, Row

GALLERY_COLUMNS = 8
GALLERY_CELL = (1.8, 2.2)  # inches per flip: the input with its three-line title above it
GALLERY_FLIP_TITLE = 0.55  # inches for a flip's three-line title (7 pt)
GALLERY_MARGIN = 0.1  # inches around a flip's input
GALLERY_SCALE_WIDTH = 0.2  # inches left of a line plot for its scale's labels (6 pt)
GALLERY_TITLE_LINE, GALLERY_TITLE_CHARS_PER_INCH = 0.2, 12  # the figure's title (9 pt), wrapped


def _probability(value: float) -> str:
    return f"{100 * value:.0f}%" if 0 <= value <= 1 else f"{value:.3g}"


def _as_image(value: np.ndarray) -> np.ndarray | None:
    """An (H, W), (H, W, 1) or (H, W, 3) input as pixels in [0, 1]; None for other shapes."""
    array = np.asarray(value)
    image = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
        return None
    pixels = image.astype(np.float64)
    if image.dtype == np.uint8 or pixels.max(initial=0) > 1 or pixels.min(initial=0) < 0:
        low, high = (0, 255) if image.dtype == np.uint8 else (pixels.min(), pixels.max())
        pixels = (pixels - low) / (high - low if high > low else 1)
    return pixels


def gallery_input(item: np.ndarray) -> np.ndarray:
    """What a gallery shows of one item: the item, or for a model with several inputs its
    first image-shaped input (else its first input)."""
    names = item.dtype.names
    if not names:
        return item
    images = [name for name in names if _as_image(item[name]) is not None]
    return item[(images or names)[0]]


def _flip_title(report: Report, flip: dict) -> str:
    """Three lines: index and true label; the reference's class and probability; the artifact's
    (✓ where the class is the label)."""

    def name(index: int | None) -> str:
        return short(class_name(report, index), 12)

    def guess(predicted: int, probability: float) -> str:
        right = "" if flip["label"] is None else " ✓" if predicted == flip["label"] else " ✗"
        return f"{name(predicted)} {_probability(probability)}{right}"

    label = "" if flip["label"] is None else f" {name(flip['label'])}"
    return (
        f"#{flip['index']}{label}\n"
        f"ref {guess(flip['reference_class'], flip['reference_probability'])}\n"
        f"now {guess(flip['class'], flip['probability'])}"
    )


def _draw_line(fig, value, left: float, box_top: float, size: tuple[float, float]) -> None:
    """An input that is not an image, as a line on axes of its own with a scale."""
    width, height = size
    box_width = GALLERY_CELL[0] - 2 * GALLERY_MARGIN
    box_height = GALLERY_CELL[1] - GALLERY_FLIP_TITLE - 2 * GALLERY_MARGIN
    left += GALLERY_SCALE_WIDTH  # room for the scale's labels
    ax = fig.add_axes(
        (
            left / width,
            1 - (box_top + box_height) / height,
            (box_width - GALLERY_SCALE_WIDTH) / width,
            box_height / height,
        )
    )
    ax.plot(np.asarray(value).reshape(-1), lw=0.6, color="tab:blue")
    ax.set_xticks([])
    ax.tick_params(labelsize=6)


def _draw_image(page, pixels: np.ndarray, left: float, box_top: float) -> None:
    """An image input scaled into its box on the page, framed."""
    from matplotlib.patches import Rectangle

    box_width = GALLERY_CELL[0] - 2 * GALLERY_MARGIN
    box_height = GALLERY_CELL[1] - GALLERY_FLIP_TITLE - 2 * GALLERY_MARGIN
    scale = min(box_width / pixels.shape[1], box_height / pixels.shape[0])
    shown = pixels.shape[1] * scale, pixels.shape[0] * scale
    page.imshow(
        pixels,
        cmap="gray",
        vmin=0,
        vmax=1,
        interpolation="nearest",
        aspect="auto",
        extent=(left, left + shown[0], box_top + shown[1], box_top),
    )
    page.add_patch(Rectangle((left, box_top), *shown, fill=False, lw=0.8))


def flip_gallery_figure(report: Report, row: Row, inputs):
    """The row's `top_flips` (up to 32, the reference's surest first): each input with its label,
    the reference's class and probability and the artifact's. `inputs[i]` is item i.

    Laid out in inches on one full-figure axes: images are placed on it, titles written on it,
    as an axes per flip would cost more in axis machinery than the drawing itself; only inputs
    that are not images, drawn as lines with a scale, get axes of their own."""
    flips = row.top_flips
    columns = min(len(flips), GALLERY_COLUMNS)
    lines = -(-len(flips) // GALLERY_COLUMNS)
    width = GALLERY_CELL[0] * columns
    title = textwrap.fill(
        f"{report.label(row)}: {row.flipped} flipped; the {len(flips)} the reference was surest "
        "about (# index, true label / ref: reference / now: this artifact)",
        int(width * GALLERY_TITLE_CHARS_PER_INCH),
    )
    top = GALLERY_TITLE_LINE * (title.count("\n") + 1) + 0.15
    height = GALLERY_CELL[1] * lines + top
    fig = pyplot().figure(figsize=(width, height))
    page = fig.add_axes((0, 0, 1, 1))  # data coordinates are inches from the top left
    page.set_axis_off()
    for k, flip in enumerate(flips):
        left = (k % GALLERY_COLUMNS) * GALLERY_CELL[0] + GALLERY_MARGIN
        cell_top = top + (k // GALLERY_COLUMNS) * GALLERY_CELL[1]
        box_top = cell_top + GALLERY_FLIP_TITLE + GALLERY_MARGIN
        flip_title = literal_text(_flip_title(report, flip))
        page.text(left, box_top - 0.04, flip_title, fontsize=7, va="bottom")
        value = inputs[flip["index"]]
        pixels = _as_image(value)
        if pixels is None:
            _draw_line(fig, value, left, box_top, (width, height))
        else:
            _draw_image(page, pixels, left, box_top)
    page.set_xlim(0, width)
    page.set_ylim(height, 0)
    fig.suptitle(literal_text(title), fontsize=9, y=1 - 0.1 / height, va="top")
    return fig
