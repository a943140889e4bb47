"""``aloe labels import`` and ``export-batch``: CSV and Label Studio round trips, every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aloe.embedder.linear_round import embed_from_features
from aloe.internal.cli import run_cli
from aloe.loop.labels_cli import labels_group
from aloe.loop.ledger import Ledger

BATCH = "id,rank,cluster,ood_score,flagged\nb1,0,4,2.5,1\nb2,1,7,1.5,1\nb3,2,1,0.5,0\n"


@pytest.fixture
def run(tmp_path):
    """A run directory with a ledger holding round 0 and a batch file."""
    ledger = Ledger(tmp_path / "ledger.csv")
    ledger.append({"a1": "cat", "a2": "dog"}, 0, "initial")
    (tmp_path / "batch.csv").write_text(BATCH)
    return tmp_path


def labels(*argv):
    return run_cli(labels_group, [str(a) for a in argv])


def test_import_csv_merges_with_new_classes(run, capsys):
    (run / "answers.csv").write_text("id,label\nb1,owl\nb2,cat\n")
    code = labels("import", run / "answers.csv", "--batch", run / "batch.csv", "--ledger", run / "ledger.csv")
    out = capsys.readouterr().out
    assert code == 0
    assert "merged 2 labels" in out and "(round 1)" in out and "new classes: owl" in out
    assert "2/3 of the batch labeled" in out
    entries = Ledger(run / "ledger.csv").entries()
    assert [(e.id, e.label, e.round, e.source) for e in entries[2:]] == [
        ("b1", "owl", 1, "answers.csv"),
        ("b2", "cat", 1, "answers.csv"),
    ]
    # the rest of the batch later: same round, repeats of merged labels are fine
    (run / "rest.csv").write_text("id,label\nb2,cat\nb3,emu\n")
    assert labels("import", run / "rest.csv", "--batch", run / "batch.csv", "--ledger", run / "ledger.csv") == 0
    assert Ledger(run / "ledger.csv").entries()[-1].round == 1


def test_import_reports_every_problem_with_line_numbers_and_merges_nothing(run, capsys):
    (run / "bad.csv").write_text(
        "id,label\nb1,owl\nzz,cat\nb2,\na1,dog\nb3,emu\nb3,yak\n"
    )
    before = (run / "ledger.csv").read_text()
    code = labels("import", run / "bad.csv", "--batch", run / "batch.csv", "--ledger", run / "ledger.csv")
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: nothing merged")
    assert "empty labels: line 4 ('b2')" in err
    assert "ids outside the batch: line 3 ('zz');" in err
    assert "ids already labeled with a different label: line 5 ('a1')" in err  # outside the batch too
    assert "ids given two different labels: line 7 ('b3')" in err
    assert (run / "ledger.csv").read_text() == before


def test_csv_labels_are_matched_to_known_classes_up_to_case(run, capsys):
    (run / "answers.csv").write_text("id,label\nb1, Cat \nb2,owl\nb3,OWL\n")
    assert labels("import", run / "answers.csv", "--batch", run / "batch.csv", "--ledger", run / "ledger.csv") == 0
    out = capsys.readouterr().out
    assert "line 2: typed 'Cat', the known class 'cat'" in out
    assert "line 4: typed 'OWL', taken as 'owl' (typed before)" in out
    assert out.splitlines()[-1].endswith("3/3 of the batch labeled; new classes: owl")
    assert Ledger(run / "ledger.csv").labels() == {"a1": "cat", "a2": "dog", "b1": "cat", "b2": "owl", "b3": "owl"}
    (run / "again.csv").write_text("id,label\nb1,CAT\nb2,owl\n")  # the same labels again, any case
    assert labels("import", run / "again.csv", "--batch", run / "batch.csv", "--ledger", run / "ledger.csv") == 0
    out = capsys.readouterr().out
    assert "merged 0 labels" in out and "typed" not in out


def test_import_rejects_relabeling_a_batch_item(run, capsys):
    (run / "first.csv").write_text("id,label\nb1,owl\n")
    assert labels("import", run / "first.csv", "--batch", run / "batch.csv", "--ledger", run / "ledger.csv") == 0
    (run / "second.csv").write_text("id,label\nb3,emu\nb1,hawk\n")
    code = labels("import", run / "second.csv", "--batch", run / "batch.csv", "--ledger", run / "ledger.csv")
    assert code == 2
    assert "ids already labeled with a different label: line 3 ('b1')" in capsys.readouterr().err
    assert "b3" not in Ledger(run / "ledger.csv").labels()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"answers.csv": "id,name\nb1,owl\n"}, "expected a header with columns 'id' and 'label'"),
        ({"answers.json": "{not json"}, "not a readable Label Studio JSON export"),
        ({"answers.json": '{"data": {}}'}, "expected a JSON list of tasks"),
        ({"answers.json": '[{"data": {"image": "x.png"}}]'}, "task 1: no data.aloe_id"),
        ({"answers.csv": "id,label\nb1,owl\n", "batch.csv": "id,rank\nb1,0\n"}, "not a batch file"),
    ],
)
def test_import_rejects_malformed_files(run, capsys, files, message):
    for name, text in files.items():
        (run / name).write_text(text)
    answers = next(name for name in files if name.startswith("answers"))
    code = labels("import", run / answers, "--batch", run / "batch.csv", "--ledger", run / "ledger.csv")
    assert code == 2 and message in capsys.readouterr().err


def test_a_batch_file_that_is_not_utf8_is_named_as_such(run, capsys):
    (run / "answers.csv").write_text("id,label\nb1,owl\n")
    (run / "latin.csv").write_bytes(b"id,rank,cluster,ood_score,flagged\ncaf\xe9,1,0,0.5,1\n")
    code = labels("import", run / "answers.csv", "--batch", run / "latin.csv", "--ledger", run / "ledger.csv")
    err = capsys.readouterr().err
    assert code == 2 and "not UTF-8 text" in err and "not a batch file" not in err


def test_import_needs_a_ledger_location(run, capsys):
    (run / "answers.csv").write_text("id,label\nb1,owl\n")
    assert labels("import", run / "answers.csv", "--batch", run / "batch.csv") == 2
    assert "--ledger" in capsys.readouterr().err


def _annotate(tasks, choices):
    """What Label Studio's JSON export holds after annotating ``tasks`` with ``choices``."""
    exported = []
    for number, (task, choice) in enumerate(zip(tasks, choices, strict=True), start=100):
        annotations = [] if choice is None else [
            {"id": 1, "was_cancelled": True, "result": []},
            {"id": 2, "was_cancelled": False, "result": [
                {"from_name": "label", "to_name": "image", "type": "choices",
                 "value": {"choices": [choice] if choice else []}}]},
        ]
        exported.append({"id": number, "data": task["data"], "meta": task["meta"], "annotations": annotations})
    return exported


def test_label_studio_round_trip(run, capsys):
    (run / "manifest.csv").write_text("id,path\nb1,img/b1.png\nb2,img/b2.png\nb3,img/b3.png\n")
    code = labels("export-batch", run / "batch.csv", "--out", run / "tasks.json",
                  "--manifest", run / "manifest.csv", "--prefix", "/data/local-files/?d=",
                  "--label-config", run / "config.xml", "--ledger", run / "ledger.csv")
    assert code == 0
    tasks = json.loads((run / "tasks.json").read_text())
    assert [t["data"]["aloe_id"] for t in tasks] == ["b1", "b2", "b3"]
    assert tasks[0]["data"]["image"] == "/data/local-files/?d=" + (run / "img/b1.png").as_posix()
    assert tasks[0]["meta"] == {"rank": "0", "cluster": "4", "ood_score": "2.5", "flagged": "1"}
    config = (run / "config.xml").read_text()
    assert '<Choice value="cat"/>' in config and '<Choice value="dog"/>' in config
    assert 'value="$image"' in config

    (run / "export.json").write_text(json.dumps(_annotate(tasks, ["owl", "cat", None])))
    assert labels("import", run / "export.json", "--batch", run / "batch.csv", "--ledger", run / "ledger.csv") == 0
    out = capsys.readouterr().out
    assert "1 task not yet annotated" in out and "new classes: owl" in out
    assert Ledger(run / "ledger.csv").labels(up_to_round=1) == {"a1": "cat", "a2": "dog", "b1": "owl", "b2": "cat"}


def test_label_studio_empty_choice_is_reported(run, capsys):
    assert labels("export-batch", run / "batch.csv", "--out", run / "tasks.json", "--prefix", "https://x/") == 0
    tasks = json.loads((run / "tasks.json").read_text())
    assert tasks[2]["data"]["image"] == "https://x/b3"
    (run / "export.json").write_text(json.dumps(_annotate(tasks, ["owl", "", "emu"])))
    code = labels("import", run / "export.json", "--batch", run / "batch.csv", "--ledger", run / "ledger.csv")
    assert code == 2
    assert "empty labels: task 2 (Label Studio id 101) ('b2')" in capsys.readouterr().err


def test_export_rejects_ids_missing_from_the_manifest(run, capsys):
    (run / "manifest.csv").write_text("id,path\nb1,img/b1.png\n")
    code = labels("export-batch", run / "batch.csv", "--out", run / "tasks.json", "--manifest", run / "manifest.csv")
    assert code == 2 and "2 batch ids not in the manifest" in capsys.readouterr().err
    assert not (run / "tasks.json").exists()


def test_import_beside_a_store_numbers_the_round_after_its_latest(tmp_path, capsys):
    ids = np.array([f"i{k}" for k in range(6)])
    np.savez(tmp_path / "pool.npz", ids=ids, features=np.random.default_rng(0).normal(size=(6, 3)))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ledger.csv").write_text("id,label\ni0,cat\ni1,dog\n")  # the starting labels
    store = tmp_path / "run" / "pool.zarr"
    assert embed_from_features(tmp_path / "pool.npz", tmp_path / "run" / "ledger.csv", store) == 0
    (tmp_path / "batch.csv").write_text("id,rank,cluster,ood_score,flagged\ni4,1,0,1.0,1\ni5,2,1,0.5,0\n")
    (tmp_path / "answers.csv").write_text("id,label\ni4,owl\ni5,cat\n")
    assert labels("import", tmp_path / "answers.csv", "--batch", tmp_path / "batch.csv", "--store", store) == 0
    assert "(round 1)" in capsys.readouterr().out
    entries = Ledger(tmp_path / "run" / "ledger.csv").entries()
    assert [(e.id, e.round) for e in entries] == [("i0", 0), ("i1", 0), ("i4", 1), ("i5", 1)]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["pull", "{run}/batch.csv", "--url", "http://127.0.0.1:9"], {"LABEL_STUDIO_API_KEY": "t0"},
         "cannot reach Label Studio at http://127.0.0.1:9"),
        (["pull", "{run}/batch.csv"], {}, "no Label Studio token: set LABEL_STUDIO_API_KEY or pass --token"),
        (["push", "{run}/batch.csv", "--url", "localhost:8080", "--token", "t0", "--prefix", "https://x/"], {},
         "--url must be the server's http(s) address"),
        (["push", "{run}/batch.csv", "--token", "t0", "--prefix", "https://x/", "--upload"], {},
         "--upload go with --images DIR"),
    ],
)
def test_push_and_pull_refuse_bad_settings_in_one_line(run, capsys, monkeypatch, argv, env, message):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = (run / "ledger.csv").read_text()
    code = labels(*[a.format(run=run) for a in argv], "--ledger", run / "ledger.csv")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert (run / "ledger.csv").read_text() == before
