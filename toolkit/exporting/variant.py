"""One variant's life in an export: written, validated, rebuilt with layers in float when
full int8 misses its tolerance, and described for the manifest."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from toolkit.cpu import int8_host
from toolkit.errors import ExitCode, ToolkitError, first_line, warn
from toolkit.exporters import ExportVariant
from toolkit.exporting.validation import (
    Judgement,
    Validator,
    judged_figure,
    judged_metric,
    validation_failure,
)
from toolkit.fsio import disk_problem, sha256_path, size_bytes
from toolkit.process import quiet_stderr
from toolkit.quantization.node_data import NODE_DATA_SUFFIX, NodeDataJobs
from toolkit.quantization.records import worst_layers_message
from toolkit.results import finite_or_none
from toolkit.store import Artifact

QUANTIZATION_DIR = "quantization"  # per-layer int8 error: <artifact>.json and .png


class VariantExport:
    """Writes one variant into staging and judges it; an int8 variant also writes its per-layer
    error and, when it misses its tolerance with mixed precision on, is replaced by a model
    with the most damaging layers kept in float."""

    def __init__(self, folder: Path, context, validator: Validator, mixed: str, out: Path, figures):
        self.folder, self.context, self.validator = folder, context, validator
        self.mixed, self.out = mixed, out
        # per-layer plots, drawn in a figure process; None: the records only (--no-figures)
        self.figures, self.plots = figures, []
        self.node_data = NodeDataJobs()  # Model Explorer files, written by child processes

    def write_plots(self) -> None:
        """Waits for the per-layer plots and writes them beside their records."""
        from toolkit.figures import write_png

        if self.figures is not None:
            for path, png in zip(self.plots, self.figures.pngs(), strict=True):
                write_png(png, path)
        for problem in self.node_data.finish():
            warn(problem)

    def run(self, variant: ExportVariant) -> Artifact:
        target = self.folder / variant.filename
        try:
            self._write(variant, target)
            errors = self._layer_errors(variant)
            judged = self.validator.judge(variant, target)
            judged, retried, variant = self._retry(variant, target, judged)
            if not judged.problems:
                record = {**self._record(variant, errors), **retried}
                return self._artifact(variant, target, judged, record)
            count = self.validator.count
            if errors is None or self.mixed == "off":
                worst = [worst_layers_message(errors)] if errors is not None else []
                raise validation_failure(variant.filename, count, [*judged.problems, *worst])
            artifact = self._mixed(variant, target, judged, errors)
            artifact.quantization.update(retried)
        except ToolkitError:
            _remove(target)
            raise
        _remove(target)  # replaced by the mixed model
        return artifact

    def _retry(self, variant: ExportVariant, target: Path, judged: Judgement):
        """(verdict, manifest record, variant to search from) after the variant's second way of
        writing (ONNX int8: 7-bit weights) when the first missed its tolerance. The second file
        is kept when it passes; when both miss, the mixed-precision search starts from the one
        closer to the reference by the judged metric, built its way. Both are recorded."""
        retry = variant.retry
        if retry is None or not judged.problems:
            return judged, ({retry.name: False} if retry else {}), variant
        first = target.with_name(f".first-{target.name}")
        os.replace(target, first)
        try:
            self._write(replace(variant, write=retry.write), target)
            again = self.validator.judge(variant, target)
        except ToolkitError as exc:
            if exc.code != ExitCode.CONVERSION:
                raise
            again = Judgement({}, [str(exc)], [], [])
        if not again.problems or judged_figure(again.figures) > judged_figure(judged.figures):
            first.unlink()
            spec = variant.mixed_precision
            spec = spec and replace(spec, build=retry.build_mixed)
            second_way = replace(variant, write=retry.write, mixed_precision=spec)
            return again, {retry.name: True, f"without_{retry.name}": judged.figures}, second_way
        _remove(target)
        os.replace(first, target)
        missed = {"validation": again.figures, "problems": again.problems}
        return judged, {retry.name: False, f"{retry.name}_missed": missed}, variant

    def _write(self, variant: ExportVariant, target: Path) -> None:
        """Runs the converter; its own error becomes a one-line exit-5 reason."""
        try:
            with quiet_stderr():
                variant.write(self.context.model, target, self.context)
        except ToolkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - converters raise anything
            if disk := disk_problem(exc):
                name = self.out / variant.filename
                raise ToolkitError(f"{name}: cannot write: {disk}", ExitCode.IO) from None
            raise ToolkitError(
                f"{variant.filename}: conversion failed: {first_line(exc)}", ExitCode.CONVERSION
            ) from None

    def _layer_errors(self, variant: ExportVariant):
        """The variant's per-layer int8 error, written as OUT/quantization/<artifact>.json and
        .png (None for a variant that is not int8)."""
        if variant.mixed_precision is None:
            return None
        from toolkit.quantization.records import layer_errors_figure, layer_errors_json

        try:
            with quiet_stderr():
                errors = variant.mixed_precision.debugger(self.context).errors
        except Exception as exc:  # noqa: BLE001 - a debugger failing costs the record, not the file
            warn(f"{variant.filename}: no per-layer error ({first_line(exc)})")
            return None
        folder = self.folder / QUANTIZATION_DIR
        folder.mkdir(exist_ok=True)
        record = folder / f"{variant.filename}.json"
        record.write_text(json.dumps(finite_or_none(layer_errors_json(variant.filename, errors))))
        if self.figures is not None:
            self.figures.draw(layer_errors_figure, errors, variant.filename)
            self.plots.append(record.with_suffix(".png"))
        if variant.format == "tflite":
            target = folder / f"{variant.filename}{NODE_DATA_SUFFIX}"
            self.node_data.start(record, self.folder / variant.filename, target, errors.plot_metric)
        return errors

    def _record(self, variant: ExportVariant, errors, **more) -> dict:
        if errors is None:
            return {}
        record = {"per_layer": f"{QUANTIZATION_DIR}/{variant.filename}.json", **more}
        if variant.format == "tflite":
            node_data = f"{QUANTIZATION_DIR}/{variant.filename}{NODE_DATA_SUFFIX}"
            self.node_data.describe(node_data, record)
        return record

    def _mixed(self, variant: ExportVariant, target: Path, judged: Judgement, errors) -> Artifact:
        """Keeps the most damaging layers in float, one more at a time, until the tolerance
        holds; the full-integer file is left out (a mixed model must never carry its name)."""
        from toolkit.quantization.search import search_float_layers

        spec = variant.mixed_precision
        mixed = replace(variant, variant="mixed_int8", filename=spec.filename)
        path = self.folder / spec.filename
        debugger = spec.debugger(self.context)

        def build(float_layers):
            if not float_layers:
                return target
            try:
                with quiet_stderr():
                    spec.build(debugger, tuple(float_layers), path)
            except Exception as exc:  # noqa: BLE001 - e.g. a debugger left no layer in int8
                path.unlink(missing_ok=True)
                reason = (
                    f"unreachable: still failing with {', '.join(float_layers[:-1])} in float, "
                    f"and no model builds with {float_layers[-1]} too ({first_line(exc)})"
                )
                raise validation_failure(
                    variant.filename, self.validator.count, [*judged.problems, reason]
                ) from None
            return path

        def validate(candidate):
            verdict = self.validator.judge(mixed if candidate == path else variant, candidate)
            return verdict, not verdict.problems

        result = search_float_layers(errors.ranked_layers(), build, validate)
        if not result.passed:
            path.unlink(missing_ok=True)
            raise validation_failure(
                variant.filename,
                self.validator.count,
                [*judged.problems, "still failing with every quantizable layer kept in float"],
            )
        final = result.mixed
        warn(
            f"{variant.filename} missed its tolerance ({'; '.join(judged.problems)}): replaced "
            f"by {spec.filename} with {', '.join(result.float_layers)} kept in float "
            f"({judged_metric(final.figures)})"
        )
        record = self._record(
            variant,
            errors,
            float_layers=list(result.float_layers),
            replaces={"artifact": variant.filename, "validation": judged.figures},
        )
        return self._artifact(mixed, path, final, record)

    def _artifact(self, variant, path: Path, judged: Judgement, quantization: dict) -> Artifact:
        return Artifact(
            name=variant.filename,
            format=variant.format,
            variant=variant.variant,
            path=variant.filename,
            runtime=variant.runtime,
            sha256=sha256_path(path),
            size_bytes=size_bytes(path),
            inputs=judged.inputs,
            outputs=judged.outputs,
            # Where it was validated: int8 verdicts depend on the CPU's instruction sets.
            validation={**judged.figures, "host": int8_host()} if judged.figures else {},
            compatibility=_compatibility(path),
            quantization=quantization,
            batch=_fixed_batch(judged.inputs) if judged.inputs else self._source_batch(variant),
            made_from=self.context.committed_file(variant.source).name if variant.source else None,
            npu=self.context.facts.get(variant.filename, {}).get("npu", {}),
        )

    def _source_batch(self, variant) -> int | None:
        """A file nothing runs (a C array) has the batch of the file it is made from."""
        return self.context.batch if variant.source else None

    def carry_quantization_records(self, out: Path) -> list[str]:
        """The quantization/ folder to commit: this export's records plus the earlier ones of
        variants it did not rewrite (a partial export keeps the others' records). None of a
        rewritten variant's earlier files is kept, even one this export did not write (its plot
        under --no-figures, node data without Model Explorer): it would describe the old file."""
        import shutil

        staged, earlier = self.folder / QUANTIZATION_DIR, out / QUANTIZATION_DIR
        if not staged.is_dir():
            return []
        rewritten = {_recorded_artifact(record.name) for record in staged.iterdir()}
        if earlier.is_dir():
            for record in earlier.iterdir():
                if record.is_file() and _recorded_artifact(record.name) not in rewritten:
                    shutil.copyfile(record, staged / record.name)
        return [QUANTIZATION_DIR]


def _recorded_artifact(name: str) -> str:
    """The artifact a quantization/ file describes: "model_int8.tflite" for its .json, .png and
    node data."""
    for suffix in (NODE_DATA_SUFFIX, ".json", ".png"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _fixed_batch(inputs: list[dict]) -> int | None:
    """The batch fixed in the first input's shape; None when it is dynamic."""
    shape = inputs[0].get("shape") or [None]
    return shape[0] if isinstance(shape[0], int) else None


def _compatibility(path: Path) -> dict:
    """GPU-delegate and TFLite Micro compatibility of a .tflite file; nothing for other files."""
    if path.suffix != ".tflite":
        return {}
    from toolkit.formats.tflite import tflite_compatibility

    with quiet_stderr():
        return tflite_compatibility(path)


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
