"""Image sources: manifest, folder, CIFAR-100(-LT) from a CIFAR-format file, split lists, MNIST-LT."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aloe.data import sources
from aloe.data.longtail import longtail_counts
from aloe.data.sources import (
    Cifar100Data,
    FolderData,
    LongTail,
    ManifestData,
    MnistLTData,
    SplitListData,
    build_source,
)
from aloe.errors import AloeError


def _png(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), colour).save(path)
    return path


def test_manifest_reads_ids_paths_labels_relative_to_the_csv(tmp_path):
    _png(tmp_path / "img" / "a.png", (255, 0, 0))
    _png(tmp_path / "img" / "b.png", (0, 0, 255))
    (tmp_path / "m.csv").write_text("id,path,label\nx1,img/a.png,red\nx2,img/b.png,blue\n")
    source = build_source(ManifestData(kind="manifest", path=tmp_path / "m.csv"))
    assert source.ids == ["x1", "x2"] and source.labels == ["red", "blue"]
    image = source.load(1)
    assert image.mode == "RGB" and image.size == (12, 10) and image.getpixel((0, 0)) == (0, 0, 255)


def test_manifest_without_labels_and_bad_manifests(tmp_path):
    _png(tmp_path / "a.png", (1, 2, 3))
    (tmp_path / "m.csv").write_text("id,path\nonly,a.png\n")
    assert build_source(ManifestData(kind="manifest", path=tmp_path / "m.csv")).labels is None
    (tmp_path / "dup.csv").write_text("id,path\nsame,a.png\nsame,a.png\n")
    with pytest.raises(AloeError, match="duplicate ids: 'same'"):
        build_source(ManifestData(kind="manifest", path=tmp_path / "dup.csv"))
    (tmp_path / "bad.csv").write_text("name,file\nx,a.png\n")
    with pytest.raises(AloeError, match="'id' and 'path'"):
        build_source(ManifestData(kind="manifest", path=tmp_path / "bad.csv"))


def test_unreadable_file_raises_on_load_only(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "m.csv").write_text("id,path\nb,broken.png\n")
    source = build_source(ManifestData(kind="manifest", path=tmp_path / "m.csv"))
    with pytest.raises(OSError):
        source.load(0)


def test_folder_labels_come_from_subfolders(tmp_path):
    _png(tmp_path / "cat" / "1.png", (9, 9, 9))
    _png(tmp_path / "dog" / "2.jpg", (8, 8, 8))
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    source = build_source(FolderData(kind="folder", root=tmp_path))
    assert source.ids == ["cat/1.png", "dog/2.jpg"] and source.labels == ["cat", "dog"]


@pytest.fixture
def trust_written(monkeypatch):
    """Make the files a test writes torchvision's known CIFAR-100 checksums (the real loader, and the
    real choice of which files a split checks, then read them): call it with the folder's root."""
    from torchvision.datasets import CIFAR100

    def trust(root: Path) -> None:
        md5 = {name: sources.file_md5(root / "cifar-100-python" / name) for name in ("train", "test", "meta")}
        monkeypatch.setattr(CIFAR100, "train_list", [["train", md5["train"]]])
        monkeypatch.setattr(CIFAR100, "test_list", [["test", md5["test"]]])
        monkeypatch.setattr(CIFAR100, "meta", {**CIFAR100.meta, "md5": md5["meta"]})

    return trust


def _write_cifar100(root: Path, per_class: int, seed: int = 0) -> np.ndarray:
    """A CIFAR-100 python-format folder with ``per_class`` train images per class (shuffled)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    fine = rng.permutation(np.repeat(np.arange(100), per_class))
    data = rng.integers(0, 256, size=(len(fine), 3 * 32 * 32), dtype=np.uint8)
    for name, labels, pixels in (("train", fine, data), ("test", fine[:10], data[:10])):
        with (folder / name).open("wb") as handle:
            pickle.dump({"data": pixels, "fine_labels": labels.tolist()}, handle)
    with (folder / "meta").open("wb") as handle:
        pickle.dump({"fine_label_names": [f"name{i:02d}" for i in range(100)]}, handle)
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def test_cifar100_lt_counts_match_the_formula_exactly(tmp_path, trust_written):
    pixels = _write_cifar100(tmp_path, per_class=12)
    trust_written(tmp_path)
    cfg = Cifar100Data(kind="cifar100", root=tmp_path, longtail=LongTail(n0=10, alpha=0.1, seed=4))
    source = build_source(cfg)
    counts = Counter(source.labels)
    assert [counts[f"name{i:02d}"] for i in range(100)] == longtail_counts(100, 10, 0.1).tolist()
    assert source.name == "cifar100-lt" and source.describe()["longtail"]["seed"] == 4
    position = int(source.ids[7].rsplit("-", 1)[1])
    assert np.array_equal(np.asarray(source.load(7)), pixels[position])
    assert build_source(cfg).ids == source.ids
    other = build_source(cfg.model_copy(update={"longtail": LongTail(n0=10, alpha=0.1, seed=5)}))
    assert other.ids != source.ids


def test_cifar100_full_and_missing(tmp_path, trust_written):
    _write_cifar100(tmp_path, per_class=2)
    trust_written(tmp_path)
    full = build_source(Cifar100Data(kind="cifar100", root=tmp_path))
    assert len(full) == 200 and full.ids[0] == "cifar100-train-000"
    test = build_source(Cifar100Data(kind="cifar100", root=tmp_path, split="test"))
    assert len(test) == 10
    with pytest.raises(AloeError, match="download: true"):
        build_source(Cifar100Data(kind="cifar100", root=tmp_path / "absent"))


class _RunsCode:
    """Unpickling this creates the folder ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_planted_cifar100_file_is_refused_before_unpickling(tmp_path, capsys):
    _write_cifar100(tmp_path, per_class=1)  # real loader, torchvision's real checksums
    marker = tmp_path / "code-ran"
    with (tmp_path / "cifar-100-python" / "train").open("wb") as handle:
        pickle.dump({"data": _RunsCode(marker), "fine_labels": []}, handle)
    with pytest.raises(AloeError, match=r"train: MD5 [0-9a-f]{32} is not CIFAR-100's 16019d7e.*refusing to unpickle"):
        build_source(Cifar100Data(kind="cifar100", root=tmp_path))
    assert not marker.exists()
    pickle.loads(pickle.dumps(_RunsCode(marker)))  # the planted object does run code when unpickled
    assert marker.is_dir()


def test_damaged_cifar100_file_is_refused(tmp_path, trust_written):
    _write_cifar100(tmp_path, per_class=1)
    trust_written(tmp_path)
    meta = tmp_path / "cifar-100-python" / "meta"
    meta.write_bytes(meta.read_bytes()[:-5])
    with pytest.raises(AloeError, match="meta: MD5 .* refusing to unpickle"):
        build_source(Cifar100Data(kind="cifar100", root=tmp_path, split="test"))


def test_a_split_checks_only_its_own_files(tmp_path, trust_written):
    """Loading the test split neither reads nor judges the train file; the train split still refuses it."""
    _write_cifar100(tmp_path, per_class=1)
    trust_written(tmp_path)
    train = tmp_path / "cifar-100-python" / "train"
    train.write_bytes(train.read_bytes()[:-5])
    assert len(build_source(Cifar100Data(kind="cifar100", root=tmp_path, split="test"))) == 10
    with pytest.raises(AloeError, match="train: MD5 .* refusing to unpickle"):
        build_source(Cifar100Data(kind="cifar100", root=tmp_path))


def test_a_missing_split_list_says_where_the_lists_come_from(tmp_path):
    cfg = SplitListData(kind="split_list", name="imagenet-lt", list_file=tmp_path / "ImageNet_LT_train.txt",
                        root=tmp_path)
    with pytest.raises(AloeError, match="split list not found: .*ImageNet_LT_train.txt .*OLTR repository"):
        build_source(cfg)


def test_split_list_paths_under_root(tmp_path):
    _png(tmp_path / "images" / "n01" / "a.JPEG", (1, 1, 1))
    _png(tmp_path / "images" / "n02" / "b.JPEG", (2, 2, 2))
    (tmp_path / "ImageNet_LT_train.txt").write_text("n01/a.JPEG 0\nn02/b.JPEG 1\n\n")
    cfg = SplitListData(kind="split_list", name="imagenet-lt", list_file=tmp_path / "ImageNet_LT_train.txt",
                        root=tmp_path / "images")
    source = build_source(cfg)
    assert source.ids == ["n01/a.JPEG", "n02/b.JPEG"] and source.labels == ["0", "1"]
    assert source.load(1).getpixel((0, 0)) == (2, 2, 2)
    (tmp_path / "bad.txt").write_text("n01/a.JPEG\n")
    with pytest.raises(AloeError, match="line 1"):
        build_source(cfg.model_copy(update={"list_file": tmp_path / "bad.txt"}))


def test_mnist_lt_counts_seed_and_pixels():
    cfg = MnistLTData(kind="mnist_lt", longtail=LongTail(n0=100, alpha=0.1, seed=1))
    source = build_source(cfg)
    counts = Counter(source.labels)
    assert [counts[f"digit-{d}"] for d in range(10)] == longtail_counts(10, 100, 0.1).tolist()
    assert build_source(cfg).ids == source.ids
    assert build_source(MnistLTData(kind="mnist_lt", longtail=LongTail(n0=100, alpha=0.1, seed=2))).ids != source.ids
    image = source.load(0)
    assert image.mode == "RGB" and image.size == (28, 28) and np.asarray(image).max() > 100
