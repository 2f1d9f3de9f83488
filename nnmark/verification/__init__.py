"""Statistics for ownership decisions, and the interfaces through which suspects are queried."""
from nnmark.verification.stats import (
    Calibration,
    Verdict,
    binomial_tail,
    binomial_verdict,
    decision_threshold,
    upper_rate,
)
from nnmark.verification.suspects import ModuleSuspect, Suspect, as_suspect

__all__ = ["Calibration", "ModuleSuspect", "Suspect", "Verdict", "as_suspect", "binomial_tail", "binomial_verdict",
           "decision_threshold", "upper_rate"]
