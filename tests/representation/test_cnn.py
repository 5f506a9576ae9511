"""The convolutional feature block: numpy forward pass against a direct convolution, folding against
PyTorch's own forward pass, learning on a toy task, determinism, and its errors."""

import sys

import numpy as np
import pytest

from fmproto.representation import cnn, transform
from fmproto.search import knn
from fmproto.representation.transform import FeatureSpec

torch = pytest.importorskip("torch")


def bars(n: int, seed: int, shape=(12, 12)) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images of a horizontal (0), vertical (1) or diagonal (2) bar at a random place."""
    rng = np.random.default_rng(seed)
    height, width = shape
    images = rng.integers(0, 60, size=(n, height, width)).astype(np.float64)
    labels = rng.integers(0, 3, size=n)
    for image, label in zip(images, labels):
        r, c = rng.integers(2, height - 2), rng.integers(2, width - 2)
        if label == 0:
            image[r, 1:-1] = 250
        elif label == 1:
            image[1:-1, c] = 250
        else:
            np.fill_diagonal(image, 250)
    return images.astype(np.uint8), labels


def direct_embed(images: np.ndarray, state: dict) -> np.ndarray:
    """The network written out as its definition: every output pixel a sum over its 3x3 window."""
    x = ((images.astype(np.float64) - float(state["cnn_mean"])) / float(state["cnn_std"]))[:, None]  # (n, C, H, W)
    for layer in ("c1", "c2", "c3"):
        w, b = state[f"cnn_{layer}_w"].astype(np.float64), state[f"cnn_{layer}_b"].astype(np.float64)
        n, _, height, width = x.shape
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        y = np.zeros((n, len(w), height, width))
        for i in range(height):
            for j in range(width):
                y[:, :, i, j] = np.einsum("ncab,ocab->no", padded[:, :, i : i + 3, j : j + 3], w) + b
        y = np.maximum(y, 0)
        h2, w2 = height // 2, width // 2
        x = np.array([[[[y[s, o, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].max() for j in range(w2)] for i in range(h2)]
                       for o in range(len(w))] for s in range(n)])
    return np.maximum(x.reshape(len(x), -1) @ state["cnn_fc_w"].T.astype(np.float64) + state["cnn_fc_b"], 0)


def random_state(rng, width=3, embedding=5, shape=(12, 10)) -> dict:
    channels = (1, width, 2 * width, 4 * width)
    state = {"cnn_mean": np.float32(40.0), "cnn_std": np.float32(30.0)}
    for i, layer in enumerate(("c1", "c2", "c3")):
        state[f"cnn_{layer}_w"] = rng.standard_normal((channels[i + 1], channels[i], 3, 3)).astype(np.float32)
        state[f"cnn_{layer}_b"] = rng.standard_normal(channels[i + 1]).astype(np.float32)
    state["cnn_fc_w"] = rng.standard_normal((embedding, 4 * width * (shape[0] // 8) * (shape[1] // 8))).astype(np.float32)
    state["cnn_fc_b"] = rng.standard_normal(embedding).astype(np.float32)
    return state


@pytest.mark.parametrize("shape", [(12, 10), (17, 9)])
def test_embed_equals_the_direct_convolution(shape):
    rng = np.random.default_rng(0)
    state = random_state(rng, shape=shape)
    images = rng.integers(0, 256, size=(7, *shape)).astype(np.uint8)
    expected = direct_embed(images, state)
    np.testing.assert_allclose(cnn.embed(images, state), expected, rtol=1e-4, atol=1e-3 * np.abs(expected).max())


def test_chunks_do_not_change_the_embedding(monkeypatch):
    rng = np.random.default_rng(1)
    state = random_state(rng)
    images = rng.integers(0, 256, size=(10, 12, 10)).astype(np.uint8)
    whole = cnn.embed(images, state)
    monkeypatch.setattr(cnn, "_PATCH_ELEMENTS", 1)  # one image a chunk: other matrix shapes for the BLAS
    assert cnn.embed(images, state).tobytes() == whole.tobytes()
    assert cnn.embed(images[3:4], state).tobytes() == whole[3:4].tobytes()  # an image alone, as explain sees it


def test_folded_numpy_network_equals_pytorchs_eval_forward():
    images, labels = bars(200, seed=2)
    X = cnn._standardise(images, images.mean(), images.std())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = cnn._train(torch, X, labels, 3, width=4, embedding=8, epochs=2, learning_rate=3e-3, seed=0,
                         background=float(-images.mean() / images.std()))
    state = cnn._fold(net)
    state["cnn_mean"], state["cnn_std"] = np.float32(images.mean()), np.float32(images.std())
    with torch.no_grad():  # the layers as PyTorch runs them in eval mode, BatchNorm apart
        x = torch.from_numpy(X).unsqueeze(1)
        for layer in ("c1", "c2", "c3"):
            x = torch.nn.functional.max_pool2d(torch.relu(getattr(net, f"{layer}_bn")(getattr(net, layer)(x))), 2)
        expected = torch.relu(net.fc_bn(net.fc(x.flatten(1)))).numpy()
    np.testing.assert_allclose(cnn.embed(images, state), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_trained_features_separate_the_classes_and_training_is_deterministic():
    images, labels = bars(600, seed=3)
    test_images, test_labels = bars(200, seed=4)
    threads, rng_state = torch.get_num_threads(), torch.random.get_rng_state()
    state = cnn.fit(images, labels, 3, width=4, embedding=16, epochs=4, seed=5)
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), rng_state)  # left as found
    again = cnn.fit(images, labels, 3, width=4, embedding=16, epochs=4, seed=5)
    assert state.keys() == again.keys() and all(np.array_equal(state[key], again[key]) for key in state)
    assert float(state["cnn_mean"]) == pytest.approx(images.mean(), rel=1e-6)

    fit_features, test_features = cnn.embed(images, state), cnn.embed(test_images, state)
    assert fit_features.shape == (600, 16) and fit_features.dtype == np.float32
    predicted = knn.predict(test_features, fit_features, labels, 3, k=5)
    assert np.mean(predicted == test_labels) >= 0.95  # the bar's direction, wherever it lies


def test_each_epoch_is_reported_and_scoring_the_validation_set_changes_no_weight():
    images, labels = bars(300, seed=7)
    valid_images, valid_labels = bars(100, seed=8)
    records = []
    state = cnn.fit(images, labels, 3, width=4, embedding=8, epochs=3, seed=2, valid=(valid_images, valid_labels),
                    on_epoch=records.append)
    unscored = cnn.fit(images, labels, 3, width=4, embedding=8, epochs=3, seed=2)
    assert all(np.array_equal(state[key], unscored[key]) for key in state)
    assert [r["epoch"] for r in records] == [1, 2, 3] and {r["epochs"] for r in records} == {3}
    assert all(0 <= r["train_accuracy"] <= 1 and r["loss"] > 0 and r["seconds"] > 0 for r in records)
    assert all(r["valid_accuracy"] * 100 == round(r["valid_accuracy"] * 100) for r in records)  # a count of 100
    assert records[-1]["loss"] < records[0]["loss"]
    again = []
    cnn.fit(images, labels, 3, width=4, embedding=8, epochs=3, seed=2, valid=(valid_images, valid_labels),
            on_epoch=again.append)
    assert [{**r, "seconds": 0} for r in records] == [{**r, "seconds": 0} for r in again]


def test_the_last_epochs_validation_accuracy_is_the_trained_networks():
    images, labels = bars(200, seed=9)
    valid_images, valid_labels = bars(150, seed=10)
    mean, std = images.mean(), images.std()
    X, X_valid = (((x - mean) / std).astype(np.float32) for x in (images, valid_images))
    records = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = cnn._train(torch, X, labels, 3, width=4, embedding=8, epochs=2, learning_rate=3e-3,
                         seed=0, background=float(-mean / std), valid=(X_valid, valid_labels),
                         on_epoch=records.append)
    with torch.no_grad():
        logits = net(torch.from_numpy(X_valid).unsqueeze(1))
    assert records[-1]["valid_accuracy"] == np.mean(logits.argmax(1).numpy() == valid_labels)
    assert records[-1]["train_accuracy"] * 200 == round(records[-1]["train_accuracy"] * 200)


def test_cnn_block_joins_other_blocks_and_round_trips():
    images, labels = bars(120, seed=6)
    spec = FeatureSpec("cnn+hog", hog_cell=3, pca_components=10, cnn_width=2, cnn_embedding=6, cnn_epochs=1, cnn_seed=1)
    assert transform.block_widths(spec, (12, 12)) == [6, transform.block_widths(FeatureSpec("hog", hog_cell=3), (12, 12))[0]]
    state = transform.fit(images, spec, labels=labels, n_classes=3)
    Z = transform.transform(images[:5], spec, state)
    spec2, state2, _ = transform.from_arrays(transform.to_arrays(spec, state, False, False))
    assert spec2 == spec
    np.testing.assert_array_equal(transform.transform(images[:5], spec2, state2), Z)


@pytest.mark.parametrize("call, match", [
    (lambda: cnn.embed(np.zeros((1, 7, 12), np.uint8), {}), r"features.kind cnn needs images of at least 8x8 .*; got 7x12"),
    (lambda: transform.fit(bars(10, 0)[0], FeatureSpec("cnn")), r"features.kind cnn is trained on labels"),
    (lambda: cnn.fit(*bars(10, 0), 3, width=0), r"width must be an integer in 1..256; got 0"),
    (lambda: cnn.fit(*bars(10, 0), 2), r"labels must lie in 0..1; got 2"),
    (lambda: cnn.fit(*bars(10, 0), 3, learning_rate=float("nan")), r"learning_rate must be in \(0, 1\]; got nan"),
    (lambda: cnn.fit(*bars(10, 0), 3, valid=(np.zeros((2, 12, 11), np.uint8), [0, 1])), r"valid needs images of the "),
    (lambda: cnn.fit(*bars(10, 0), 3, valid=(bars(2, 1)[0], [0, 3])), r"valid labels must lie in 0..2; got 3"),
    (lambda: FeatureSpec("cnn").check((28, 6)), r"at least 8x8"),
])
def test_bad_arguments_are_one_line(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_missing_pytorch_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ValueError, match=r"trains with PyTorch, which is not installed; .*make env-cnn .*requirements/cnn\.txt"):
        cnn.fit(*bars(10, 0), 3)
