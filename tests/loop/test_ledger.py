"""The labels ledger: appends, validation on read, atomic all-or-nothing writes."""

from __future__ import annotations

import pytest

from aloe.errors import AloeError
from aloe.labels import read_labels
from aloe.loop.ledger import Ledger, ledger_path_for


def test_append_and_read_back(tmp_path):
    ledger = Ledger(tmp_path / "ledger.csv")
    assert ledger.entries() == [] and ledger.last_round() is None
    assert ledger.append({"a": "cat", "b": "dog"}, 0, "initial") == 2
    assert ledger.append({"b": "dog", "c": "owl"}, 1, "oracle") == 1
    assert ledger.labels() == {"a": "cat", "b": "dog", "c": "owl"}
    assert ledger.labels(up_to_round=0) == {"a": "cat", "b": "dog"}
    assert ledger.last_round() == 1
    assert [e.source for e in ledger.entries()] == ["initial", "initial", "oracle"]
    assert read_labels(ledger.path) == {"a": "cat", "b": "dog", "c": "owl"}


def test_default_location_is_beside_the_store(tmp_path):
    assert ledger_path_for(tmp_path / "run" / "store.zarr") == tmp_path / "run" / "ledger.csv"


def test_append_rejects_relabel_and_older_round_and_changes_nothing(tmp_path):
    ledger = Ledger(tmp_path / "ledger.csv")
    ledger.append({"a": "cat"}, 2, "x")
    before = ledger.path.read_text()
    with pytest.raises(AloeError, match="already labeled differently"):
        ledger.append({"a": "dog", "b": "owl"}, 2, "x")
    with pytest.raises(AloeError, match="cannot add round 1 after round 2"):
        ledger.append({"b": "owl"}, 1, "x")
    with pytest.raises(AloeError, match="empty"):
        ledger.append({"b": " "}, 2, "x")
    assert ledger.path.read_text() == before
    assert ledger.append({}, 3, "x") == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,name\na,cat\n", "line 1: expected the header id,label,round,source or id,label$"),
        ("id,label,round,source\na,cat,0\n", "line 2: expected 4 fields"),
        ("id,label,round,source\na,,0,x\n", "line 2: empty id, label or source"),
        ("id,label,round,source\na,cat,-1,x\n", "line 2: round '-1'"),
        ("id,label,round,source\na,cat,one,x\n", "line 2: round 'one'"),
        ("id,label,round,source\na,cat,1,x\nb,dog,0,x\n", "line 3: round 0 after round 1"),
        ("id,label,round,source\na,cat,0,x\nb,dog,0,x\na,cat,1,x\n", "line 4: id 'a' already labeled at line 2"),
    ],
)
def test_every_read_validates_the_whole_file(tmp_path, text, message):
    path = tmp_path / "ledger.csv"
    path.write_text(text)
    with pytest.raises(AloeError, match=message):
        Ledger(path).entries()
    with pytest.raises(AloeError, match=message):
        Ledger(path).append({"z": "new"}, 5, "x")


def test_a_plain_labels_file_is_round_zero_and_upgraded_on_append(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("id,label\na,cat\nb,dog\n")
    ledger = Ledger(path)
    assert [(e.id, e.round, e.source) for e in ledger.entries()] == [("a", 0, "initial"), ("b", 0, "initial")]
    assert ledger.append({"c": "owl"}, 1, "batch.csv") == 1
    assert path.read_text() == "id,label,round,source\na,cat,0,initial\nb,dog,0,initial\nc,owl,1,batch.csv\n"
    path.write_text("id,label\na,cat\nb,dog,extra\n")
    with pytest.raises(AloeError, match="line 3: expected 4 fields"):
        ledger.entries()
