"""One trainer for every scheme and attack, with hooks for watermarks to take part."""
from nnmark.training.hooks import MixInSamples, StepOutputs, TrainingHook
from nnmark.training.trainer import EpochRecord, TrainConfig, TrainResult, fit

__all__ = ["EpochRecord", "MixInSamples", "StepOutputs", "TrainConfig", "TrainResult", "TrainingHook", "fit"]
