"""Train stage: Ray Train TorchTrainer + DeepSpeed ZeRO -> an HF checkpoint."""

from agentray.registry import lazy_exports
from agentray.train.config import TrainConfig

__all__ = ["TrainConfig", "run_train"]

__getattr__ = lazy_exports({"run_train": "agentray.train.trainer:run_train"})
