"""Training: architectures, the training loop, its checkpoint and its outputs."""

from toolkit.model.architectures import ARCHITECTURES, build_cnn, build_mlp, compile_model
from toolkit.model.config import TrainConfig, TrainResult
from toolkit.model.outputs import TRAINING_FIGURES, run_training, save_training_outputs
from toolkit.model.training import epoch_batches, epoch_order, seed_everything, train

__all__ = [
    "ARCHITECTURES",
    "TRAINING_FIGURES",
    "TrainConfig",
    "TrainResult",
    "build_cnn",
    "build_mlp",
    "compile_model",
    "epoch_batches",
    "epoch_order",
    "run_training",
    "save_training_outputs",
    "seed_everything",
    "train",
]
