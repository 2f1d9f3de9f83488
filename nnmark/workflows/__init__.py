"""The flows every entry point shares — keygen from what the user has, control models, verifying
a suspect with its evidence record, attack-and-judge, the bench, the demo, the encoder/decoder
sweep. The CLI, ``nnmark demo`` and ``benchmarks/`` call these and hold no policy of their own;
each takes explicit arguments and returns values (writing files only where its name says so).
"""
from nnmark.workflows.attack import AttackOutcome, Judgement, attack_and_judge, judge_model
from nnmark.workflows.controls import CONTROL_RECIPES, train_control, train_controls
from nnmark.workflows.keygen import make_key
from nnmark.workflows.verify import VerificationResult, resolve_null, verify_suspect

__all__ = ["CONTROL_RECIPES", "AttackOutcome", "Judgement", "VerificationResult", "attack_and_judge",
           "judge_model", "make_key", "resolve_null", "train_control", "train_controls", "verify_suspect"]
