"""MLM Studio's engine: data, models, training loop, evaluation, inference, checkpoints and export."""

from .config import TrainConfig

__all__ = ["TrainConfig"]
