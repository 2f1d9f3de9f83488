"""One trainer for every scheme and attack, with hooks for watermarks to take part."""
from nnmark.training.hooks import MixInSamples, TrainingHook
from nnmark.training.trainer import (
    EpochRecord,
    TrainConfig,
    TrainResult,
    evaluate,
    fit,
    predict_logits,
    resolve_device,
)

__all__ = ["EpochRecord", "MixInSamples", "TrainConfig", "TrainResult", "TrainingHook", "evaluate",
           "fit", "predict_logits", "resolve_device"]
