"""Training vidx's own small CLIP on the synthetic captioned world (`vidx train-tiny`)."""

from vidx.train.loop import TrainConfig, TrainResult, build_model, save_checkpoint, train_tiny

__all__ = ["TrainConfig", "TrainResult", "build_model", "save_checkpoint", "train_tiny"]
