"""The MLPerf Tiny reference models at their real size through every desktop format, as a user
runs the CLI: ResNet-8 from an .npz, visual wake words (MobileNetV1 0.25) from a folder of images
stored at another size, the anomaly autoencoder on float features. `make test` takes smaller
models through the same paths (tests/test_any_model.py); here the figures are each model's
export and compare seconds and how many rows were measured.
`python -m tests.bench.mlperf_tiny --out DIR` runs it alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from tests.bench.any_model import DESKTOP, _toolkit
from tests.bench.summary import Ratio

ITEMS = 256  # per split: enough for int8 calibration and a measured accuracy


def _resnet8(folder: Path) -> tuple[Path, Path]:
    from tests import models

    x_train, y_train = models.class_images(ITEMS, (32, 32, 3), 10, seed=1)
    x_test, y_test = models.class_images(ITEMS, (32, 32, 3), 10, seed=2)
    data = folder / "resnet8.npz"
    np.savez(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    models.resnet8().save(folder / "resnet8.keras")
    return folder / "resnet8.keras", data


def _wake_words(folder: Path) -> tuple[Path, Path]:
    from tests import models

    names = ["no person", "person"]
    for split, seed in (("train", 1), ("test", 2)):
        images, labels = models.class_images(ITEMS, (120, 120, 3), 2, seed=seed)
        models.write_image_folder(folder / "photos", images, labels, names, split)
    models.vww_mobilenet_v1().save(folder / "vww.keras")
    return folder / "vww.keras", folder / "photos"


def _autoencoder(folder: Path) -> tuple[Path, Path]:
    from tests import models

    features = np.random.default_rng(0).normal(0, 1, (ITEMS, 640)).astype(np.float32)
    data = folder / "features.npz"
    np.savez(data, x_train=features, x_test=features[::-1])
    models.anomaly_autoencoder().save(folder / "autoencoder.keras")
    return folder / "autoencoder.keras", data


MODELS = {"resnet8": _resnet8, "vww_mobilenet_v1": _wake_words, "autoencoder": _autoencoder}


def mlperf_tiny_figures(folder: Path) -> dict:
    """Each model exported to the desktop formats and compared in their runtimes."""
    from toolkit.process import import_tensorflow

    keras = import_tensorflow().keras
    figures = {}
    for name, write in MODELS.items():
        keras.utils.set_random_seed(0)
        model_path, data = write(folder)
        out = folder / name
        # Exit 5 is a variant left out (named in the manifest), not a failed bench.
        export_s, _ = _toolkit("export", "--out", out, "--model", model_path, "--data", data,
                               *DESKTOP, expect=(0, 5))  # fmt: skip
        compare_s, _ = _toolkit("compare", "--out", out, "--runs", "100")
        manifest = json.loads((out / "manifest.json").read_text())
        report = json.loads((out / "report" / "report.json").read_text())
        figures[name] = {
            "export_seconds": export_s,
            "compare_seconds": compare_s,
            "artifacts": len(manifest["artifacts"]),
            "left_out": [entry["artifact"] for entry in manifest["left_out"]],
            "rows_ok": sum(row["status"] == "ok" for row in report["rows"]),
            "rows": len(report["rows"]),
            # unsupported rows say why (e.g. no float16 kernels in TFLite Micro); failed ones broke
            "failed": [
                f"{row['artifact']} in {row['runtime']}: {row['error']}"
                for row in report["rows"]
                if row["status"] == "failed"
            ],
        }
    return figures


def mlperf_tiny_ratios(figures: dict) -> list[Ratio]:
    failed = [f"{name}: {row}" for name, model in figures.items() for row in model["failed"]]
    rows = sum(model["rows"] for model in figures.values())
    detail = ", ".join(
        f"{name} export {model['export_seconds']:.1f} s, compare {model['compare_seconds']:.1f} s"
        + (f", left out {' '.join(model['left_out'])}" if model["left_out"] else "")
        for name, model in figures.items()
    )
    return [
        Ratio(
            "mlperf_tiny_rows_not_failed",
            (rows - len(failed)) / rows if rows else 0.0,
            "1",
            rows > 0 and not failed,
            "rows measured or unsupported (with the reason) / rows planned, MLPerf Tiny models "
            "exported to every desktop format and compared in every runtime",
            "; ".join([detail, *failed]),
        )
    ]


def main(out: Annotated[Path, typer.Option(help="Folder for the models' files")]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    figures = mlperf_tiny_figures(out)
    print(json.dumps(figures, indent=2))
    from rich.console import Console

    from tests.bench.summary import ratio_table

    Console().print(ratio_table(mlperf_tiny_ratios(figures), "MLPerf Tiny"))


if __name__ == "__main__":
    typer.run(main)
