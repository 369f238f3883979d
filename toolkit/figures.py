"""The tutorial's figures, written as PNG files (matplotlib's Agg backend: no screen needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.artifacts import atomic_path


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported only when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Writes `fig` as a PNG atomically and frees it (pyplot keeps every open figure alive)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    pyplot().close(fig)
    return path


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


def plot_sample_image(image: np.ndarray, path: Path) -> Path:
    """The tutorial's first look at a training image, raw pixel values with a colour bar."""
    plt = pyplot()
    fig, ax = plt.subplots()
    shown = show_item(ax, image, cmap=None)
    if shown is not None and np.asarray(image).squeeze().ndim == 2:
        fig.colorbar(shown)
    return save_figure(fig, path)


def plot_class_grid(images: np.ndarray, labels: np.ndarray, class_names, path: Path) -> Path:
    """The first 25 training images with their class names."""
    plt = pyplot()
    fig = plt.figure(figsize=(10, 10))
    for i in range(min(25, len(images))):
        plt.subplot(5, 5, i + 1)
        plt.xticks([])
        plt.yticks([])
        show_item(plt.gca(), images[i])
        plt.xlabel(class_names[labels[i]])
    return save_figure(fig, path)


def plot_training_curves(history: dict[str, list[float]], path: Path) -> Path:
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
    return save_figure(fig, path)


def draw_prediction(ax_image, ax_bars, image, probabilities, true_label, class_names) -> None:
    """The tutorial's per-image panel: the image with predicted/true label, and the ten bars."""
    predicted = int(np.argmax(probabilities))
    colour = "blue" if true_label is None or predicted == true_label else "red"
    show_item(ax_image, image)
    ax_image.set_xticks([])
    ax_image.set_yticks([])
    truth = "" if true_label is None else f" ({class_names[true_label]})"
    ax_image.set_xlabel(
        f"{class_names[predicted]} {100 * np.max(probabilities):2.0f}%{truth}", color=colour
    )
    ax_bars.grid(False)
    ax_bars.set_xticks(range(len(class_names)) if len(class_names) <= 20 else [])
    ax_bars.set_yticks([])
    bars = ax_bars.bar(range(len(class_names)), probabilities, color="#777777")
    ax_bars.set_ylim([0, 1])
    bars[predicted].set_color("red")
    if true_label is not None:
        bars[true_label].set_color("blue")


def plot_predictions(images, probabilities, labels, class_names, path: Path, rows=5, cols=3):
    """The tutorial's grid: each test image beside its probability bars (right blue, wrong red)."""
    plt = pyplot()
    count = min(rows * cols, len(images))
    fig = plt.figure(figsize=(2 * 2 * cols, 2 * rows))
    for i in range(count):
        draw_prediction(
            plt.subplot(rows, 2 * cols, 2 * i + 1),
            plt.subplot(rows, 2 * cols, 2 * i + 2),
            images[i],
            probabilities[i],
            int(labels[i]),
            class_names,
        )
    plt.tight_layout()
    return save_figure(fig, path)


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


def plot_confusion_matrix(labels, predicted, class_names, path: Path) -> Path:
    """Which classes the model mixes up on the test set (Shirt vs T-shirt/top, mostly)."""
    plt = pyplot()
    counts = confusion_matrix(labels, predicted, len(class_names))
    fig, ax = plt.subplots(figsize=(8, 7))
    im = ax.imshow(counts, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test set)")
    if len(class_names) > 20:  # past 20 classes, names and counts would be unreadable ink
        return save_figure(fig, path)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
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
    return save_figure(fig, path)


def plot_training_figures(dataset, history, test_probabilities, folder: Path) -> list[Path]:
    """All five training figures into `folder`."""
    predicted = np.argmax(test_probabilities, axis=1)
    names = dataset.class_names or [str(i) for i in range(test_probabilities.shape[1])]
    return [
        plot_sample_image(dataset.train_images[0], folder / "sample_image.png"),
        plot_class_grid(
            dataset.train_images,
            dataset.train_labels,
            names,
            folder / "class_grid.png",
        ),
        plot_training_curves(history, folder / "training_curves.png"),
        plot_predictions(
            dataset.test_images,
            test_probabilities,
            dataset.test_labels,
            names,
            folder / "predictions.png",
        ),
        plot_confusion_matrix(
            dataset.test_labels, predicted, names, folder / "confusion_matrix.png"
        ),
    ]
