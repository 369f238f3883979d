"""`make bench` part 5: the previous commit it times against, and the ratios it draws."""

import pytest

from tests.bench.pipeline import pipeline_ratios
from tests.bench.previous import PREVIOUS_COMMIT, side_folder, unpack_previous
from tests.bench.runs import BenchError


def test_the_previous_commit_unpacks_as_a_runnable_package(tmp_path):
    code = unpack_previous(tmp_path / "code")
    assert (code / "toolkit" / "__main__.py").is_file() and (code / "toolkit" / "cli.py").is_file()
    with pytest.raises(BenchError, match="cannot unpack commit no-such-commit"):
        unpack_previous(tmp_path / "other", "no-such-commit")


def test_a_side_folder_holds_only_the_model_and_its_training_record(tmp_path):
    out = tmp_path / "out"
    (out / "training").mkdir(parents=True)
    (out / "model.keras").write_bytes(b"model")
    (out / "training" / "metrics.json").write_text("{}")
    (out / "manifest.json").write_text("{}")
    folder = side_folder(out, "previous")
    (folder / "left.txt").write_text("from an earlier bench")
    folder = side_folder(out, "previous")  # made anew each run
    files = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert files == {"model.keras", "training/metrics.json"}


def _result(export_desktop, export_previous, compare, compare_previous):
    seconds = {
        "export": [9.0, 9.0],
        "export_desktop": export_desktop,
        "export_previous": export_previous,
        "compare": compare,
        "compare_previous": compare_previous,
    }
    medians = {f"median_{k}_seconds": sorted(v)[len(v) // 2] for k, v in seconds.items()}
    return {
        **{f"{k}_seconds": v for k, v in seconds.items()},
        **medians,
        "previous_commit": PREVIOUS_COMMIT,
        "report": {"rows": [{}] * 8},
    }


def test_ratios_against_the_previous_commit_divide_medians_and_judge_the_goals():
    ratios = {
        r.name: r for r in pipeline_ratios(_result([3.0, 4.0], [8.0, 6.0], [8.0, 6.0], [10.0, 8.0]))
    }
    assert ratios["export_vs_previous"].value == pytest.approx(4.0 / 8.0)
    assert ratios["export_vs_previous"].passed  # 0.5 <= 0.6
    assert ratios["compare_vs_previous"].value == pytest.approx(8.0 / 10.0)
    assert ratios["compare_vs_previous"].passed is False  # 0.8 > 0.7
    assert "4.00 s vs 8.00 s" in ratios["export_vs_previous"].detail
