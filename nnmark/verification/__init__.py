"""Statistics for ownership decisions, and the interfaces through which suspects are queried."""
from nnmark.verification.nulls import ControlNull, ControlRecord, load_null, save_null
from nnmark.verification.stats import (
    Verdict,
    binomial_tail,
    binomial_verdict,
    clopper_pearson,
    control_p_value,
    control_verdict,
    decision_threshold,
    points_verdict,
)
from nnmark.verification.suspects import ModuleSuspect, Suspect, as_suspect

__all__ = ["ControlNull", "ControlRecord", "ModuleSuspect", "Suspect", "Verdict", "as_suspect", "binomial_tail",
           "binomial_verdict", "clopper_pearson", "control_p_value", "control_verdict", "decision_threshold",
           "load_null", "points_verdict", "save_null"]
