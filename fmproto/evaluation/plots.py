"""Every matplotlib figure the pipeline draws. Functions return a Figure; ``save`` writes it atomically."""

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI or servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fmproto.pipeline import io  # noqa: E402

WRONG = "#c0392b"  # titles and frames of images whose label disagrees with something


def save(fig: Figure, path: str | Path, *, trim: bool = True) -> None:
    """Write ``fig`` as PNG through a temp file, then close it; ``trim`` crops it to what is drawn (a second
    drawing: ``image_montage``'s figures are laid out to their edges and skip it)."""
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight" if trim else None)
    plt.close(fig)


def image_grid(images: np.ndarray, titles: Sequence[str] | None = None, *, n_cols: int = 10,
               suptitle: str | None = None, highlight: Sequence[bool] | None = None,
               row_labels: Sequence[str] | None = None) -> Figure:
    """Images ``(n, H, W)``, ``n_cols`` to a row, with optional small ``titles``, ``highlight``ed ones
    in red, and ``row_labels`` on the left of each row."""
    images, n = np.asarray(images), len(images)
    n_cols = max(1, min(n_cols, n))
    n_rows = max(1, -(-n // n_cols))
    # Each line of title above an image takes room from the row (a few rows of two-line titles overlapped).
    title_lines = max((title.count("\n") + 1 for title in titles), default=0) if titles is not None else 0
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False,
                             figsize=(1.3 * n_cols + (1.2 if row_labels else 0), (1.2 + 0.3 * title_lines) * n_rows + 0.5))
    for index, ax in enumerate(axes.flat):
        ax.set(xticks=[], yticks=[])
        if index >= n:
            ax.axis("off")
            continue
        ax.imshow(images[index], cmap="gray", vmin=0, vmax=max(255, float(images[index].max())))
        marked = highlight is not None and highlight[index]
        if titles is not None:
            ax.set_title(titles[index], fontsize=7, color=WRONG if marked else "black")
        plt.setp(ax.spines.values(), color=WRONG if marked else "#888888", linewidth=2.0 if marked else 0.5)
    for row, label in enumerate((row_labels or [])[:n_rows]):
        axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def image_montage(images: np.ndarray, titles: Sequence[str] | None = None, *, n_cols: int = 10,
                  row_labels: Sequence[str] | None = None) -> Figure:
    """``image_grid``'s layout on one Axes: each image placed by its extent, titles and row labels as text.
    For grids of a hundred images or more: an Axes each cost about 2 seconds a figure to build and draw."""
    images, n = np.asarray(images), len(images)
    n_cols = max(1, min(n_cols, n))
    n_rows = max(1, -(-n // n_cols))
    title_lines = max((title.count("\n") + 1 for title in titles), default=0) if titles is not None else 0
    margin, cell_width, cell_height, side = (1.2 if row_labels else 0.1), 1.3, 1.2 + 0.3 * title_lines, 1.0
    fig = plt.figure(figsize=(margin + cell_width * n_cols + 0.1, cell_height * n_rows + 0.2))
    ax = fig.add_axes((0, 0, 1, 1))
    for index in range(n):
        row, col = divmod(index, n_cols)
        x, y = margin + col * cell_width + (cell_width - side) / 2, 0.1 + (row + 1) * cell_height - side - 0.05
        ax.imshow(images[index], cmap="gray", vmin=0, vmax=max(255, float(images[index].max())),
                  extent=(x, x + side, y + side, y))
        ax.add_patch(plt.Rectangle((x, y), side, side, fill=False, edgecolor="#888888", linewidth=0.5))
        if titles is not None:
            ax.text(x + side / 2, y - 0.06, titles[index], ha="center", va="bottom", fontsize=7)
    for row, label in enumerate((row_labels or [])[:n_rows]):
        ax.text(margin - 0.05, 0.1 + (row + 1) * cell_height - 0.05 - side / 2, label, ha="right", va="center", fontsize=8)
    width, height = fig.get_size_inches()
    ax.set(xlim=(0, width), ylim=(height, 0), aspect="auto")  # a unit an inch, y down: the images stay square
    ax.set_axis_off()
    return fig


def confusion_matrix(cm: np.ndarray, classes: Sequence[str], title: str) -> Figure:
    """Counts in the cells, coloured by their share of the row (true class), totals on the axes."""
    cm = np.asarray(cm)
    n = len(classes)
    row_totals, col_totals = cm.sum(axis=1), cm.sum(axis=0)
    shares = cm / np.maximum(row_totals[:, None], 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.7 * n))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (r, c), count in np.ndenumerate(cm):
        ax.text(c, r, str(count), ha="center", va="center", fontsize=7,
                color="white" if shares[r, c] > 0.5 else "black")
    ax.set_xticks(range(n), [f"{name}\n({total})" for name, total in zip(classes, col_totals)],
                  rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), [f"{name} ({total})" for name, total in zip(classes, row_totals)], fontsize=7)
    ax.set(xlabel="predicted (total)", ylabel="true (total)")
    ax.set_title(f"{title}: accuracy {np.trace(cm) / max(cm.sum(), 1):.3f} of {cm.sum():,}", fontsize=10)
    fig.tight_layout()
    return fig


def lines(series: dict[str, tuple[np.ndarray, np.ndarray]], *, xlabel: str, ylabel: str, title: str,
          loglog: bool = False, logy: bool = False, dashed: Sequence[str] = (),
          colour_of: dict[str, str] | None = None) -> Figure:
    """A line per named series ``{name: (x, y)}``; those in ``dashed`` dashed (fits), in the colour of
    the earlier series ``colour_of`` names (the data they fit)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours: dict[str, str] = {}
    for name, (x, y) in series.items():
        (line,) = ax.plot(x, y, "--" if name in dashed else "-o", label=name, markersize=3, linewidth=1.2,
                          color=colours.get((colour_of or {}).get(name, "")))
        colours[name] = line.get_color()
    if logy or loglog:
        ax.set_yscale("log")
    if loglog:
        ax.set_xscale("log", base=2)  # training sizes double
        # Plain numbers on the y axis: an error range such as 0.14..0.3 holds no power of ten
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.2g"))
        ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%.2g"))
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def convergence(histories: dict[str, np.ndarray], title: str) -> Figure:
    """A line per named run: its mean squared distance to the centres at each iteration (from 1)."""
    return lines({name: (np.arange(1, len(h) + 1), h) for name, h in histories.items()}, xlabel="iteration",
                 ylabel="mean squared distance to centre", title=title)
