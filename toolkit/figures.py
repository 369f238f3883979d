"""The tutorial's figures, written as PNG files (matplotlib's Agg backend: no screen needed)."""

from __future__ import annotations

import io
import signal
from pathlib import Path

import numpy as np

from toolkit.fsio import atomic_path


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported only when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def literal_text(text: object) -> str:
    """`text` as matplotlib must draw it: every `$` escaped, so no name (a class "$5 bill", a
    layer `$\\undefinedmacro$`) is parsed as mathtext. Every string drawn passes through here."""
    return str(text).replace("$", r"\$")


def png_bytes(fig, trim: bool = True) -> bytes:
    """`fig` as PNG bytes, then freed (pyplot keeps every open figure alive). `trim` crops to
    what is drawn, at the cost of one more layout pass; a figure laid out in inches skips it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, bbox_inches="tight" if trim else None, format="png")
    pyplot().close(fig)
    return buffer.getvalue()


def write_png(data: bytes, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def save_figure(fig, path: Path, trim: bool = True) -> Path:
    """Writes `fig` as a PNG atomically and frees it."""
    return write_png(png_bytes(fig, trim), path)


def start_figure_worker() -> None:
    """A figure worker's start: Ctrl-C is the parent's to handle; pyplot loads now, while the
    parent is busy, rather than when the first figure is due."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pyplot()


def figure_worker(connection) -> None:
    """A process that draws each (draw, args, trim) it receives and sends back the PNG bytes, in
    order, until the other end closes."""
    start_figure_worker()
    draw_jobs(connection)


def draw_jobs(connection) -> None:
    """Draws each (draw, args, trim) received, sending back PNG bytes, until the other end
    closes."""
    try:
        while True:
            draw, args, trim = connection.recv()
            connection.send(png_bytes(draw(*args), trim))
    except (EOFError, ConnectionError):  # the parent closed its end: nothing more to draw
        return


def send_job(connection, draw, *args, trim: bool = True) -> None:
    """Asks a process running draw_jobs for `draw(*args)` as PNG bytes."""
    connection.send((draw, args, trim))


# What the fork server of figure processes imports (its module imports pyplot).
FIGURE_SERVER = "toolkit.figure_server"


def start_figure_server():
    """Starts this process's figure server, which imports pyplot once for every figure process
    this process forks from it, and returns its context (None where it cannot start). It does
    not wait: the server imports while this process works, and the first fork waits for it."""
    from toolkit.process import fork_server

    return fork_server((FIGURE_SERVER,))


def start_worker(target):
    """`target(connection)` in a daemon process forked from this process's figure server (a
    spawned interpreter where the server cannot start); returns this side's connection."""
    import multiprocessing

    from toolkit.process import start_child

    context = start_figure_server() or multiprocessing.get_context("spawn")
    here, there = context.Pipe()
    start_child(context.Process(target=target, args=(there,), daemon=True))
    there.close()  # so the worker sees EOF when this side closes
    return here


class FigureProcess:
    """A process drawing figures while this one works: `draw(fn, *args)` queues one
    (`fn` returns a matplotlib figure), `pngs()` waits for the queued figures' PNG bytes, in
    order. It is forked at the first `draw` from the figure server, which starts now and imports
    pyplot meanwhile, or at that first `draw` when `lazy` (a caller that may draw nothing pays
    nothing). A daemon that ends when its pipe closes, so nothing waits for its interpreter to
    shut down and a killed parent leaves no process behind."""

    def __init__(self, lazy: bool = False):
        self.connection, self.queued, self.received = None, 0, []
        if not lazy:
            start_figure_server()

    def _start(self) -> None:
        self.connection = start_worker(figure_worker)

    def draw(self, draw, *args, trim: bool = True) -> None:
        if self.connection is None:
            self._start()
        send_job(self.connection, draw, *args, trim=trim)
        self.queued += 1

    def idle(self) -> bool:
        """Whether every queued figure has been drawn (a process that ended counts as busy:
        `pngs` then reports it)."""
        if self.connection is None:
            return True
        try:
            while len(self.received) < self.queued and self.connection.poll():
                self.received.append(self.connection.recv())
        except (EOFError, ConnectionError):
            return False
        return len(self.received) == self.queued

    def pngs(self) -> list[bytes]:
        """Every queued figure's PNG; RuntimeError when the process ended before drawing them."""
        try:
            while len(self.received) < self.queued:
                self.received.append(self.connection.recv())
        except (EOFError, ConnectionError):
            raise RuntimeError("a figure worker process ended before its figures") from None
        pngs, self.received, self.queued = self.received, [], 0
        return pngs

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def sample_image_figure(image: np.ndarray):
    """The tutorial's first look at a training image, raw pixel values with a colour bar."""
    plt = pyplot()
    fig, ax = plt.subplots()
    shown = show_item(ax, image, cmap=None)
    if shown is not None and np.asarray(image).squeeze().ndim == 2:
        fig.colorbar(shown)
    return fig


def show_item(ax, item: np.ndarray, cmap: str | None = "binary"):
    """Draws one input as a person reads it: an image ((H, W), (H, W, 1) or (H, W, 3)), a
    feature map as an image, a vector as a line. Returns the image (None for a line)."""
    item = np.asarray(item)
    item = item.squeeze(-1) if item.ndim == 3 and item.shape[-1] == 1 else item
    ax.grid(False)
    if item.ndim == 1:
        ax.plot(item, lw=0.8)
        return None
    if item.ndim == 3 and item.shape[-1] == 3:
        pixels = item if item.dtype == np.uint8 else np.clip(item, 0, 1)
        return ax.imshow(pixels)
    return ax.imshow(item.reshape(item.shape[0], -1), cmap=cmap)


def class_grid_figure(images: np.ndarray, labels: np.ndarray, class_names):
    """The first 25 training images with their class names."""
    plt = pyplot()
    fig = plt.figure(figsize=(10, 10))
    for i in range(min(25, len(images))):
        plt.subplot(5, 5, i + 1)
        plt.xticks([])
        plt.yticks([])
        show_item(plt.gca(), images[i])
        plt.xlabel(literal_text(class_names[labels[i]]))
    return fig


def training_curves_figure(history: dict[str, list[float]]):
    """Loss and accuracy per epoch."""
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], marker="o")
    ax_loss.set(title="Training loss", xlabel="epoch", ylabel="loss")
    ax_acc.plot(epochs, history["accuracy"], marker="o", color="tab:green")
    ax_acc.set(title="Training accuracy", xlabel="epoch", ylabel="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
    return fig


def draw_prediction(ax_image, ax_bars, image, probabilities, true_label, class_names) -> None:
    """The tutorial's per-image panel: the image with predicted/true label, and the ten bars."""
    draw_question(ax_image, ax_bars, image, len(class_names))
    draw_answer(ax_image, ax_bars, probabilities, true_label, class_names)


def draw_question(ax_image, ax_bars, image, classes: int) -> None:
    """The half of a panel known before the model answers: the image, both axes' ticks and
    limits, and the bars at height 0 (so the x limits are those the answered bars give)."""
    show_item(ax_image, image)
    ax_image.set_xticks([])
    ax_image.set_yticks([])
    ax_bars.grid(False)
    ax_bars.bar(range(classes), np.zeros(classes), color="#777777")
    ax_bars.set_xticks(range(classes) if classes <= 20 else [])  # past 20, ticks are ink
    ax_bars.set_yticks([])
    ax_bars.set_ylim([0, 1])


def draw_answer(ax_image, ax_bars, probabilities, true_label, class_names) -> None:
    """The model's half of a panel: predicted class and confidence, the ten bars."""
    predicted = int(np.argmax(probabilities))
    colour = "blue" if true_label is None or predicted == true_label else "red"
    truth = "" if true_label is None else f" ({class_names[true_label]})"
    label = f"{class_names[predicted]} {100 * np.max(probabilities):2.0f}%{truth}"
    ax_image.set_xlabel(literal_text(label), color=colour)
    bars = ax_bars.patches
    for bar, probability in zip(bars, probabilities, strict=True):
        bar.set_height(probability)
    bars[predicted].set_color("red")
    if true_label is not None:
        bars[true_label].set_color("blue")


PREDICTION_ROWS, PREDICTION_COLUMNS = 5, 3
PREDICTIONS_SHOWN = PREDICTION_ROWS * PREDICTION_COLUMNS


def predictions_figure(images, class_names):
    """The tutorial's grid of predictions before the model has answered, as (figure, panels):
    laid out (tight_layout) around the longest label an answer can write."""
    plt = pyplot()
    rows, cols = PREDICTION_ROWS, PREDICTION_COLUMNS
    fig = plt.figure(figsize=(2 * 2 * cols, 2 * rows))
    longest = max(class_names, key=len)
    panels = []
    for i in range(min(PREDICTIONS_SHOWN, len(images))):
        panel = plt.subplot(rows, 2 * cols, 2 * i + 1), plt.subplot(rows, 2 * cols, 2 * i + 2)
        draw_question(*panel, images[i], len(class_names))
        panel[0].set_xlabel(literal_text(f"{longest} 100% ({longest})"))
        panels.append(panel)
    fig.tight_layout()
    return fig, panels


class PredictionsGrid:
    """The tutorial's grid of predictions, rendered once before the model has answered. The
    answers then draw only their labels, bars and frames over that rendering (matplotlib's
    blitting) instead of the whole figure again, which is on training's critical path."""

    def __init__(self, images, class_names):
        self.fig, self.panels = predictions_figure(images, class_names)
        for artist in self._answer_artists():
            artist.set_visible(False)
        self.fig.canvas.draw()  # places each label too, from the tick labels beside it
        self.rendered = self.fig.canvas.copy_from_bbox(self.fig.bbox)

    def _answer_artists(self) -> list:
        """What the answers change, in a full draw's order: the bars, then the frame around
        them (drawn over their edges), and the labels."""
        return [
            artist
            for ax_image, ax_bars in self.panels
            for artist in (*ax_bars.patches, *ax_bars.spines.values(), ax_image.xaxis.label)
        ]

    def answered_png(self, probabilities, labels, class_names) -> bytes:
        """The grid with the model's answers, as PNG bytes."""
        from PIL import Image

        canvas = self.fig.canvas
        canvas.restore_region(self.rendered)
        for i, panel in enumerate(self.panels):
            draw_answer(*panel, probabilities[i], int(labels[i]), class_names)
        for artist in self._answer_artists():
            artist.set_visible(True)
            self.fig.draw_artist(artist)
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(canvas.buffer_rgba())).save(buffer, format="png")
        pyplot().close(self.fig)
        return buffer.getvalue()


def predictions_worker(connection) -> None:
    """A process drawing predictions.png: the grid as soon as the test images come, the answers
    when the probabilities come; then the PNG bytes go back, and it draws whatever else it is
    sent, as figure_worker does.

    Whoever holds the other end closing it (training failed) ends the process quietly.
    """
    start_figure_worker()
    try:
        images, labels, class_names = connection.recv()
        grid = PredictionsGrid(images, class_names)
        connection.send(grid.answered_png(connection.recv(), labels, class_names))
    except (EOFError, ConnectionError):  # the parent closed its end: nothing more to draw
        return
    draw_jobs(connection)


def plot_image_predictions(images, probabilities, labels, class_names, path: Path) -> Path:
    """`toolkit predict --plot`: one row per image, the tutorial's panel; labels may be None."""
    plt = pyplot()
    rows = len(images)
    fig = plt.figure(figsize=(6, 3 * rows))
    for i in range(rows):
        draw_prediction(
            plt.subplot(rows, 2, 2 * i + 1),
            plt.subplot(rows, 2, 2 * i + 2),
            images[i],
            probabilities[i],
            labels[i],
            class_names,
        )
    plt.tight_layout()
    return save_figure(fig, path)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Counts[true, predicted]."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def confusion_matrix_figure(labels, predicted, class_names):
    """Which classes the model mixes up on the test set (Shirt vs T-shirt/top, mostly)."""
    plt = pyplot()
    counts = confusion_matrix(labels, predicted, len(class_names))
    fig, ax = plt.subplots(figsize=(8, 7))
    im = ax.imshow(counts, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test set)")
    if len(class_names) > 20:  # past 20 classes, names and counts would be unreadable ink
        return fig
    ticks = range(len(class_names))
    names = [literal_text(name) for name in class_names]
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    threshold = counts.max() / 2
    for (i, j), n in np.ndenumerate(counts):
        ax.text(
            j,
            i,
            n,
            ha="center",
            va="center",
            fontsize=7,
            color="white" if n > threshold else "black",
        )
    return fig
