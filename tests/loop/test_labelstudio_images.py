"""``aloe labels export-batch --images``: the batch's images written out and referenced as local files."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from aloe.data.sources import ArrayImageSource
from aloe.internal.cli import run_cli
from aloe.loop.labels_cli import labels_group
from aloe.loop.labelstudio.images import file_name, local_files_url, write_images

ROOT = Path(__file__).resolve().parents[2]


def labels(*argv):
    return run_cli(labels_group, [str(a) for a in argv])


def test_array_pool_images_are_written_as_png(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 5, 4), dtype=np.uint8)
    source = ArrayImageSource("toy", ["x0", "x/1", "x2"], pixels, None, {})
    files = write_images(["x2", "x/1"], source, tmp_path / "images")
    assert list(files) == ["x2", "x/1"]
    assert files["x2"].name == "x2.png" and "/" not in files["x/1"].name
    for item, position in (("x2", 2), ("x/1", 1)):
        with Image.open(files[item]) as image:
            assert np.array_equal(np.asarray(image.convert("L")), pixels[position])


def test_ids_outside_the_pool_are_refused(tmp_path):
    source = ArrayImageSource("toy", ["x0"], np.zeros((1, 2, 2), np.uint8), None, {})
    with pytest.raises(Exception, match="1 batch ids are not in the pool toy"):
        write_images(["nope"], source, tmp_path)


@given(st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=8, unique=True))
def test_file_names_are_plain_and_distinct(ids):
    names = [file_name(item, ".png") for item in ids]
    assert len(set(names)) == len(names)
    assert all("/" not in name and not name.startswith(".") for name in names)


def test_local_files_url_is_relative_and_encoded(tmp_path):
    path = tmp_path / "root" / "round 1" / "a b#c.png"
    url = local_files_url(path, tmp_path / "root")
    assert url == "/data/local-files/?d=round%201/a%20b%23c.png"
    assert parse_qs(urlsplit(url).query)["d"] == ["round 1/a b#c.png"]


@pytest.fixture
def file_pool(tmp_path):
    """A manifest of two PNG files, one with a space and a '#' in its name, and a batch of both."""
    (tmp_path / "pics").mkdir()
    for name, value in (("one.png", 10), ("two #2.png", 200)):
        Image.fromarray(np.full((4, 4), value, np.uint8)).save(tmp_path / "pics" / name)
    (tmp_path / "manifest.csv").write_text("id,path\np1,pics/one.png\np 2,pics/two #2.png\n")
    (tmp_path / "batch.csv").write_text("id,rank,cluster,ood_score,flagged\np 2,0,1,2.0,1\np1,1,0,1.0,0\n")
    return tmp_path


def test_export_with_images_serves_them_as_local_files(file_pool, capsys):
    root = file_pool / "served"
    code = labels("export-batch", file_pool / "batch.csv", "--out", file_pool / "tasks.json",
                  "--manifest", file_pool / "manifest.csv", "--images", root / "round 1")
    out = capsys.readouterr().out
    assert code == 0
    assert f"LOCAL_FILES_SERVING_ENABLED=true LOCAL_FILES_DOCUMENT_ROOT={root.resolve()}" in out
    assert f"absolute local path {(root / 'round 1').resolve()}" in out
    tasks = json.loads((file_pool / "tasks.json").read_text())
    for task in tasks:
        relative = parse_qs(urlsplit(task["data"]["image"]).query)["d"][0]
        assert task["data"]["image"].startswith("/data/local-files/?d=round%201/")
        assert (root / relative).read_bytes() == (file_pool / "pics" / ("one.png" if task["data"]["aloe_id"] == "p1"
                                                                           else "two #2.png")).read_bytes()


def test_export_with_images_and_prefix_points_at_the_hosted_copy(file_pool, capsys):
    code = labels("export-batch", file_pool / "batch.csv", "--out", file_pool / "tasks.json",
                  "--manifest", file_pool / "manifest.csv", "--images", file_pool / "up",
                  "--prefix", "https://img.example.org/b1/")
    assert code == 0 and "LOCAL_FILES" not in capsys.readouterr().out
    images = [t["data"]["image"] for t in json.loads((file_pool / "tasks.json").read_text())]
    assert images[1] == "https://img.example.org/b1/p1.png"
    assert images[0].startswith("https://img.example.org/b1/p_2-") and images[0].endswith(".png")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--images", "{tmp}/served", "--document-root", "{tmp}/served"], "not the root itself"),
        (["--images", "{tmp}/served", "--document-root", "{tmp}/elsewhere"], "is not under the document root"),
        (["--config", "x.yaml"], "--config, --document-root and --upload go with --images"),
        ([], "say where the images are"),
    ],
)
def test_export_refuses_images_label_studio_cannot_serve(file_pool, capsys, extra, message):
    argv = [a.format(tmp=file_pool) for a in extra]
    if "--images" in argv:
        argv += ["--manifest", file_pool / "manifest.csv"]
    code = labels("export-batch", file_pool / "batch.csv", "--out", file_pool / "tasks.json", *argv)
    assert code == 2 and message in capsys.readouterr().err
    assert not (file_pool / "tasks.json").exists() and not (file_pool / "served").exists()


def test_export_writes_the_offline_pool_digits_from_its_config(tmp_path, capsys):
    (tmp_path / "batch.csv").write_text("id,rank,cluster,ood_score,flagged\nmnist-0002,0,1,2.0,1\n")
    code = labels("export-batch", tmp_path / "batch.csv", "--out", tmp_path / "tasks.json",
                  "--config", ROOT / "configs" / "offline-default.yaml", "--images", tmp_path / "images")
    assert code == 0, capsys.readouterr().err
    [task] = json.loads((tmp_path / "tasks.json").read_text())
    assert task["data"]["image"] == "/data/local-files/?d=images/mnist-0002.png"
    with Image.open(tmp_path / "images" / "mnist-0002.png") as image:
        digit = np.asarray(image)
    assert digit.shape[:2] == (28, 28) and digit.max() > 100 and digit.min() == 0


@pytest.mark.parametrize("option", ["--out", "--label-config"])
def test_export_keeps_an_existing_file_unless_told_to_overwrite(file_pool, capsys, option):
    ledger = file_pool / "labels.csv"
    ledger.write_text("id,label\n")
    paths = {"--out": file_pool / "tasks.json", "--label-config": file_pool / "interface.xml"}
    paths[option].write_text("precious")
    argv = ["export-batch", file_pool / "batch.csv", "--manifest", file_pool / "manifest.csv",
            "--prefix", "https://img.example.org/", "--ledger", ledger,
            "--out", paths["--out"], "--label-config", paths["--label-config"]]
    assert labels(*argv) == 2
    assert f"{option} {paths[option]} exists; pass --overwrite" in capsys.readouterr().err
    assert paths[option].read_text() == "precious"
    assert labels(*argv, "--overwrite") == 0
    assert json.loads(paths["--out"].read_text())[0]["data"]["aloe_id"] == "p 2"
    assert "<View>" in paths["--label-config"].read_text()
