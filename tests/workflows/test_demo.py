"""The demo's flow for a scheme whose key is made from the trained model it marks (frontier
stitching: train the clean model, key it, fine-tune it with the key); the default flow is
`tests/test_end_to_end.py`, another scheme's `tests/cli/test_cli.py`."""
import json

import pytest

from nnmark.workflows.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_marks_the_clean_model_for_a_scheme_keyed_off_it(tmp_path):
    summary = run_demo(tmp_path / "d", scheme="frontier", epochs=6, controls=10)
    assert json.loads((tmp_path / "d" / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["embedded_by"]["mode"] == "fine-tune"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["clean", "key", "null.json", "summary.json",
                                                                 "watermarked"]
    marked, clean = summary["watermarked"]["verify"], summary["clean"]["verify"]
    assert marked["matches"] > max(summary["null"]["control_counts"])  # beats every keyless control
    assert clean["matches"] == 50  # the clean model gets every true adversary wrong, by construction
    assert marked["null_kind"] == "estimated" and not clean["owned"]


def test_demo_of_a_fingerprint_sets_the_owner_beside_an_independent_model(tmp_path):
    """Nothing is embedded, so the demo's comparison is the innocent a fingerprint must clear: the
    same data, architecture and recipe from another seed."""
    options = {"size": 30, "candidates": 120, "surrogates": 2, "references": 2, "epochs": 3, "steps": 20}
    summary = run_demo(tmp_path / "d", scheme="fingerprint", epochs=6, controls=10, key_options=options)
    assert summary["rows"] == ["owner", "independent"] and "unchanged" in summary["embedded_by"]["mode"]
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["independent", "key", "null.json", "owner",
                                                                 "summary.json"]
    owner, independent = summary["owner"]["verify"], summary["independent"]["verify"]
    assert owner["matches"] == owner["total"] == 30  # the owner answers every fingerprint as its key says
    assert independent["matches"] < owner["matches"] and owner["null_kind"] == "estimated"
    assert summary["accuracy_cost"] == 0.0
