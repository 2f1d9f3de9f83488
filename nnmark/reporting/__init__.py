"""Readable summaries of verdicts and runs (rich tables), kept apart from the logic."""
from nnmark.reporting.tables import format_p_value, verdict_table

__all__ = ["format_p_value", "verdict_table"]
