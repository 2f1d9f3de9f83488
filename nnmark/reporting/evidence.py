"""Evidence reports: a JSON record and a self-contained HTML page a person can read, saying what
was tested, against which committed key, with which statistic, p-value and decision rule."""
from __future__ import annotations

import base64
import html
import io
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnmark import __version__
from nnmark.io import atomic_directory, write_json
from nnmark.reporting.tables import format_p_value
from nnmark.schemes.key import WatermarkKey
from nnmark.verification.stats import Verdict


def evidence_record(verdict: Verdict, key: WatermarkKey, suspect: dict[str, Any],
                    subset: dict[str, Any] | None = None) -> dict[str, Any]:
    record = verdict.to_dict()
    record.update({
        "suspect": suspect,
        "key": {"scheme": key.scheme, "commitment": key.commitment, "created_at": key.created_at,
                "items_tested": verdict.total, "subset": subset},
        "software": {"nnmark": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "verified_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    return record


def _png(array: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _image_cells(key: WatermarkKey, verdict: Verdict, limit: int = 200) -> str:
    inputs = key.tensors.get("inputs")
    predictions = verdict.details.get("predictions")
    if inputs is None or predictions is None:
        return ""
    labels = key.tensors["labels"].tolist()
    cells = []
    for index in range(min(limit, len(inputs))):
        image = (inputs[index].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        image = image[:, :, 0] if image.shape[2] == 1 else image
        scale = max(1, 64 // image.shape[0])
        image = np.kron(image, np.ones((scale, scale) + ((1,) if image.ndim == 3 else ()), dtype=np.uint8))
        agree = predictions[index] == labels[index]
        cells.append(f'<figure class="{"hit" if agree else "miss"}"><img src="data:image/png;base64,{_png(image)}">'
                     f"<figcaption>key {labels[index]} · model {predictions[index]}</figcaption></figure>")
    note = f"<p>First {limit} of {len(inputs)} shown.</p>" if len(inputs) > limit else ""
    return ("<h2>Trigger inputs and the model's answers</h2><p>Green: the model answered the secret "
            f"label; grey: it did not.</p>{note}<div class=grid>{''.join(cells)}</div>")


def _bits(key: WatermarkKey, verdict: Verdict) -> str:
    if "bits" not in key.tensors or "bit_error_rate" not in verdict.details:
        return ""
    return (f"<h2>Signature</h2><p>Layer <code>{html.escape(str(verdict.details['layer']))}</code> "
            f"(found by {verdict.details['layer_matched_by']}); bit error rate "
            f"{verdict.details['bit_error_rate']:.3f}.</p>")


def render_html(record: dict[str, Any], key: WatermarkKey, verdict: Verdict) -> str:
    suspect = record["suspect"]
    tested = suspect.get("path") or suspect.get("endpoint")
    rows = [
        ("Suspect", f"{html.escape(str(tested))} ({html.escape(suspect['kind'])})"),
        ("Suspect SHA-256", suspect.get("sha256", "— (queried over the network)")),
        ("Key scheme", key.scheme),
        ("Key commitment (SHA-256)", record["key"]["commitment"]),
        ("Key created", record["key"]["created_at"]),
        ("Statistic", f"{html.escape(verdict.statistic)}: {verdict.matches} of {verdict.total}"),
        ("Null hypothesis", f"Binomial({verdict.total}, {verdict.null_rate:.4g}) — {html.escape(verdict.null_source)}"),
        ("p-value", format_p_value(verdict.p_value)),
        ("Decision rule", html.escape(verdict.decision_rule)),
        ("False-positive rate of the rule", f"{verdict.false_positive_rate:.3g} (α = {verdict.alpha:g})"),
        ("Queries spent", str(verdict.details.get("queries", "—"))),
        ("Software", ", ".join(f"{k} {v}" for k, v in record["software"].items())),
        ("Verified at", record["verified_at"]),
    ]
    subset = record["key"].get("subset")
    if subset:
        rows.insert(4, ("Selective disclosure", f"{subset['count']} of {subset['of']} key items "
                                                 f"(seed {subset['seed']}); p-value is for this subset"))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    decision = "OWNED" if verdict.owned else "NOT OWNED"
    colour = "#1a7f37" if verdict.owned else "#9a6700"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nnmark evidence: {decision}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; color: #1f2328; }}
.verdict {{ font-size: 1.6rem; font-weight: 700; color: {colour}; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .3rem .8rem; border-bottom: 1px solid #ddd; }}
th {{ width: 17rem; font-weight: 600; }} td {{ font-family: ui-monospace, monospace; word-break: break-all; }}
.grid {{ display: flex; flex-wrap: wrap; gap: .4rem; }}
figure {{ margin: 0; padding: .25rem; border-radius: 4px; text-align: center; font-size: .7rem; }}
figure.hit {{ background: #dafbe1; }} figure.miss {{ background: #eee; }} img {{ image-rendering: pixelated; display: block; }}
</style></head><body>
<h1>Watermark verification report</h1>
<p class="verdict">{decision}</p>
<p>The suspect agreed with the secret key on {verdict.matches} of {verdict.total} items. A model made
without the key would do at least this well with probability {format_p_value(verdict.p_value)}.</p>
<table>{table}</table>
{_bits(key, verdict)}
{_image_cells(key, verdict)}
</body></html>
"""


def write_report(directory: str | Path, record: dict[str, Any], key: WatermarkKey, verdict: Verdict,
                 force: bool = False) -> Path:
    with atomic_directory(directory, force) as staging:
        write_json(staging / "evidence.json", record)
        (staging / "report.html").write_text(render_html(record, key, verdict))
    return Path(directory)
