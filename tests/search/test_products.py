"""fmproto.search.products: products whose bytes no BLAS kernel changes."""

import numpy as np
import pytest

from fmproto.search.products import exact_product, exact_product64


def test_exact_product_is_the_same_in_any_order_and_close_to_the_true_product():
    """Summed in another order (the inner axis permuted), as another BLAS kernel would: the same
    bytes; and within the grid's rounding of the float64 product."""
    rng = np.random.default_rng(4)
    X = (rng.standard_normal((6 * 5, 300)) * np.exp(rng.uniform(-20, 20, size=(6 * 5, 1)))).astype(np.float32)
    W = rng.standard_normal((300, 7)).astype(np.float32)
    product = exact_product(X, W, 5)
    order = rng.permutation(300)
    assert exact_product(X[:, order], W[order], 5).tobytes() == product.tobytes()
    reference = X.astype(np.float64) @ W.astype(np.float64)
    items = np.abs(X.reshape(6, 5, 300)).max(axis=(1, 2)).repeat(5)[:, None]
    bound = 300 * 2.0**-20 * items * np.abs(W).max()  # 21-bit grids for 300 inner terms: 2**-20 of each peak
    assert np.all(np.abs(product - reference) <= bound + 2.0**-23 * np.abs(reference))


def test_the_float64_product_is_the_grids_exact_product_and_rounds_to_the_float32_one():
    """On inputs already on the grid (small integers times powers of two) nothing is rounded: the float64
    product is the true one; and the float32 product is that float64 one rounded once."""
    rng = np.random.default_rng(5)
    X = rng.integers(-1000, 1000, size=(40, 64)) * 2.0**-7
    W = rng.integers(-1000, 1000, size=(64, 9)) * 2.0**3
    exact = exact_product64(X, W)
    assert np.array_equal(exact, np.einsum("ik,kj->ij", X, W))  # integer-valued sums well under 2**53
    assert exact_product(X, W).tobytes() == exact.astype(np.float32).tobytes()


def test_a_shape_that_does_not_multiply_is_refused():
    with pytest.raises(ValueError, match="cannot multiply"):
        exact_product64(np.ones((4, 3)), np.ones((2, 5)))
    with pytest.raises(ValueError, match="items of 3 rows"):
        exact_product64(np.ones((4, 3)), np.ones((3, 5)), rows_per_item=3)
