"""Shared fixtures: the real dataset and a tiny model trained once per test session."""

from pathlib import Path

import pytest

from toolkit import import_tensorflow

TINY = {"limit": 2000, "epochs": 2}


@pytest.fixture(scope="session")
def dataset():
    from toolkit.data import load_dataset

    return load_dataset()


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, dataset) -> Path:
    """An output folder holding a tiny trained tutorial model and its training outputs."""
    from toolkit.model import TrainConfig, save_training_outputs, train

    import_tensorflow()
    out = tmp_path_factory.mktemp("trained")
    result = train(dataset, TrainConfig(**TINY), out / "training" / "checkpoint")
    save_training_outputs(out, dataset, result)
    return out


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory, trained_dir) -> Path:
    """The tiny model exported to every registered format, with its manifest."""
    import shutil

    from toolkit.export import export_artifacts

    out = tmp_path_factory.mktemp("exported") / "out"
    shutil.copytree(trained_dir, out)
    export_artifacts(out)
    return out


@pytest.fixture
def exported_copy(exported_dir, tmp_path) -> Path:
    """A private copy of the exported folder, for tests that change or break files in it."""
    import shutil

    return Path(shutil.copytree(exported_dir, tmp_path / "exported_copy"))
