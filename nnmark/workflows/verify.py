"""Verification as the command line runs it: the null a key needs (from a file, or measured on
control models given), the suspect opened from a path or an endpoint, an optional disclosed
subset, and the verdict together with its evidence record."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnmark.api import measure_null, verify_model
from nnmark.data.base import load_dataset
from nnmark.errors import NNMarkError
from nnmark.io import ensure_can_write
from nnmark.models.store import load_model
from nnmark.reporting.evidence import check_report_disclosure, evidence_record, suspect_identity, write_report
from nnmark.schemes.base import get_scheme
from nnmark.schemes.key import WatermarkKey, load_key
from nnmark.verification.nulls import ControlNull, load_null
from nnmark.verification.stats import Verdict
from nnmark.verification.suspects import Suspect, SuspectProxy
from nnmark.workflows.suspects import open_suspect


@dataclass
class VerificationResult:
    verdict: Verdict
    record: dict[str, Any]  # the evidence record (what was tested, against which committed key, warnings)
    tested_key: WatermarkKey  # the key, or the disclosed subset of it that was tested
    suspect: Suspect


def resolve_null(key: WatermarkKey, *, null_file: str | Path | None = None,
                 calibrate_with: list[str | Path] | None = None, key_path: str | Path = "KEY") -> ControlNull | None:
    """The null ``key`` is verified against: None for an exact one; read from ``null_file`` or
    measured on the models ``calibrate_with`` for an estimated one (refused where it is missing,
    or given where the null is exact)."""
    scheme = get_scheme(key.scheme)
    if null_file is not None and calibrate_with:
        raise NNMarkError("give either --null or --calibrate-with, not both", field="--null")
    if scheme.key_null_kind(key) == "exact":
        if null_file is not None or calibrate_with:
            raise NNMarkError(f"scheme '{key.scheme}' has an exact null: --null and --calibrate-with do not apply",
                              field="--null")
        return None
    if null_file is not None:
        null = load_null(null_file)
        null.check_for(key.commitment, key.item_count, str(null_file))
        return null
    if calibrate_with:
        null = measure_null(key, [load_model(path).model for path in calibrate_with],
                            [str(path) for path in calibrate_with])
        null.check_for(key.commitment, key.item_count, "--calibrate-with")
        return null
    raise NNMarkError(f"scheme '{key.scheme}' has no exact null: measure it on models made without the key "
                      f"(nnmark calibrate --key {key_path} --out null.json) and pass --null null.json", field="--null")


def verify_suspect(key: WatermarkKey, *, model: str | Path | None = None, endpoint: str | None = None,
                   model_name: str | None = None, architecture: str = "small-cnn",
                   mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                   null: ControlNull | None = None, alpha: float = 1e-6, tests: int = 1,
                   subset: int | None = None, device: str = "auto",
                   http_options: dict[str, Any] | None = None, layer: str | None = None) -> VerificationResult:
    """Open the suspect (``model``: a directory or file; or ``endpoint`` + ``model_name``), test it
    against ``key`` (or ``subset`` of its items, drawn from the commitment and the suspect's
    identity), and return the verdict with its evidence record. ``layer``: the suspect's layer to
    read a white-box mark from, where it is not under the key's name."""
    get_scheme(key.scheme).check_key(key)
    suspect, described = open_suspect(key, model=model, endpoint=endpoint, model_name=model_name,
                                      architecture=architecture, mean=mean, std=std, device=device,
                                      http_options=http_options)
    tested = key if subset is None else get_scheme(key.scheme).subset(key, subset, suspect_identity(described))
    watched = AnswerWatch(suspect)
    verdict = verify_model(watched, tested, alpha=alpha, null=null, tests=tests, layer=layer)
    record = evidence_record(verdict, key, {k: v for k, v in described.items() if k != "warning"},
                             subset=tested.params.get("subset"))
    for warning in (described.get("warning"), watched.collapse_warning(tested)):
        if warning and not verdict.owned:
            record["warnings"].append(warning)
    return VerificationResult(verdict, record, tested, suspect)


class AnswerWatch(SuspectProxy):
    """Passes queries through to the suspect and keeps its answers, to notice a suspect that sends
    nearly every input to one class: it is then being fed inputs it was not trained on (another
    normalisation or scaling), and its 'not owned' would be a confident verdict about nothing."""

    def __init__(self, suspect: Suspect) -> None:
        super().__init__(suspect)
        self.answers: list = []

    def predict(self, inputs):
        labels = self._suspect.predict(inputs)
        self.answers.append(labels.detach().cpu())
        return labels

    def collapse_warning(self, key: WatermarkKey, share: float = 0.9, least: int = 20) -> str | None:
        import torch

        if not self.answers:
            return None
        answers = torch.cat(self.answers)
        if len(answers) < least:
            return None
        counts = torch.bincount(answers.long().clamp(min=0), minlength=key.num_classes)
        top = int(counts.argmax())
        top_share = float(counts[top]) / len(answers)
        expected = key.tensors.get("labels")
        if expected is not None and len(expected):
            expected_top = float(torch.bincount(expected.long().flatten()).max()) / expected.numel()
            if expected_top >= share:
                return None  # the key itself expects one class (a one-target scheme)
        if top_share < share:
            return None
        return (f"the suspect answered class {top} to {top_share:.0%} of {len(answers)} queries: it is probably "
                "fed inputs it was not trained on (another normalisation or input scaling), and this 'not "
                "owned' says nothing about ownership. Check --normalize-like or the endpoint's preprocessing")


def verify_key_file(key_path: str | Path, *, report: str | Path | None = None, force: bool = False,
                    null_file: str | Path | None = None, calibrate_with: list[str | Path] | None = None,
                    normalize_like: str | None = None, data_dir: str | Path | None = None,
                    **suspect: Any) -> VerificationResult:
    """``nnmark verify``: load the key, find its null, open and test the suspect (``suspect``: the
    arguments of :func:`verify_suspect`), and write the evidence report to ``report`` if given.
    ``normalize_like``: a dataset whose mean/std a bare checkpoint expects."""
    if report is not None:
        ensure_can_write(report, force)
    key = load_key(key_path)
    null = resolve_null(key, null_file=null_file, calibrate_with=calibrate_with, key_path=key_path)
    if normalize_like:
        dataset = load_dataset(normalize_like, data_dir)
        suspect = {**suspect, "mean": dataset.mean, "std": dataset.std}
    result = verify_suspect(key, null=null, **suspect)
    if report is not None:
        write_report(report, result.record, result.tested_key, result.verdict, force=force)
    return result


def check_disclosure(report: str | Path, commitment: str) -> int:
    """``nnmark check-disclosure``: how many revealed items of ``report`` are proven to belong to
    the key with ``commitment`` (refused, naming the item, where one is not)."""
    return check_report_disclosure(report, commitment.strip().lower())
