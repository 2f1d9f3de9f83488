import json

import pytest

from nnmark.errors import NNMarkError
from nnmark.io import atomic_directory, ensure_can_write, read_json, write_json


def test_atomic_directory_appears_only_when_complete(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            (staging / "half.txt").write_text("partial")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left behind


def test_existing_output_is_kept_without_force(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "precious.txt").write_text("user data")
    with pytest.raises(NNMarkError, match="--force"):
        with atomic_directory(target):
            pass
    assert (target / "precious.txt").read_text() == "user data"


def test_force_replaces_whole_directory(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target, force=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_ensure_can_write_refuses_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(NNMarkError, match="not a directory"):
        ensure_can_write(path, force=True)


def test_read_json_names_the_file(tmp_path):
    bad = tmp_path / "meta.json"
    bad.write_text("{not json")
    with pytest.raises(NNMarkError, match="meta.json.*not valid JSON"):
        read_json(bad, "model")
    write_json(bad, {"a": 1})
    assert json.loads(bad.read_text()) == {"a": 1}
    with pytest.raises(NNMarkError, match="missing"):
        read_json(tmp_path / "absent.json", "model")
