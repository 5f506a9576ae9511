"""A small convolutional network whose last hidden layer is a feature block (``features.kind`` cnn).

Three blocks of 3x3 convolution (padding 1) -> ReLU -> 2x2 max pool (``width``, ``2 width``, ``4 width`` channels),
then a fully connected layer to ``embedding`` units -> ReLU: the features. ``fit`` trains it with PyTorch
(BatchNorm, dropout and a linear layer to the classes; AdamW, one-cycle rate, random mirrors and shifts);
``embed`` applies it in numpy alone, BatchNorm folded in. The same weights on every x86-64 CPU: seeded,
deterministic algorithms, a fixed thread count (one and two threads sum differently) and ``PORTABLE_KERNELS``."""

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from fmproto.pipeline.checks import check_int, labels as checked_labels
from fmproto.search.products import exact_product

BATCH = 128
SHIFT = 2  # the largest training shift, pixels
DROPOUT = 0.2
WEIGHT_DECAY = 5e-4
_EPS = 1e-5  # BatchNorm's
_LAYERS = ("c1", "c2", "c3")
# float32 3x3 patches gathered at once in ``embed``: 4 MB. Their float64 grids then stay under glibc's 32 MB mmap
# threshold and reuse freed memory; four times as many took 1.4x the time, faulting fresh pages in.
_PATCH_ELEMENTS = 1 << 20

# ATen, oneDNN and MKL pick kernels by the CPU, each summing in its own order, and training turns a last-bit
# difference into another network. Read once, at load: kernels every x86-64 CPU runs alike, for 1.7x the time.
PORTABLE_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"}


def import_torch():
    """``torch`` with ``PORTABLE_KERNELS`` in force; ``ValueError`` if it is not installed or was
    loaded earlier in this process with other kernel settings."""
    if "torch" not in sys.modules:
        os.environ.update(PORTABLE_KERNELS)
    try:
        import torch
    except ImportError:
        raise ValueError("features.kind cnn trains with PyTorch, which is not installed; install the optional extra: "
                         "make env-cnn (make best and make sweep do), or pip install -r requirements/cnn.txt") from None
    if (any(os.environ.get(key) != value for key, value in PORTABLE_KERNELS.items())
            or torch.backends.cpu.get_cpu_capability() != "DEFAULT"):
        raise ValueError(f"PyTorch was loaded before fmproto.representation.cnn could pin its CPU kernels ({PORTABLE_KERNELS}); "
                         "train the network in a fresh process")
    return torch


def check_shape(image_shape: tuple[int, ...]) -> None:
    """``ValueError`` unless images of ``image_shape`` (H, W) survive three 2x2 poolings."""
    height, width = image_shape
    if height < 8 or width < 8:
        raise ValueError(f"features.kind cnn needs images of at least 8x8 (three 2x2 poolings); got {height}x{width}")


def fit(images: np.ndarray, labels: np.ndarray, n_classes: int, *, width: int = 16, embedding: int = 128,
        epochs: int = 15, learning_rate: float = 3e-3, seed: int = 0, threads: int = 2,
        valid: tuple[np.ndarray, np.ndarray] | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> dict[str, np.ndarray]:
    """Train on ``images (n, H, W)`` uint8 with ``labels (n,)``; the float32 state ``embed`` needs: ``cnn_mean``,
    ``cnn_std``, ``cnn_{c1,c2,c3}_w (out, in, 3, 3)`` and ``_b``, ``cnn_fc_w (embedding, 4 width (H//8) (W//8))``
    and ``cnn_fc_b``.

    After each epoch ``on_epoch(record)`` gets its ``epoch`` (from 1), ``epochs``, ``loss`` (the mean cross-entropy
    of the epoch's training rows as trained: shifted, mirrored, with dropout), ``train_accuracy`` (of the same
    predictions), ``valid_accuracy`` (of the network as it stands on ``valid (images, labels)``, None without
    it; scoring changes no weight) and ``seconds``."""
    check_shape(images.shape[1:])
    for checked in ((width, "width", 1, 256), (embedding, "embedding", 1, 4096), (epochs, "epochs", 1, 1000),
                    (threads, "threads", 1, 256), (n_classes, "n_classes", 1, 1 << 16), (seed, "seed", 0, 2**31 - 1)):
        check_int(*checked)
    if not 0 < float(learning_rate) <= 1:
        raise ValueError(f"learning_rate must be in (0, 1]; got {learning_rate!r}")
    if len(images) < 2 or len(labels) != len(images):
        raise ValueError(f"the network needs at least 2 training images with one label each; got {len(images)} and {len(labels)}")
    labels = checked_labels(labels, n_classes, "labels")
    if valid is not None:
        check_shape(valid[0].shape[1:])
        if valid[0].shape[1:] != images.shape[1:] or len(valid[1]) != len(valid[0]):
            raise ValueError(f"valid needs images of the training images' shape with one label each; got "
                             f"{valid[0].shape} and {len(valid[1])} labels")
        valid = valid[0], checked_labels(valid[1], n_classes, "valid labels")
    torch = import_torch()

    pixels = images.astype(np.float64)
    mean, std = float(pixels.mean()), float(pixels.std()) or 1.0
    previous = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            scored = None if valid is None else (_standardise(valid[0], mean, std), valid[1])
            net = _train(torch, _standardise(images, mean, std), labels, int(n_classes), int(width), int(embedding),
                         int(epochs), float(learning_rate), int(seed), (0 - mean) / std, scored, on_epoch)
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])
    return {**_fold(net), "cnn_mean": np.float32(mean), "cnn_std": np.float32(std)}


def embed(images: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    """The features ``(n, embedding)`` float32 of ``images (n, H, W)``: the same bytes for an image alone
    or in a set, on any CPU or BLAS (``fmproto.search.products.exact_product``). Chunks run a core each, on one BLAS thread."""
    check_shape(images.shape[1:])
    height, width = images.shape[1:]
    widest = max(height * width * 9 * state["cnn_c1_w"].shape[1], (height // 2) * (width // 2) * 9 * state["cnn_c2_w"].shape[1])
    chunk = max(1, _PATCH_ELEMENTS // widest)
    out = np.empty((len(images), len(state["cnn_fc_b"])), dtype=np.float32)

    def run(start: int) -> None:
        x = _standardise(images[start : start + chunk], float(state["cnn_mean"]), float(state["cnn_std"]))[..., None]
        for layer in _LAYERS:
            x = _conv_relu_pool(x, state[f"cnn_{layer}_w"], state[f"cnn_{layer}_b"])
        x = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # PyTorch's flattening order: channel, row, column
        out[start : start + chunk] = np.maximum(exact_product(x, state["cnn_fc_w"].T, 1) + state["cnn_fc_b"], 0)

    starts = range(0, len(images), chunk)
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1) or 1) as pool:
        list(pool.map(run, starts))
    return out


def _standardise(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    return (images.astype(np.float32) - np.float32(mean)) / np.float32(std)


def _conv_relu_pool(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x (n, H, W, C)`` -> 3x3 convolution, padding 1 -> ReLU -> 2x2 max pool (floor).
    Pooled before the bias and ReLU, which commute with a maximum: a quarter of the work."""
    n, height, width, channels = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = np.concatenate([padded[:, dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)],
                             axis=3)  # (n, H, W, 9 C), ordered (dy, dx, channel)
    kernel = w.transpose(2, 3, 1, 0).reshape(9 * channels, -1)  # the same order, by output channel
    y = exact_product(patches.reshape(-1, 9 * channels), kernel, height * width).reshape(n, height, width, -1)
    h2, w2 = height // 2, width // 2
    pooled = y[:, : 2 * h2, : 2 * w2].reshape(n, h2, 2, w2, 2, -1).max(axis=(2, 4))
    pooled += b
    return np.maximum(pooled, 0, out=pooled)


def _train(torch, X: np.ndarray, labels: np.ndarray, n_classes: int, width: int, embedding: int, epochs: int,
           learning_rate: float, seed: int, background: float, valid=None, on_epoch=None):
    """The trained network (in eval mode) on standardised images ``X (n, H, W)``; ``valid`` standardised."""
    nn, F = torch.nn, torch.nn.functional
    height, image_width = X.shape[1:]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            channels = (1, width, 2 * width, 4 * width)
            for i, layer in enumerate(_LAYERS):
                setattr(self, layer, nn.Conv2d(channels[i], channels[i + 1], 3, padding=1))
                setattr(self, f"{layer}_bn", nn.BatchNorm2d(channels[i + 1], eps=_EPS))
            self.fc = nn.Linear(4 * width * (height // 8) * (image_width // 8), embedding)
            self.fc_bn = nn.BatchNorm1d(embedding, eps=_EPS)
            self.out = nn.Linear(embedding, n_classes)

        def forward(self, x):
            for layer in _LAYERS:
                x = F.max_pool2d(F.relu(getattr(self, f"{layer}_bn")(getattr(self, layer)(x))), 2)
            features = F.relu(self.fc_bn(self.fc(x.flatten(1))))
            return self.out(F.dropout(features, DROPOUT, self.training))

    net = Net()
    images = torch.from_numpy(np.ascontiguousarray(X)).unsqueeze(1)
    targets = torch.from_numpy(labels.astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=WEIGHT_DECAY)
    steps = epochs * -(-len(images) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.2)
    net.train()
    for epoch in range(1, epochs + 1):
        started, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), BATCH):
            rows = order[start : start + BATCH]
            if len(rows) < 2:  # BatchNorm needs two rows
                continue
            batch = images[rows]
            mirror = torch.rand(len(batch), generator=generator) < 0.5
            batch = torch.where(mirror[:, None, None, None], batch.flip(3), batch)
            dy, dx = (int(v) for v in torch.randint(0, 2 * SHIFT + 1, (2,), generator=generator))
            padded = F.pad(batch, (SHIFT, SHIFT, SHIFT, SHIFT), value=background)
            batch = padded[:, :, dy : dy + height, dx : dx + image_width].contiguous()  # contiguous: 5x faster convolutions
            logits = net(batch)
            loss = F.cross_entropy(logits, targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(rows)
            correct += int((logits.argmax(1) == targets[rows]).sum())
            seen += len(rows)
        if on_epoch is not None:
            on_epoch({"epoch": epoch, "epochs": epochs, "loss": loss_sum / seen, "train_accuracy": correct / seen,
                      "valid_accuracy": None if valid is None else _accuracy(torch, net, *valid),
                      "seconds": time.perf_counter() - started})
    return net.eval()


def _accuracy(torch, net, X: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of ``X`` (standardised) the network in eval mode classifies as ``labels``; it stays in training
    mode. Eval mode draws no dropout and updates no BatchNorm statistic, so training goes on as if unscored."""
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(X), 1024):
            batch = torch.from_numpy(np.ascontiguousarray(X[start : start + 1024])).unsqueeze(1)
            correct += int((net(batch).argmax(1).numpy() == labels[start : start + 1024]).sum())
    net.train()
    return correct / max(len(X), 1)


def _fold(net) -> dict[str, np.ndarray]:
    """The eval-mode network's weights with each BatchNorm folded into the layer before it, float32."""
    state = {}
    for layer in (*_LAYERS, "fc"):
        bn, (w, b) = getattr(net, f"{layer}_bn"), (t.detach().double().numpy() for t in getattr(net, layer).parameters())
        mean, var, gamma, beta = (t.detach().double().numpy() for t in (bn.running_mean, bn.running_var, bn.weight, bn.bias))
        scale = gamma / np.sqrt(var + bn.eps)
        state[f"cnn_{layer}_w"] = (w * scale.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32)
        state[f"cnn_{layer}_b"] = ((b - mean) * scale + beta).astype(np.float32)
    return state
