"""Evidence reports: a JSON record and a self-contained HTML page a person can read, saying what
was tested, against which committed key, with which statistic, p-value and decision rule."""
from __future__ import annotations

import html
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from nnmark.version import __version__
from nnmark.errors import NNMarkError
from nnmark.io import atomic_directory, read_json, write_json
from nnmark.reporting.tables import format_p_value
from nnmark.schemes.key import WatermarkKey
from nnmark.verification.stats import Verdict


def suspect_identity(described: dict[str, Any]) -> str:
    """What names a suspect for choosing a disclosed subset: its file's SHA-256, or its endpoint."""
    if described.get("sha256"):
        return f"sha256:{described['sha256']}"
    endpoint = str(described.get("endpoint", "")).rstrip("/").lower()
    return f"endpoint:{endpoint}|{described.get('model_name', '')}"


def evidence_record(verdict: Verdict, key: WatermarkKey, suspect: dict[str, Any],
                    subset: dict[str, Any] | None = None) -> dict[str, Any]:
    """The verdict with what was tested and against which committed key; ``warnings`` lists every
    way the guarantee is weaker than the p-value alone suggests."""
    record = verdict.to_dict()
    warnings = []
    if verdict.null_kind != "exact":
        warnings.append(verdict.guarantee)
    if verdict.details.get("assumption"):
        warnings.append(verdict.details["assumption"])
    if key.legacy_warning:
        warnings.append(key.legacy_warning)
    if key.params.get("seed_chosen"):
        warnings.append("the key was made from a seed its owner chose: it is only as secret as that seed")
    if subset is not None:
        warnings.append(f"only {subset['count']} of {subset['of']} key items were tested; a size chosen after "
                        "trying others is a family of tests (count each with --tests)")
    if verdict.details.get("refused"):
        warnings.append(verdict.details["refused"])
    if verdict.details.get("warning"):
        warnings.append(verdict.details["warning"])
    if verdict.tests == 1:
        warnings.append("testing many keys or suspects multiplies the chance of a false accusation: with m tests, "
                        "hold each to alpha/m (--tests m) to keep the family-wise error at alpha")
    record.update({
        "suspect": suspect,
        "key": {"scheme": key.scheme, "commitment": key.commitment, "created_at": key.created_at,
                "items_tested": verdict.total,
                "subset": None if subset is None else {k: v for k, v in subset.items() if k != "disclosure"}},
        "disclosure": None if subset is None else subset.get("disclosure"),
        "warnings": warnings,
        "software": {"nnmark": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "verified_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    return record


DISCLOSURE_FILE = "disclosed-items.safetensors"


def check_report_disclosure(directory: str | Path, commitment: str) -> int:
    """Check the items a report reveals against a published commitment; returns how many."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from nnmark.schemes.commitment import check_disclosure

    directory = Path(directory)
    record = read_json(directory / "evidence.json", "evidence report")
    disclosure = record.get("disclosure")
    if not isinstance(disclosure, dict):
        raise NNMarkError("reveals no key items to check (it was not made with --subset)",
                          path=directory / "evidence.json", field="disclosure")
    try:
        items = load_file(str(directory / DISCLOSURE_FILE))
    except (SafetensorError, OSError, ValueError) as exc:
        raise NNMarkError(f"cannot read the revealed items ({exc})", path=directory / DISCLOSURE_FILE) from None
    problems = check_disclosure(disclosure, items, commitment)
    if problems:
        raise NNMarkError("the revealed items do not prove membership in the committed key: " + "; ".join(problems),
                          path=directory)
    return len(disclosure["indices"])


def render_html(record: dict[str, Any], key: WatermarkKey, verdict: Verdict) -> str:
    if verdict.null_kind == "exact" and verdict.null_rate is None:  # points, not a count of items
        summary = (f"The suspect scored {verdict.matches} of the key's {verdict.total} points "
                   f"({html.escape(verdict.statistic)}).")
    else:
        summary = f"The suspect agreed with the secret key on {verdict.matches} of {verdict.total} items."
    suspect = record["suspect"]
    tested = suspect.get("path") or suspect.get("endpoint")
    if verdict.null_kind == "exact":
        null_text = f"{html.escape(verdict.null_law)} — {html.escape(verdict.null_source)}"
    else:
        null_text = html.escape(verdict.null_source)
    rows = [
        ("Suspect", f"{html.escape(str(tested))} ({html.escape(suspect['kind'])})"),
        ("Suspect SHA-256", suspect.get("sha256", "— (queried over the network)")),
        ("Key scheme", key.scheme),
        ("Key commitment (SHA-256)", record["key"]["commitment"]),
        ("Key created", record["key"]["created_at"]),
        ("Statistic", f"{html.escape(verdict.statistic)}: {verdict.matches} of {verdict.total}"),
        ("Null hypothesis", null_text),
        ("p-value", format_p_value(verdict.p_value)),
        ("Decision rule", html.escape(verdict.decision_rule)),
        ("Error rate", f"{html.escape(verdict.guarantee)} (α = {verdict.alpha:g}, tests = {verdict.tests})"),
        ("Queries spent", str(verdict.details.get("queries", "—"))),
        ("Software", ", ".join(f"{k} {v}" for k, v in record["software"].items())),
        ("Verified at", record["verified_at"]),
    ]
    subset = record["key"].get("subset")
    if subset:
        rows.insert(4, ("Selective disclosure", f"{subset['count']} of {subset['of']} key items, chosen from the "
                                                 "commitment and the suspect's identity; p-value is for this subset; "
                                                 f"check with: nnmark check-disclosure REPORT --commitment "
                                                 f"{record['key']['commitment'][:16]}…"))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    warnings = "".join(f'<p class="warning">{html.escape(w)}</p>' for w in record.get("warnings", []))
    decision = "OWNED" if verdict.owned else "NOT OWNED"
    colour = "#1a7f37" if verdict.owned else "#9a6700"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nnmark evidence: {decision}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; color: #1f2328; }}
.verdict {{ font-size: 1.6rem; font-weight: 700; color: {colour}; }}
.warning {{ background: #fff8c5; border-left: 4px solid #9a6700; padding: .4rem .8rem; font-weight: 600; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .3rem .8rem; border-bottom: 1px solid #ddd; }}
th {{ width: 17rem; font-weight: 600; }} td {{ font-family: ui-monospace, monospace; word-break: break-all; }}
.grid {{ display: flex; flex-wrap: wrap; gap: .4rem; }}
figure {{ margin: 0; padding: .25rem; border-radius: 4px; text-align: center; font-size: .7rem; }}
figure.hit {{ background: #dafbe1; }} figure.miss {{ background: #eee; }} img {{ image-rendering: pixelated; display: block; }}
</style></head><body>
<h1>Watermark verification report</h1>
<p class="verdict">{decision}</p>
<p>{summary} A model made
without the key would do at least this well with probability {format_p_value(verdict.p_value)}{"" if verdict.null_kind == "exact" else " (estimated on control models: see the warning)"}.</p>
{warnings}
<table>{table}</table>
{"" if verdict.evidence is None else verdict.evidence.render_html(key)}
</body></html>
"""


def write_report(directory: str | Path, record: dict[str, Any], key: WatermarkKey, verdict: Verdict,
                 force: bool = False) -> Path:
    from safetensors.torch import save_file

    with atomic_directory(directory, force) as staging:
        write_json(staging / "evidence.json", record)
        (staging / "report.html").write_text(render_html(record, key, verdict))
        if record.get("disclosure"):
            save_file({name: key.tensors[name].contiguous() for name in key.item_tensors},
                      str(staging / DISCLOSURE_FILE))
    return Path(directory)
