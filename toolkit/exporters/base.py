"""What an export format declares (variants, file names, runtime, tolerance) and the context
every exporter shares, in which each intermediate (SavedModel, float ONNX graph, converted
TFLite file) is built once per export."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from toolkit.errors import ExitCode, ToolkitError
from toolkit.formats.keras import serving_function
from toolkit.metrics import Comparison


@dataclass(frozen=True)
class Tolerance:
    """How close an artifact must stay to the reference, in the comparator's metric names.

    `min_agreement` judges class scores; `min_snr_db` judges outputs that are not class scores
    (a reconstruction, an embedding); `max_abs_diff` judges both.
    """

    max_abs_diff: float | None = None
    min_agreement: float | None = None
    min_snr_db: float | None = None
    max_accuracy_drop: float | None = None  # points below the reference, when labels exist

    def failures(self, figures: Comparison, reference_accuracy: float | None = None) -> list[str]:
        """One "metric measured vs bound" phrase per bound the figures miss."""
        problems = []
        drop = None
        if figures.accuracy is not None and reference_accuracy is not None:
            drop = 100 * (reference_accuracy - figures.accuracy)
        if (
            self.max_accuracy_drop is not None
            and drop is not None
            and drop > self.max_accuracy_drop
        ):
            problems.append(f"accuracy drop {drop:.2f} pt > {self.max_accuracy_drop:g} pt")
        if self.max_abs_diff is not None and not figures.max_abs_diff <= self.max_abs_diff:
            problems.append(f"max_abs_diff {figures.max_abs_diff:.3g} > {self.max_abs_diff:g}")
        if figures.agreement is not None:
            if self.min_agreement is not None and not figures.agreement >= self.min_agreement:
                problems.append(f"agreement {figures.agreement:.4f} < {self.min_agreement:g}")
        elif self.min_snr_db is not None and not figures.snr_db >= self.min_snr_db:
            problems.append(f"snr_db {figures.snr_db:.1f} < {self.min_snr_db:g}")
        return problems

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


class ExportContext:
    """The model, its calibration data and the intermediates its variants share.

    `shared(key, build)` builds a value the first time a variant asks and hands the same value
    to every later variant, so five TFLite files read one SavedModel and both ONNX files one
    tf2onnx graph. Files it builds live in `build_dir` (inside the export's staging folder).
    """

    def __init__(
        self,
        model,
        source: Path,
        calibration: np.ndarray,
        opset: int,
        build_dir: Path,
        serving=None,
        batch: int | None = 1,
        c_name: str = "model",
        converter=None,
    ) -> None:
        self.model = model
        self.source = source  # the reference .keras file
        self.calibration = calibration  # model-ready float32 inputs
        self.opset = opset
        self.build_dir = build_dir
        self.batch = batch  # the TFLite files' fixed batch; None keeps it dynamic
        self.c_name = c_name  # what C symbols are named after (the model file's stem)
        # Where conversions run (exporters.conversion.ConverterProcess); None: in this process.
        self.converter = converter
        self.planned: set[str] = set()  # the files this export writes, for conversions ahead
        self.committed: dict[str, Path] = {}  # declared file name -> the validated file for it
        self.facts: dict[str, dict] = {}  # file name -> Artifact fields its writer found out
        self._shared: dict[str, object] = {} if serving is None else {"serving": serving}

    def serving(self):
        """The model's `serving_function`, traced once for the reference outputs, the SavedModel
        and tf2onnx: every trace costs a graph construction."""
        return self.shared("serving", lambda: serving_function(self.model))

    def shared(self, key: str, build: Callable[[], object]):
        if key not in self._shared:
            self._shared[key] = build()
        return self._shared[key]

    def shared_path(self, name: str, write: Callable[[Path], None]) -> Path:
        """A file or folder `name` in build_dir, written once by `write(path)`."""

        def build() -> Path:
            path = self.build_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
            return path

        return self.shared(f"path:{name}", build)

    def committed_file(self, name: str) -> Path:
        """The validated file this export commits for `name`: the file itself, or the
        mixed-precision file that replaced it. A file made from it must hold those bytes."""
        if name not in self.committed:
            raise ToolkitError(
                f"{name} is not committed by this export (left out or not selected)",
                ExitCode.CONVERSION,
            )
        return self.committed[name]

    def made_from_committed(self, variant: ExportVariant) -> ExportVariant:
        """`variant` named after the file its `source` was committed as: a C array of
        model_int8.tflite becomes model_mixed_int8.cc when the mixed file replaced it."""
        if variant.source is None:
            return variant
        try:
            actual = self.committed_file(variant.source).stem
        except ToolkitError as exc:
            raise ToolkitError(f"{variant.filename}: not made: {exc}", exc.code) from None
        declared = Path(variant.source).stem
        if actual == declared:
            return variant
        return replace(
            variant,
            filename=variant.filename.replace(declared, actual, 1),
            variant=variant.variant.replace(_variant_of(declared), _variant_of(actual), 1),
        )


def _variant_of(stem: str) -> str:
    return stem.removeprefix("model_")


@dataclass(frozen=True)
class MixedPrecision:
    """How an int8 variant measures its per-layer error and rebuilds itself with layers kept
    in float: `debugger(context)` has `.errors` (a LayerErrors), `build(debugger, layers,
    path)` writes the model with `layers` in float."""

    debugger: Callable[[ExportContext], object]
    build: Callable[[object, tuple[str, ...], Path], None]
    filename: str  # the mixed model's file: never the `int8` name (it is not full integer)


@dataclass(frozen=True)
class Retry:
    """A second way to write a variant, tried when the first misses its tolerance and before any
    layer is kept in float: the same file name, still full integer. `name` is the manifest's
    record of it (`quantization.<name>`: true when the second way's weights were kept).
    `build_mixed` is MixedPrecision.build the second way, for a search that starts from it."""

    name: str
    write: Callable[[object, Path, ExportContext], None]
    build_mixed: Callable[[object, tuple[str, ...], Path], None]


@dataclass(frozen=True)
class ExportVariant:
    """One artifact a format produces."""

    format: str
    variant: str
    filename: str
    runtime: str | None  # key in toolkit.runners.RUNNERS; None for a file nothing runs
    tolerance: Tolerance
    write: Callable[[object, Path, ExportContext], None]  # (keras model, target path, context)
    mixed_precision: MixedPrecision | None = None  # int8 variants: per-layer error and fallback
    source: str | None = None  # the validated file it is made from (a C array's .tflite)
    retry: Retry | None = None  # ONNX int8: 7-bit weights (reduce_range) for CPUs without VNNI


def committed_names(variants: list[ExportVariant]) -> set[str]:
    """Every file name the variants may be committed under: their own, a mixed model's, and
    that of a file made from a mixed model (model_mixed_int8.cc)."""
    mixed = {v.filename: v.mixed_precision.filename for v in variants if v.mixed_precision}
    for variant in variants:  # in registry order: a file's source comes before it
        if variant.source in mixed:
            declared, actual = Path(variant.source).stem, Path(mixed[variant.source]).stem
            mixed[variant.filename] = variant.filename.replace(declared, actual, 1)
    return {v.filename for v in variants} | set(mixed.values())
