"""Label Studio's JSON, JSON-MIN and CSV exports into the ledger: new classes typed, malformed answers refused."""

from __future__ import annotations

import csv
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aloe.internal.cli import run_cli
from aloe.loop.batch import resolve_typed_names
from aloe.loop.labels_cli import labels_group
from aloe.loop.labelstudio.exports import Annotation, parse_json_export
from aloe.loop.labelstudio.tasks import label_config
from aloe.loop.ledger import Ledger

BATCH = "id,rank,cluster,ood_score,flagged\nb1,0,4,2.5,1\nb2,1,7,1.5,1\nb3,2,1,0.5,0\n"


@pytest.fixture
def run(tmp_path):
    """A run directory with a ledger holding round 0 (cat, dog) and a batch b1..b3."""
    Ledger(tmp_path / "ledger.csv").append({"a1": "cat", "a2": "dog"}, 0, "initial")
    (tmp_path / "batch.csv").write_text(BATCH)
    return tmp_path


def labels(*argv):
    return run_cli(labels_group, [str(a) for a in argv])


def import_file(run, name, text):
    (run / name).write_text(text)
    return labels("import", run / name, "--batch", run / "batch.csv", "--ledger", run / "ledger.csv")


def full_task(number, item, choice=None, typed=None):
    """A task of Label Studio's JSON export with one annotation (``None``: not annotated)."""
    result = []
    if choice is not None:
        result.append({"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [choice]}})
    if typed is not None:
        result.append({"from_name": "new_class", "to_name": "image", "type": "textarea", "value": {"text": [typed]}})
    annotations = [{"id": number, "result": result, "was_cancelled": False}] if result else []
    return {"id": number, "data": {"image": f"/img/{item}.png", "aloe_id": item}, "annotations": annotations}


def test_label_config_is_open_world():
    cold = label_config([])
    assert "<Choices" not in cold and '<TextArea name="new_class" toName="image"' in cold
    assert "above" not in cold  # a cold start has no class list above the text box
    warm = label_config(["cat", 'say "hi"'])
    assert '<Choice value="cat"/>' in warm and "<Choice value='say \"hi\"'/>" in warm
    assert warm.index("<Choices") < warm.index("<TextArea")


def test_typed_new_class_imports_and_known_names_are_matched_up_to_case(run, capsys):
    export = [full_task(10, "b1", typed="  zebra "), full_task(11, "b2", typed="CAT"),
              full_task(12, "b3", choice="dog")]
    assert import_file(run, "export.json", json.dumps(export)) == 0
    out = capsys.readouterr().out
    assert "task 2 (Label Studio id 11): typed 'CAT', the known class 'cat'" in out
    assert "new classes: zebra" in out
    assert Ledger(run / "ledger.csv").labels() == {"a1": "cat", "a2": "dog", "b1": "zebra", "b2": "cat", "b3": "dog"}


def test_a_choice_and_a_different_typed_name_is_refused(run, capsys):
    before = (run / "ledger.csv").read_text()
    assert import_file(run, "export.json", json.dumps([full_task(10, "b1", choice="cat", typed="lynx")])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "task 1 (Label Studio id 10): both the class 'cat' and the new class 'lynx'" in err
    assert (run / "ledger.csv").read_text() == before


def test_a_reused_project_export_skips_earlier_rounds_already_in_the_ledger(run, capsys):
    earlier = [full_task(101, "a1", choice="cat"), full_task(102, "a2", typed="DOG"), full_task(103, "a3")]
    round_two = [*earlier, full_task(104, "b1", typed="owl"), full_task(105, "b2", choice="dog")]
    assert import_file(run, "export.json", json.dumps(round_two)) == 0
    out = capsys.readouterr().out
    assert "typed" not in out  # no note for the earlier round's answers
    assert out.endswith("2/3 of the batch labeled; new classes: owl; skipped 2 answers outside the batch, "
                        "already in the ledger\n")
    assert Ledger(run / "ledger.csv").labels() == {"a1": "cat", "a2": "dog", "b1": "owl", "b2": "dog"}


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (full_task(101, "a1", choice="dog"), "already labeled with a different label: task 1 (Label Studio id 101)"),
        (full_task(101, "zz", choice="dog"), "ids outside the batch: task 1 (Label Studio id 101) ('zz')"),
    ],
)
def test_an_answer_outside_the_batch_that_does_not_repeat_the_ledger_is_refused(run, capsys, task, message):
    before = (run / "ledger.csv").read_text()
    assert import_file(run, "export.json", json.dumps([task, full_task(104, "b1", choice="cat")])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert (run / "ledger.csv").read_text() == before


def test_a_task_labeled_since_by_another_file_is_not_waiting(run, capsys):
    export = json.dumps([full_task(10, "b1", choice="cat"), full_task(11, "b2"), full_task(12, "zz")])
    assert import_file(run, "export.json", export) == 0
    assert "1/3 of the batch labeled; 1 task not yet annotated\n" in capsys.readouterr().out  # not zz
    assert import_file(run, "answers.csv", "id,label\nb2,dog\n") == 0
    capsys.readouterr()
    assert import_file(run, "export.json", export) == 0
    out = capsys.readouterr().out
    assert "2/3 of the batch labeled\n" in out and "not yet annotated" not in out


def _with_value(**value):
    task = full_task(10, "b1", choice="cat")
    task["annotations"][0]["result"][0]["value"] = value
    return task


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (_with_value(choices="c0"), "task 1 (Label Studio id 10): 'choices' is str, expected a list of text"),
        (_with_value(choices=[7]), "task 1 (Label Studio id 10): 'choices' holds 7, not text"),
        ({**full_task(10, "b1"), "annotations": {"result": []}}, "'annotations' is dict, expected a list"),
        ({**full_task(10, "b1"), "annotations": [{"result": "cat"}]}, "'result' is str, expected a list"),
        ({**full_task(10, "b1"), "annotations": [{"result": [{"type": "choices", "value": ["cat"]}]}]},
         "a choices result's 'value' is list, expected an object"),
        ({**full_task(10, "b1"), "annotations": ["cat"]}, "an annotation is str, expected an object"),
        (_with_value(choices=["cat", "dog"]), "2 classes given ('cat', 'dog'); one per image"),
        ({"id": 10, "data": {"aloe_id": ["b1"]}, "annotations": []}, "aloe_id is list, expected text"),
        ("b1", "task 1 is str, expected an object"),
        ({"id": 10, "data": {"image": "x.png"}}, "task 1 (Label Studio id 10): no data.aloe_id"),
        ({"id": 10, "image": "x.png", "label": "cat"}, "task 1 (Label Studio id 10): no aloe_id"),
        ({"id": 10, "aloe_id": "b1", "label": 7}, "task 1 (Label Studio id 10): 'label' is int, expected"),
    ],
)
def test_malformed_answers_give_one_line_naming_the_task(run, capsys, task, message):
    before = (run / "ledger.csv").read_text()
    assert import_file(run, "export.json", json.dumps([task])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert (run / "ledger.csv").read_text() == before


def test_json_min_export_imports(run, capsys):
    export = [
        {"id": 10, "image": "/img/b1.png", "aloe_id": "b1", "label": "cat", "annotation_id": 1},
        {"id": 11, "image": "/img/b2.png", "aloe_id": "b2", "new_class": "Zebra", "annotation_id": 2},
        {"id": 12, "image": "/img/b3.png", "aloe_id": "b3"},
    ]
    assert import_file(run, "export.json", json.dumps(export)) == 0
    out = capsys.readouterr().out
    assert "new classes: Zebra" in out and "1 task not yet annotated" in out
    assert Ledger(run / "ledger.csv").labels() == {"a1": "cat", "a2": "dog", "b1": "cat", "b2": "Zebra"}


def _csv(rows):
    fields = ["aloe_id", "annotation_id", "annotator", "id", "image", "label", "new_class"]
    lines = [",".join(fields)]
    for row in rows:
        lines.append(",".join(_quote(str(row.get(f, ""))) for f in fields))
    return "\n".join(lines) + "\n"


def _quote(text):
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"') else text


def test_csv_export_imports_by_aloe_id_not_label_studio_id(run, capsys):
    text = _csv([
        {"aloe_id": "b1", "annotation_id": 1, "id": 3, "label": "dog"},
        {"aloe_id": "b2", "annotation_id": 2, "id": 1, "new_class": " owl "},
        {"aloe_id": "b3", "annotation_id": 3, "id": 2, "label": '{"choices": ["cat"]}'},
    ])
    assert list(csv.reader(text.splitlines()))[3][5] == '{"choices": ["cat"]}'
    assert import_file(run, "export.csv", text) == 0
    assert "new classes: owl" in capsys.readouterr().out
    assert Ledger(run / "ledger.csv").labels() == {"a1": "cat", "a2": "dog", "b1": "dog", "b2": "owl", "b3": "cat"}


def test_csv_export_error_names_the_line(run, capsys):
    text = _csv([{"aloe_id": "b1", "annotation_id": 1, "id": 3, "label": "dog", "new_class": "emu"}])
    assert import_file(run, "export.csv", text) == 2
    err = capsys.readouterr().err
    assert "export.csv: line 2 (Label Studio id 3): both the class 'dog' and the new class 'emu'" in err


def test_cancelled_and_unannotated_tasks_wait():
    cancelled = full_task(5, "b1", choice="cat")
    cancelled["annotations"][0]["was_cancelled"] = True
    answers, waiting = parse_json_export([cancelled, full_task(6, "b2"), full_task(7, "b3", typed=" ")], "x")
    assert waiting == ["b1", "b2"] and answers == [Annotation("b3", "", "task 3 (Label Studio id 7)", typed=False)]


names = st.text(alphabet="abAB ", min_size=1, max_size=4).map(str.strip).filter(bool)


@given(known=st.sets(names, max_size=4), typed=st.lists(names, min_size=1, max_size=6))
def test_typed_names_resolve_to_a_known_class_or_one_spelling_per_case_folded_name(known, typed):
    answers = [Annotation(f"i{k}", name, f"task {k}", typed=True) for k, name in enumerate(typed)]
    resolved, notes = resolve_typed_names(answers, known)
    known_keys = {k.casefold() for k in known}
    spelling = {}
    for before, after in zip(answers, resolved, strict=True):
        assert after.label.casefold() == before.label.casefold()
        if before.label in known:
            assert after.label == before.label  # a known class typed exactly stays itself
        elif before.label.casefold() in known_keys:
            assert after.label in known
        else:
            assert spelling.setdefault(after.label.casefold(), after.label) == after.label
    assert len(notes) == sum(a.label != r.label for a, r in zip(answers, resolved, strict=True))
