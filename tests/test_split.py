"""The shared stratified draw behind the oracle's test split and fine-tuning's validation split."""

from __future__ import annotations

import numpy as np

from aloe.internal.split import stratified_sample


def test_each_class_gives_its_take_sorted_and_seeded():
    labels = np.array(list("abcab" * 6))
    drawn = stratified_sample(labels, lambda n: n // 2, seed=3)
    assert drawn.dtype == np.int64 and np.array_equal(drawn, np.sort(drawn))
    assert [int(np.sum(labels[drawn] == c)) for c in "abc"] == [6, 6, 3]
    assert np.array_equal(drawn, stratified_sample(labels, lambda n: n // 2, seed=3))


def _three_of_ten_or_more(n: int) -> int:
    return 3 if n >= 10 else 0


def test_a_class_that_gives_none_does_not_shift_the_later_draws():
    labels = np.array(["a"] * 10 + ["b"] * 5 + ["c"] * 10)  # b's five give none
    skipping = stratified_sample(labels, _three_of_ten_or_more, seed=0)
    without_b = stratified_sample(labels[labels != "b"], _three_of_ten_or_more, seed=0)
    assert np.array_equal(skipping[labels[skipping] == "c"] - 15, without_b[without_b >= 10] - 10)
    assert np.array_equal(skipping[labels[skipping] == "a"], without_b[without_b < 10])


def test_too_few_classes_give_an_empty_sample():
    labels = np.array(["a"] * 10 + ["b"] * 5)
    assert len(stratified_sample(labels, _three_of_ten_or_more, seed=0, min_classes=2)) == 0
    assert len(stratified_sample(labels, lambda n: 3, seed=0, min_classes=2)) == 6
