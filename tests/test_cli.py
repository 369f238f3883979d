"""The command line: help without TensorFlow, train through the CLI, exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from toolkit.cli import app

runner = CliRunner()
COMMANDS = ["train", "export", "compare", "report", "predict", "verify"]


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from toolkit.cli import app\n"
        f"for args in [['--help']] + [[c, '--help'] for c in {COMMANDS!r}]:\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'onnxruntime', 'ai_edge_litert', 'tf2onnx')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_writes_every_output(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["train", "--out", str(out), "--limit", "1000", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    metrics = json.loads((out / "training" / "metrics.json").read_text())
    for key in (
        "test_accuracy",
        "test_loss",
        "train_seconds",
        "epochs",
        "batch_size",
        "seed",
        "arch",
        "versions",
    ):
        assert key in metrics
    assert 0.5 < metrics["test_accuracy"] <= 1.0  # 2 epochs on 1,000 images reach about 0.7
    assert metrics["epochs"] == 2 and metrics["train_images"] == 1000
    assert metrics["dataset"]["verified"] is True
    history = json.loads((out / "training" / "history.json").read_text())
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]
    csv_lines = (out / "training" / "history.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,") and len(csv_lines) == 3
    for name in (
        "sample_image",
        "class_grid",
        "training_curves",
        "predictions",
        "confusion_matrix",
    ):
        png = out / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 5_000
    assert (out / "model.keras").stat().st_size > 100_000
    assert not list(out.rglob(".*tmp*"))


def test_train_without_figures_writes_no_plots_and_removes_stale_ones(trained_dir, tmp_path):
    import shutil

    from toolkit.model import TRAINING_FIGURES

    out = Path(shutil.copytree(trained_dir, tmp_path / "out"))
    (out / "plots").mkdir(exist_ok=True)
    for name in TRAINING_FIGURES[1:]:  # an earlier run's
        (out / "plots" / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    victim = tmp_path / "victim.png"  # a link planted among them: removed, never followed
    victim.write_bytes(b"precious")
    (out / "plots" / TRAINING_FIGURES[0]).symlink_to(victim)
    result = runner.invoke(
        app, ["train", "--out", str(out), "--limit", "100", "--epochs", "1", "--no-figures"]
    )
    assert result.exit_code == 0, result.output
    # plots of another model must not sit beside the new one as if they were its own
    assert not any(os.path.lexists(out / "plots" / name) for name in TRAINING_FIGURES)
    assert victim.read_bytes() == b"precious"
    assert json.loads((out / "training" / "metrics.json").read_text())["train_images"] == 100


def test_option_ranges_are_usage_errors(tmp_path):
    for args in (["--epochs", "0"], ["--batch-size", "0"], ["--limit", "0"], ["--arch", "rnn"]):
        result = runner.invoke(app, ["train", "--out", str(tmp_path), *args])
        assert result.exit_code == 2, args


def test_read_only_commands_do_not_create_a_missing_out_folder(tmp_path):
    missing = tmp_path / "nowhere"
    for command in ("verify", "compare"):
        result = runner.invoke(app, [command, "--out", str(missing)])
        assert result.exit_code == 4, result.output
        assert f"{missing}: no such folder" in result.output
        assert not missing.exists()


def test_an_unexpected_exception_is_one_line_and_exit_70(tmp_path, monkeypatch):
    import toolkit.store

    def broken(out):
        raise RuntimeError("something a library got wrong\nsecond line")

    (tmp_path / "manifest.json").write_text("{}")
    monkeypatch.setattr(toolkit.store, "load_manifest", broken)
    result = runner.invoke(app, ["verify", "--out", str(tmp_path)])
    assert result.exit_code == 70
    assert "internal error: RuntimeError: something a library got wrong" in result.output
    assert "second line" not in result.output and "Traceback" not in result.output


def test_processes_the_command_spawns_do_not_import_the_cli():
    """A spawned process re-runs the console script as __mp_main__ before its target."""
    script = Path(sys.executable).with_name("toolkit")
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(script)!r}, run_name='__mp_main__')\n"
        "heavy = [m for m in ('toolkit.cli', 'typer', 'rich', 'toolkit.api') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_infinite_number_is_a_usage_error_naming_the_option(tmp_path):
    """The CLI builds the same options object as the API: `inf` passes typer's `min=0` but
    would write a bare Infinity into manifest.json."""
    for command in ("export", "compare"):
        args = [command, "--out", str(tmp_path / "out"), "--max-accuracy-drop", "inf"]
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "--max-accuracy-drop" in result.output and "finite" in result.output
    assert not (tmp_path / "out").exists()
