"""The export pipeline end to end on a trained model: every variant written, validated,
listed in the manifest; the per-format unit tests live in tests/exporters/."""

import json

import pytest
from typer.testing import CliRunner

from toolkit.arrays import only
from toolkit.cli import app
from toolkit.data import normalize
from toolkit.exporters import EXPORTERS
from toolkit.exporting.pipeline import selected_variants
from toolkit.exporting.validation import VALIDATION_IMAGES
from toolkit.formats.keras import load_keras_model
from toolkit.fsio import sha256_path
from toolkit.metrics import compare_outputs
from toolkit.runners import RUNNERS
from toolkit.store import load_manifest, verify_manifest

ALL_VARIANTS = selected_variants(["all"])
# C sources are checked byte for byte when written; no runtime runs them.
RUN_VARIANTS = [v for v in ALL_VARIANTS if v.runtime is not None]
runner = CliRunner()


@pytest.mark.parametrize("variant", RUN_VARIANTS, ids=lambda v: v.filename)
def test_variant_round_trip_within_tolerance(exported_dir, dataset, variant):
    """Reload in the device runtime and compare with the Keras reference independently."""
    images = normalize(dataset.test_images[:VALIDATION_IMAGES])
    with RUNNERS["keras"](exported_dir / "model.keras") as reference_runner:
        reference = only(reference_runner.predict(images))
    with RUNNERS[variant.runtime](exported_dir / variant.filename) as artifact_runner:
        probabilities = only(artifact_runner.predict(images))
    assert probabilities.shape == (VALIDATION_IMAGES, 10)
    figures = compare_outputs(probabilities, reference)
    assert variant.tolerance.failures(figures) == []
    recorded = load_manifest(exported_dir).artifact(variant.filename).validation
    assert recorded["images"] == VALIDATION_IMAGES
    assert recorded["agreement"] == pytest.approx(figures.agreement, abs=0.002)
    assert recorded["tolerance"] == variant.tolerance.to_json()
    assert {"max_abs_diff", "rmse", "snr_db", "cosine", "flipped"} <= set(recorded)


def test_manifest_lists_every_artifact_with_matching_checksums(exported_dir):
    data = json.loads((exported_dir / "manifest.json").read_text())
    for key in ("class_names", "preprocessing", "source_model_sha256", "versions", "created"):
        assert key in data
    assert len(data["class_names"]) == 10
    names = [a["name"] for a in data["artifacts"]]
    assert sorted(names) == sorted(v.filename for v in ALL_VARIANTS)
    for entry in data["artifacts"]:
        assert entry["sha256"] == sha256_path(exported_dir / entry["path"])
        assert entry["size_bytes"] > 0
        if entry["runtime"] is not None:
            assert entry["inputs"][0]["name"] == "images"
            assert entry["outputs"][0]["name"] == "probabilities"
    int8 = next(a for a in data["artifacts"] if a["name"] == "model_int8.tflite")
    assert int8["inputs"][0]["quantization"]["scale"] > 0
    assert verify_manifest(exported_dir, load_manifest(exported_dir)) == []


def test_verify_catches_a_changed_byte(exported_dir, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(exported_dir, out)
    assert runner.invoke(app, ["verify", "--out", str(out)]).exit_code == 0
    target = out / "model_float32.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    (out / "model_int8.tflite").unlink()
    result = runner.invoke(app, ["verify", "--out", str(out)])
    assert result.exit_code == 4
    assert "model_float32.onnx: changed" in result.output
    assert "model_int8.tflite: missing" in result.output


def test_channel_last_input_model_exports(tmp_path, dataset):
    """A model trained elsewhere with (28, 28, 1) input exports and validates too."""
    import keras

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    # 126 steps: one traced graph costs less than running them eagerly
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=False)
    # Trained enough that classes are clear-cut: int8 agreement is meaningless on a coin toss.
    model.fit(
        normalize(dataset.train_images[:2000])[..., None],
        dataset.train_labels[:2000],
        epochs=2,
        verbose=0,
    )
    source = tmp_path / "elsewhere.keras"
    model.save(source)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["export", "--out", str(out), "--model", str(source), "--no-figures"]
    )
    assert result.exit_code == 0, result.output
    manifest = load_manifest(out)
    assert len(manifest.artifacts) == len(ALL_VARIANTS)
    assert manifest.artifact("model_float32.onnx").inputs[0]["shape"] == ["batch", 28, 28, 1]


def test_format_option_writes_only_that_format_and_keeps_the_rest(exported_dir, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(exported_dir, out)
    before = load_manifest(out)
    layers = out / "quantization"
    assert {"model_int8.onnx.png", "model_int8.tflite.png"} <= {p.name for p in layers.iterdir()}
    (layers / "model_int8.onnx.json").write_text("{}")  # to see it rewritten
    command = ["export", "--out", str(out), "--format", "onnx", "--no-figures"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert result.output.count(".onnx") >= 2 and ".tflite" not in result.output
    after = load_manifest(out)
    assert {a.name for a in after.artifacts} == {a.name for a in before.artifacts}
    assert verify_manifest(out, after) == []
    # --no-figures: the rewritten file's record, no plot (the old one described the old file);
    # the files it did not rewrite keep theirs
    assert json.loads((layers / "model_int8.onnx.json").read_text())["tensors"]
    assert not (layers / "model_int8.onnx.png").exists()
    assert (layers / "model_int8.tflite.png").is_file()


def test_registry_formats_are_the_cli_choices(tmp_path):
    from toolkit.cli import Format

    assert [f.value for f in Format] == ["all", *EXPORTERS]
    result = runner.invoke(app, ["export", "--out", str(tmp_path), "--format", "tfjs"])
    assert result.exit_code == 2


def test_a_partial_export_into_a_new_folder_still_lists_the_reference(trained_dir, tmp_path):
    out = tmp_path / "new"
    args = ["export", "--out", str(out), "--model", str(trained_dir / "model.keras")]
    result = runner.invoke(app, [*args, "--format", "tflite", "--no-validate", "--no-figures"])
    assert result.exit_code == 0, result.output
    manifest = load_manifest(out)
    assert {a.name for a in manifest.artifacts} == {"model.keras"} | {
        v.filename for v in EXPORTERS["tflite"]
    }
    # --no-validate still records the tensors' quantization for the runners.
    assert manifest.artifact("model_int8.tflite").inputs[0]["quantization"]["scale"] > 0
    # Provenance comes from training/metrics.json only when that training made this model.
    assert manifest.training.get("seed") is None


def test_manifest_records_training_provenance_for_its_own_model(exported_dir):
    assert load_manifest(exported_dir).training["seed"] == 0


def test_int8_variants_write_per_layer_records_and_need_no_mixed_model(exported_dir):
    manifest = load_manifest(exported_dir)
    # The model's own names: Keras numbers default names per process (`dense_3` after others).
    layers = {layer.name for layer in load_keras_model(exported_dir / "model.keras").layers}
    for name in ("model_int8.tflite", "model_int8.onnx"):
        record = exported_dir / manifest.artifact(name).quantization["per_layer"]
        content = json.loads(record.read_text())
        assert content["artifact"] == name and content["tensors"]
        assert {t["layer"] for t in content["tensors"]} <= layers
        assert record.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert not any(a.variant == "mixed_int8" for a in manifest.artifacts)
    assert verify_manifest(exported_dir, manifest) == []
