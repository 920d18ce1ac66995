"""Training: one loop for one or many SAEs, schedules, liveness, checkpoints."""

from .config import TrainConfig
from .logger import TrainHistory
from .loop import train

__all__ = ["TrainConfig", "TrainHistory", "train"]
