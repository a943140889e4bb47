"""The labeling loop against a real Label Studio server (installed from PyPI into its own venv).

One server for the session (start-up is about a minute on 2 cores, the first install about two),
launched when collection ends so that it boots while the earlier tests run; it is stopped at the
end whatever happens, and a server that cannot start fails the tests.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aloe.embedder.cli import command as embed_command
from aloe.internal.cli import run_cli
from aloe.loop.labels_cli import labels_group
from aloe.loop.labelstudio.client import LabelStudio
from aloe.loop.ledger import Ledger
from aloe.selector.cli import cli as select_command
from aloe.store import open_store

pytestmark = pytest.mark.labelstudio

OFFLINE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "offline-default.yaml"
N_ITEMS = 24
BUDGET = 5


@pytest.fixture(scope="module")
def server(label_studio):
    """The session's Label Studio (launched by conftest.py when collection ends)."""
    return label_studio


@pytest.fixture
def run(tmp_path):
    """A run after round 0: a file pool (manifest), its features, four labels, a store and a batch."""
    rng = np.random.default_rng(3)
    ids = [f"item-{k:02d}" for k in range(N_ITEMS)]
    (tmp_path / "pics").mkdir()
    rows = ["id,path"]
    for k, item in enumerate(ids):
        Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(tmp_path / "pics" / f"{item}.png")
        rows.append(f"{item},pics/{item}.png")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    features = rng.normal(size=(N_ITEMS, 6)) + np.repeat(np.eye(6)[:4] * 4, N_ITEMS // 4, axis=0)
    np.savez(tmp_path / "pool.npz", ids=np.array(ids), features=features)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ledger.csv").write_text("id,label\nitem-00,c0\nitem-01,c0\nitem-06,c1\nitem-07,c1\n")
    store = tmp_path / "run" / "pool.zarr"
    embed = ["--from-features", tmp_path / "pool.npz", "--labels", tmp_path / "run" / "ledger.csv",
             "--store", store, "--quiet"]
    assert run_cli(embed_command, [str(a) for a in embed]) == 0
    select = ["--store", store, "--budget", BUDGET, "--out", tmp_path / "run" / "batch.csv", "--strategy", "random"]
    assert run_cli(select_command, [str(a) for a in select]) == 0
    return tmp_path


def labels(*argv):
    return run_cli(labels_group, [str(a) for a in argv])


def _get(server, path: str) -> tuple[int, bytes]:
    request = urllib.request.Request(server.url + path, headers={"Authorization": f"Token {server.token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()


def _annotate(client: LabelStudio, task_id: int, choice: str | None = None, typed: str | None = None) -> None:
    result = []
    if choice is not None:
        result.append({"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [choice]}})
    if typed is not None:
        result.append({"from_name": "new_class", "to_name": "image", "type": "textarea", "value": {"text": [typed]}})
    client.request("POST", f"/api/tasks/{task_id}/annotations", body={"result": result})


def test_push_annotate_export_pull_and_the_next_round(server, run, capsys):
    store = run / "run" / "pool.zarr"
    batch = run / "run" / "batch.csv"
    images = server.document_root / "round 1"  # a space: the URLs must be encoded
    title = "aloe live test"
    connect = ["--url", server.url, "--token", server.token, "--project", title]
    push = ["push", batch, "--store", store, "--manifest", run / "manifest.csv", "--images", images,
            "--document-root", server.document_root, *connect]
    assert labels(*push) == 0, capsys.readouterr().err
    assert f"pushed {BUDGET} tasks" in capsys.readouterr().out
    assert labels(*push) == 0
    out = capsys.readouterr().out
    assert "pushed 0 tasks" in out and f"{BUDGET} were already there" in out

    client = LabelStudio(server.url, server.token)
    project = client.project_named(title)
    assert '<Choice value="c0"/>' in project["label_config"] and 'name="new_class"' in project["label_config"]
    tasks = json.loads(client.export(project["id"]))
    batch_ids = [line.split(",")[0] for line in batch.read_text().splitlines()[1:]]
    assert sorted(t["data"]["aloe_id"] for t in tasks) == sorted(batch_ids)
    for task in tasks:
        url = task["data"]["image"]
        assert url.startswith("/data/local-files/?d=round%201/")
        status, body = _get(server, url)
        assert status == 200
        assert body == (run / "pics" / f"{task['data']['aloe_id']}.png").read_bytes()

    ledger = Ledger(run / "run" / "ledger.csv")
    before = ledger.path.read_text()
    by_id = {t["data"]["aloe_id"]: t["id"] for t in tasks}
    first, second, *rest = batch_ids
    _annotate(client, by_id[first], typed="  Zebra ")
    _annotate(client, by_id[second], typed="C1")
    assert labels("pull", batch, "--store", store, *connect) == 2
    assert f"{len(rest)} of {BUDGET} batch items not yet annotated" in capsys.readouterr().err
    assert ledger.path.read_text() == before
    for k, item in enumerate(rest):
        _annotate(client, by_id[item], choice=f"c{k % 2}")

    expected = {**ledger.labels(), first: "Zebra", second: "c1", **{item: f"c{k % 2}" for k, item in enumerate(rest)}}
    for kind, suffix in (("JSON", "json"), ("JSON_MIN", "json"), ("CSV", "csv")):
        export = run / f"export-{kind}.{suffix}"
        export.write_bytes(client.export(project["id"], kind, all_tasks=False))
        copy = run / f"ledger-{kind}.csv"
        shutil.copyfile(ledger.path, copy)
        assert labels("import", export, "--batch", batch, "--ledger", copy, "--round", 1) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "new classes: Zebra" in out and "typed 'C1', the known class 'c1'" in out, (kind, out)
        assert Ledger(copy).labels() == expected, kind

    personal_token = client.request("POST", "/api/token/")["token"]  # the newer kind of token
    pull = ["pull", batch, "--store", store, "--url", server.url, "--token", personal_token, "--project", title]
    assert labels(*pull) == 0
    assert f"{BUDGET}/{BUDGET} of the batch labeled" in capsys.readouterr().out
    assert ledger.labels() == expected
    assert {e.round for e in ledger.entries() if e.id in batch_ids} == {1}
    assert labels(*push) == 0, capsys.readouterr().err  # the interface now offers the new class
    assert '<Choice value="Zebra"/>' in client.project_named(title)["label_config"]

    embed = ["--from-features", run / "pool.npz", "--labels", ledger.path, "--store", store, "--quiet"]
    assert run_cli(embed_command, [str(a) for a in embed]) == 0
    next_round = open_store(store, mode="r").round(1)
    assert set(next_round.class_names) == {"c0", "c1", "Zebra"}


def test_push_uploads_array_pool_images(server, tmp_path, capsys):
    batch = "id,rank,cluster,ood_score,flagged\nmnist-0000,0,3,2.0,1\nmnist-0001,1,5,1.0,0\n"
    (tmp_path / "batch.csv").write_text(batch)
    (tmp_path / "ledger.csv").write_text("id,label\n")  # a cold start: no classes to choose from yet
    push = ["push", tmp_path / "batch.csv", "--ledger", tmp_path / "ledger.csv", "--config", OFFLINE_CONFIG,
            "--images", tmp_path / "written", "--upload", "--url", server.url, "--token", server.token,
            "--project", "aloe upload test"]
    assert labels(*push) == 0, capsys.readouterr().err
    assert "pushed 2 tasks" in capsys.readouterr().out
    assert labels(*push) == 0 and "pushed 0 tasks" in capsys.readouterr().out

    client = LabelStudio(server.url, server.token)
    project = client.project_named("aloe upload test")
    assert "<Choices" not in project["label_config"] and 'name="new_class"' in project["label_config"]
    tasks = json.loads(client.export(project["id"]))
    assert sorted(t["data"]["aloe_id"] for t in tasks) == ["mnist-0000", "mnist-0001"]
    for task in tasks:
        assert task["meta"]["rank"] in ("0", "1")
        status, body = _get(server, task["data"]["image"])
        assert status == 200 and body == (tmp_path / "written" / f"{task['data']['aloe_id']}.png").read_bytes()
