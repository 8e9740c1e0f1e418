"""Train stage: Ray Train TorchTrainer + DeepSpeed ZeRO -> an HF checkpoint."""

from agentray.train.config import TrainConfig

__all__ = ["TrainConfig", "run_train"]


def __getattr__(name: str):
    # run_train pulls in Ray/torch; import it lazily so the config stays light.
    if name == "run_train":
        from agentray.train.trainer import run_train

        return run_train
    raise AttributeError(name)
