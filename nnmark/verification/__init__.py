"""Statistics for ownership decisions, and the interfaces through which suspects are queried."""
from nnmark.verification.stats import Verdict, binomial_tail, binomial_verdict, decision_threshold
from nnmark.verification.suspects import ModuleSuspect, Suspect, as_suspect

__all__ = ["ModuleSuspect", "Suspect", "Verdict", "as_suspect", "binomial_tail", "binomial_verdict",
           "decision_threshold"]
