"""Attack, then judge: what the bench, ``nnmark attack`` and the paper scripts all do with a
removal attack — run it (or a chain) on a copy of the victim, then measure the attacked model's
test accuracy and its verdict against the victim's key.

An attack *removes* a watermark only when the verdict flips to "not owned" while test accuracy
stays within ``tolerance`` of the victim's: destroying the model is not removing the mark.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnmark.api import verify_model
from nnmark.attacks.base import THIEF_SAMPLE, AttackContext, chain_settings, parse_chain, resolve_strengths, run_chain
from nnmark.attacks.transfer import new_task_of
from nnmark.data.base import Dataset
from nnmark.data.streaming import as_tensors
from nnmark.training.evaluation import accuracy_on
from nnmark.errors import MarkNotFound, NNMarkError, NonFiniteOutput
from nnmark.models.inference import evaluate, predict_logits
from nnmark.schemes.base import get_scheme
from nnmark.schemes.key import WatermarkKey
from nnmark.verification.nulls import ControlNull


@dataclass
class Judgement:
    """A model's test accuracy and its verdict against a key, in the bench's record fields."""

    test_accuracy: float
    owned: bool
    p_value: float
    matches: int
    total: int
    threshold: int
    statistic: str
    evidence: float  # the share of key items it agrees with
    facts: dict[str, Any] = field(default_factory=dict)  # the scheme's evidence facts (a bit error rate, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge_model(model, key: WatermarkKey, data: Dataset, *, null: ControlNull | None = None,
                alpha: float = 1e-6, device: str = "auto") -> Judgement:
    """Test accuracy on ``data``'s test split and the verdict against ``key``. A model whose outputs
    are NaN (an attack that broke it outright) is judged not owned, with no evidence. A model
    transferred to a task of its own is scored on that task, and a black-box key, whose classes
    it no longer answers, is not scored against its new labels: such a mark is gone, said so."""
    task = new_task_of(model)
    if task is not None:
        data = as_tensors(data, THIEF_SAMPLE)  # regrouping the labels needs them whole
        accuracy = evaluate(model, data.test_x, task.relabel(data.test_y), device=device)
    else:
        accuracy = accuracy_on(model, data, device=device)
    if task is not None and get_scheme(key.scheme).access == "black-box":
        total = key.item_count
        return Judgement(accuracy, False, 1.0, 0, total, total + 1,
                         f"not verifiable: the model now answers a {task.classes}-class task of its own, and a "
                         f"black-box key asks for its {key.num_classes} classes", 0.0,
                         {"new_task_classes": task.classes})
    try:
        verdict = verify_model(model, key, alpha=alpha, null=null)
    except NonFiniteOutput:
        total = key.item_count
        return Judgement(accuracy, False, 1.0, 0, total, total + 1, "the attacked model outputs NaN", 0.0)
    except MarkNotFound as missing:  # a white-box mark whose carrier is gone (another architecture)
        total = key.item_count
        return Judgement(accuracy, False, 1.0, 0, total, total + 1, f"no mark to read: {missing}", 0.0)
    return Judgement(accuracy, verdict.owned, verdict.p_value, verdict.matches, verdict.total, verdict.threshold,
                     verdict.statistic, verdict.agreement,
                     verdict.evidence.facts() if verdict.evidence is not None else {})


def mark_evidence(model, key: WatermarkKey, *, null: ControlNull | None = None, alpha: float = 1e-6) -> float:
    """The share of key items the model agrees with, and nothing else (no test accuracy): what a
    tuner watches after each epoch of an attack. A model broken to NaN, or without the mark's
    carrier, has none."""
    try:
        return float(verify_model(model, key, alpha=alpha, null=null).agreement)
    except (NonFiniteOutput, MarkNotFound):
        return 0.0


@dataclass
class AttackOutcome:
    attacked: Any  # the attacked model (the victim is untouched)
    before: Judgement
    after: Judgement
    epochs: int  # training epochs the attack spent (its budget)
    keeps_accuracy: bool
    removed: bool  # owned before, not after, and accuracy kept
    settings: list[dict[str, Any]] = field(default_factory=list)  # each step's hyperparameters as run
    attack_facts: dict[str, Any] = field(default_factory=dict)  # what the attack reports of itself (a guard's false alarms)
    key: WatermarkKey | None = None  # the key both were judged with (for DAWN, derived from the API's log)


def attack_and_judge(victim, key: WatermarkKey, attack: str, context: AttackContext, *,
                     strength: float | None = None, null: ControlNull | None = None, alpha: float = 1e-6,
                     test_data: Dataset | None = None, before: Judgement | None = None,
                     tolerance: float = 0.05) -> AttackOutcome:
    """Run ``attack`` (a name or chain, ``prune:0.5+ftal``) on ``victim`` with what ``context`` gives
    the attacker, and judge the victim (unless ``before`` is given) and the attacked model on
    ``test_data`` (default: the attacker's dataset, whose test split is kept whole)."""
    steps = parse_chain(attack)
    test_data = test_data or context.data
    sample = as_tensors(test_data, THIEF_SAMPLE)  # what needs the test images whole (a guard's alarms)
    device = context.train.device
    if get_scheme(key.scheme).marks_the_api:
        attacked, key, before = _extract_through_api(victim, key, steps, context, strength, test_data, alpha, device)
    else:
        before = before or judge_model(victim, key, test_data, null=null, alpha=alpha, device=device)
        attacked = run_chain(victim, steps, context, strength)
    after = judge_model(attacked, key, test_data, null=null, alpha=alpha, device=device)
    epochs = sum(step.epochs(value, context) for step, value in resolve_strengths(steps, strength))
    facts = attacked.attack_facts(sample.test_x) if hasattr(attacked, "attack_facts") else {}
    if key.params.get("serving_key"):  # derived from the API's log of this thief's queries
        facts = {**facts, "marked_queries": key.item_count, "logged_queries": key.params["log_queries"]}
    reference = before.test_accuracy
    task = new_task_of(attacked)
    if task is not None:
        # The victim's own answers, regrouped as the new task groups the classes: the accuracy on
        # that task the thief had for free, which transferring must keep.
        regrouped = task.relabel(predict_logits(victim, sample.test_x, device=device).argmax(1))
        reference = (regrouped == task.relabel(sample.test_y)).float().mean().item()
        facts = {**facts, "new_task_classes": task.classes, "victim_accuracy_on_new_task": reference}
    keeps = after.test_accuracy >= reference - tolerance
    return AttackOutcome(attacked, before, after, epochs, keeps, before.owned and not after.owned and keeps,
                         chain_settings(steps, context), facts, key)


def _extract_through_api(api, serving_key: WatermarkKey, steps, context: AttackContext, strength, test_data: Dataset,
                         alpha: float, device) -> tuple[Any, WatermarkKey, Judgement]:
    """A mark carried by the API (DAWN, dark-knowledge): only extraction applies, and the
    verification key comes from the scheme once the thief is done (DAWN's from the API's log of
    the thief's queries)."""
    implementation = get_scheme(serving_key.scheme)
    if getattr(api, "serving_key_commitment", None) != serving_key.commitment:
        raise NNMarkError(f"a '{serving_key.scheme}' key marks an API's answers: attack the model behind its API "
                          f"(get_scheme('{serving_key.scheme}').serving_api(model, key)), not the bare model",
                          field="victim")
    not_extraction = [str(step) for step, (attack, _) in zip(steps, resolve_strengths(steps)) if not attack.extraction]
    if not_extraction:
        raise NNMarkError(f"not applicable: '{serving_key.scheme}' marks the API's answers, and "
                          f"{', '.join(not_extraction)} needs the model itself (its weights, or the model to serve behind a front "
                          "end of the thief's own), which the API never hands out",
                          field="attack")
    logging = implementation.needs_query_log
    if logging:
        api.log.clear()
        api.keep_log = True
    try:
        attacked = run_chain(api, steps, context, strength)
    finally:
        if logging:
            api.keep_log = False
    verification_key = implementation.verification_key(serving_key, api.model, api.queries() if logging else None)
    # The API itself answers as the key says: that is the "before" the thief starts from.
    before = judge_model(api, verification_key, test_data, alpha=alpha, device=device)
    return attacked, verification_key, before


@dataclass
class AttackReport:
    outcome: AttackOutcome
    path: Path | None = None  # where the attacked model was written


def attack_model_directory(model: str | Path, key: str | Path, attack: str, *, strength: float | None = None,
                           data: str = "digits", data_dir: str | Path | None = None, fraction: float = 0.3,
                           transfer_data: str | None = None, seed: int = 0, alpha: float = 1e-6,
                           null_file: str | Path | None = None, out: str | Path | None = None, force: bool = False,
                           progress=None) -> AttackReport:
    """``nnmark attack``: attack the model directory ``model`` with ``fraction`` of ``data`` in the
    thief's hands, judge it before and after against ``key``, and write the attacked weights to
    ``out`` where they are weights of the same architecture (refused otherwise, before writing)."""
    from nnmark.data.base import load_dataset
    from nnmark.io import ensure_can_write
    from nnmark.models.store import Classifier, load_model, save_model
    from nnmark.schemes.key import load_key
    from nnmark.workflows.verify import resolve_null

    if out is not None:
        ensure_can_write(out, force)
    if not 0 < fraction <= 1:
        raise NNMarkError("must be in (0, 1]", field="--fraction", got=fraction)
    steps = parse_chain(attack)
    if strength is not None and len(steps) > 1:
        raise NNMarkError("--strength applies to a single attack; give chain strengths as name:value",
                          field="--strength")
    secret = load_key(key)
    victim = load_model(model)
    get_scheme(secret.scheme).check_fits(secret, victim.spec.num_classes, tuple(victim.spec.input_shape),
                                         f"the model {model}")
    null = resolve_null(secret, null_file=null_file, key_path=key)
    dataset = load_dataset(data, data_dir)
    transfer = None
    if transfer_data is not None:
        if transfer_data == data:
            raise NNMarkError("is the victim's own dataset; extraction with it is what distill measures",
                              field="--transfer-data", expected="a dataset of another domain", got=transfer_data)
        from nnmark.data.transfer import transfer_images

        transfer = transfer_images(load_dataset(transfer_data, data_dir), dataset.input_shape)
    context = AttackContext(dataset.subset(fraction, seed), victim.spec, seed=seed, victim_key=secret,
                            progress=progress, transfer=transfer)
    outcome = attack_and_judge(victim.model, secret, attack, context, strength=strength, null=null, alpha=alpha,
                               test_data=dataset)
    report = AttackReport(outcome)
    if out is not None:
        attacked = outcome.attacked
        # Only weights are stored: a query-time front end (input filters, a guard) or a student of
        # another architecture would be written as something it is not.
        shapes = {name: tuple(tensor.shape) for name, tensor in victim.model.state_dict().items()}
        if type(attacked) is not Classifier or getattr(attacked, "nnmark_new_task", None) is not None or \
                {name: tuple(tensor.shape) for name, tensor in attacked.state_dict().items()} != shapes:
            raise NNMarkError(f"the result of '{attack}' is not {victim.spec.architecture} weights (a query-time "
                              "front end, another architecture or another task) and cannot be stored as a model; "
                              "nothing was written", field="--out")
        report.path = save_model(attacked, victim.spec, out, force=force,
                                 metadata={"attacked_from": str(model), "attack": attack, "strength": strength,
                                           "test_accuracy": outcome.after.test_accuracy})
    return report
