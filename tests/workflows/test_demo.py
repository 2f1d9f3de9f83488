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
