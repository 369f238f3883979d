"""Training's state after each finished epoch, for `train --resume`."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError
from toolkit.fsio import PLAIN_NAME, io_errors, read_json, write_json
from toolkit.model.config import TrainConfig
from toolkit.schema import matches


class Checkpoint:
    """Weights, optimizer state and history after each finished epoch, for `train --resume`.

    Each epoch's weights get their own file and state.json names the current one: replacing
    state.json is the commit point, so an interrupt during a save never mixes two epochs.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.meta = folder / "state.json"

    def load(self, model, config: TrainConfig) -> tuple[int, dict[str, list[float]]]:
        if not self.meta.exists():
            raise ToolkitError(
                f"{self.folder}: nothing to resume (no interrupted training here)", ExitCode.USAGE
            )
        corrupt = f"{self.meta}: corrupt checkpoint; train again without --resume"
        what = "checkpoint state (corrupt checkpoint; train again without --resume)"
        meta = read_json(self.meta, ExitCode.USAGE, what)
        if not self._valid(meta) or not (self.folder / meta["weights"]).is_file():
            raise ToolkitError(corrupt, ExitCode.USAGE)
        weights = self.folder / meta["weights"]
        if meta.get("config") != asdict(config):
            raise ToolkitError(
                f"{self.meta}: the interrupted run used other options {meta.get('config')}; "
                "resume with the same options",
                ExitCode.USAGE,
            )
        model.optimizer.build(model.trainable_variables)
        model.load_weights(weights)
        return meta["epochs_done"], meta["history"]

    @staticmethod
    def _valid(meta: object) -> bool:
        """state.json as `Checkpoint.save` writes it: a plain weights file name, a count of epochs
        and one list of numbers per metric, as long as that count."""
        return (
            isinstance(meta, dict)
            and matches(meta.get("weights"), str)
            and PLAIN_NAME.fullmatch(meta["weights"]) is not None
            and matches(meta.get("epochs_done"), int)
            and meta["epochs_done"] >= 1
            and matches(meta.get("history"), dict[str, list[float]])
            and all(len(values) == meta["epochs_done"] for values in meta["history"].values())
        )

    def save(self, model, config: TrainConfig, epochs_done: int, history) -> None:
        weights = f"epoch-{epochs_done}.weights.h5"
        try:
            with io_errors(self.folder / weights):
                self.folder.mkdir(parents=True, exist_ok=True)
                model.save_weights(self.folder / weights)
        except BaseException:
            (self.folder / weights).unlink(missing_ok=True)
            raise
        meta = {
            "config": asdict(config),
            "epochs_done": epochs_done,
            "history": history,
            "weights": weights,
        }
        write_json(self.meta, meta)
        for old in self.folder.glob("epoch-*.weights.h5"):
            if old.name != weights:
                old.unlink()

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
