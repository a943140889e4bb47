"""User-supplied text files: UTF-8 with or without a byte-order mark is read, other bytes are refused
with a one-line error naming the file and the first bad byte, and nothing is written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aloe.embedder.cli import command as embed_command
from aloe.internal.cli import run_cli
from aloe.loop.labels_cli import labels_group
from aloe.loop.ledger import Ledger
from aloe.store import open_store

BOM = b"\xef\xbb\xbf"
BATCH = "id,rank,cluster,ood_score,flagged\nb1,1,4,2.5,1\nb2,2,7,1.5,1\n"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def pool_npz(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.array(["a1", "a2", "b1", "b2", "c1", "c2"])
    path = tmp_path / "pool.npz"
    np.savez(path, ids=ids, features=rng.normal(size=(6, 4)).astype(np.float32))
    return path


def _embed(npz, labels, store):
    return run_cli(embed_command, ["--from-features", str(npz), "--labels", str(labels), "--store", str(store),
                                   "--quiet"])


def test_labels_file_with_a_bom_is_read(tmp_path, pool_npz):
    labels = tmp_path / "labels.csv"
    labels.write_bytes(BOM + "id,label\na1,café\nb1,dog\n".encode())
    assert _embed(pool_npz, labels, tmp_path / "s.zarr") == 0
    assert open_store(tmp_path / "s.zarr").round(0).class_names == ["café", "dog"]


def test_labels_file_in_latin1_is_refused_naming_the_byte(tmp_path, pool_npz, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_bytes("id,label\na1,dog\nb1,café\n".encode("latin-1"))
    assert _embed(pool_npz, labels, tmp_path / "s.zarr") == 2
    err = _one_line_error(capsys)
    assert str(labels) in err and "not UTF-8" in err and "byte 0xe9 at offset 22, line 3" in err
    assert not (tmp_path / "s.zarr").exists()


def test_utf16_labels_file_is_refused_and_the_store_is_unchanged(tmp_path, pool_npz, capsys):
    good = tmp_path / "good.csv"
    good.write_text("id,label\na1,dog\n")
    assert _embed(pool_npz, good, tmp_path / "s.zarr") == 0
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\na1,dog\nb1,cat\n", encoding="utf-16")
    assert _embed(pool_npz, labels, tmp_path / "s.zarr") == 2
    assert "offset 0, line 1" in _one_line_error(capsys)
    assert open_store(tmp_path / "s.zarr").rounds() == [0]


@pytest.fixture
def run(tmp_path):
    Ledger(tmp_path / "ledger.csv").append({"a1": "cat"}, 0, "initial")
    (tmp_path / "batch.csv").write_text(BATCH)
    return tmp_path


def _import(run, answers, ledger="ledger.csv"):
    return run_cli(labels_group, ["import", str(answers), "--batch", str(run / "batch.csv"),
                                  "--ledger", str(run / ledger)])


def test_answers_with_a_bom_are_merged(run):
    (run / "answers.csv").write_bytes(BOM + b"id,label\nb1,owl\n")
    assert _import(run, run / "answers.csv") == 0
    assert Ledger(run / "ledger.csv").labels() == {"a1": "cat", "b1": "owl"}


@pytest.mark.parametrize("name", ["answers.csv", "answers.json"])
def test_undecodable_answers_leave_the_ledger_unchanged(run, capsys, name):
    text = "id,label\nb1,\xe9t\xe9\n" if name.endswith(".csv") else json.dumps([{"data": {"aloe_id": "b1"}}])
    (run / name).write_bytes(text.encode("latin-1") if name.endswith(".csv") else b"\xff" + text.encode())
    before = (run / "ledger.csv").read_bytes()
    assert _import(run, run / name) == 2
    err = _one_line_error(capsys)
    assert name in err and "not UTF-8" in err
    assert (run / "ledger.csv").read_bytes() == before


def test_label_studio_export_with_a_bom_is_read(run):
    tasks = [{"id": 7, "data": {"aloe_id": "b2"}, "annotations": [
        {"id": 1, "was_cancelled": False,
         "result": [{"from_name": "label", "type": "choices", "value": {"choices": ["emu"]}}]}]}]
    (run / "export.json").write_bytes(BOM + json.dumps(tasks).encode())
    assert _import(run, run / "export.json") == 0
    assert Ledger(run / "ledger.csv").labels()["b2"] == "emu"


def test_a_starting_labels_file_with_a_bom_works_as_the_ledger(run):
    (run / "start.csv").write_bytes(BOM + b"id,label\na2,dog\n")
    (run / "answers.csv").write_text("id,label\nb1,owl\n")
    assert _import(run, run / "answers.csv", ledger="start.csv") == 0
    assert Ledger(run / "start.csv").labels() == {"a2": "dog", "b1": "owl"}
    assert not (run / "start.csv").read_bytes().startswith(BOM)


def test_a_ledger_with_bad_bytes_is_refused(run, capsys):
    (run / "bad-ledger.csv").write_bytes(b"id,label\na2,d\xf6g\n")
    (run / "answers.csv").write_text("id,label\nb1,owl\n")
    assert _import(run, run / "answers.csv", ledger="bad-ledger.csv") == 2
    assert "bad-ledger.csv: not UTF-8 text (byte 0xf6 at offset 13, line 2)" in _one_line_error(capsys)
