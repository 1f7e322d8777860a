"""MLM Studio's engine: data, models, training loop, evaluation, inference, checkpoints and export."""

from mlm_core.config import TrainConfig

__all__ = ["TrainConfig"]
