"""The argument checks the core shares (fmproto.pipeline.checks)."""

import numpy as np
import pytest

from fmproto.pipeline import checks


def test_labels_come_back_as_int64():
    y = checks.labels(np.array([2, 0, 1], dtype=np.uint8), 3)
    assert y.dtype == np.int64 and y.tolist() == [2, 0, 1]
    assert checks.labels([], 1, n=0).shape == (0,)


@pytest.mark.parametrize("y, n_classes, n, message", [
    ([0, 3, -1], 3, None, r"y must lie in 0\.\.2; got 3"),
    ([0, -1], 3, None, r"y must lie in 0\.\.2; got -1"),
    ([[0, 1]], 2, None, r"y must be 1-D integer labels; got int64 of shape \(1, 2\)"),
    ([0.0, 1.0], 2, None, r"y must be 1-D integer labels; got float64 of shape \(2,\)"),
    ([0, 1], 2, 3, r"y must be 1-D integer labels of length 3; got int64 of shape \(2,\)"),
    ([0], 0, None, r"n_classes must be an integer >= 1; got 0"),
])
def test_bad_labels_are_named(y, n_classes, n, message):
    with pytest.raises(ValueError, match=message):
        checks.labels(np.array(y), n_classes, n=n)


def test_check_int_names_the_range():
    assert checks.check_int(np.int32(4), "k", low=1) == 4
    for value in (True, 2.0, 0):
        with pytest.raises(ValueError, match=r"k must be an integer >= 1; got"):
            checks.check_int(value, "k", low=1)
    with pytest.raises(ValueError, match=r"k must be an integer in 1\.\.3; got 4"):
        checks.check_int(4, "k", low=1, high=3)
