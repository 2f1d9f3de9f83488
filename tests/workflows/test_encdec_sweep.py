"""`nnmark encdec sweep` at its smallest: one decoder size, one γ, one epoch — the flow runs end to
end and writes the table, the record and the image grid (docs/encoder-decoder.md has the full run)."""
import json

import pytest
from typer.testing import CliRunner

from nnmark.cli import app

pytestmark = pytest.mark.slow


def test_sweep_writes_table_record_and_grid(tmp_path):
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["encdec", "sweep", "--decoder-sizes", "1", "--gammas", "0.05", "--epochs", "1",
                                      "--content", "pixel", "--injection-epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    sweep = json.loads((out / "sweep.json").read_text())
    methods = [c["method"] for c in sweep["columns"]]
    assert methods.count("ours") == 1 and "Trojan" in methods and sum(m.startswith("SWM") for m in methods) == 2
    assert sweep["grid_setting"] == {"decoder_size": 1, "gamma": 0.05}
    assert 0 <= sweep["use_cases"]["reject_or_bypass"]["rejected_unmarked"] <= 1
    assert "Decoding success" in (out / "table.md").read_text() and (out / "grid.png").stat().st_size > 0
    # a second run refuses to replace it
    again = CliRunner().invoke(app, ["encdec", "sweep", "--decoder-sizes", "1", "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_sweep_rejects_bad_sizes(tmp_path):
    result = CliRunner().invoke(app, ["encdec", "sweep", "--decoder-sizes", "4", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "decoder sizes are 1, 2 or 3" in result.output
