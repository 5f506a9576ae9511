"""``fmproto report``: a Markdown report for a pull request, comparing the workspace with a base revision.

It holds the metrics diff and the params diff against ``--base`` (``main`` by default), as DVC prints
them with ``--md``, and the key pictures of this run. ``make report`` writes it to ``report.md``; the
``metrics`` workflow posts it as a pull-request comment.
"""

import argparse
import os
import subprocess
from pathlib import Path

from fmproto import io
from fmproto.cli.guard import stage_errors

# The pictures a reviewer looks at first, relative to the project folder.
KEY_FIGURES = [
    ("Test confusion matrix", "reports/test/confusion_test.png"),
    ("Explanations: test images beside their nearest training images", "reports/test/explanations.png"),
    ("kNN error against training size (log-log, with fit)", "reports/knn_scaling/error_vs_n.png"),
    ("k-means prototypes", "reports/kmeans/prototypes.png"),
    ("Class-mean prototypes", "reports/centroids/prototypes.png"),
]


def dvc(*args: str) -> str:
    """Output of a dvc command; a failure becomes one ValueError line."""
    result = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip() or "failed").splitlines()[-1]
        raise ValueError(f"dvc {' '.join(args)}: {last}")
    return result.stdout.strip()


def render(base: str, metrics_diff: str, params_diff: str, figures: list[tuple[str, str]], link_root: str) -> str:
    """The report's Markdown; ``figures`` are (title, path) pairs that exist."""
    lines = [f"## fmproto: this change against `{base}`", "", "### Metrics", "",
             metrics_diff or "No metric changed.", "", "### Params", "", params_diff or "No param changed.", ""]
    if figures:
        lines += ["### Key plots", ""]
        for title, path in figures:
            lines += [f"**{title}**", "", f"![{title}]({link_root}{path})", ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", default="main", help="git revision to compare with (default: main)")
    parser.add_argument("--out", default="report.md")
    parser.add_argument("--link-root", default="", help="prefix for image links, e.g. a URL where they are published")
    parser.add_argument("--no-pictures", action="store_true", help="leave the pictures out (where links cannot resolve)")


def run(args: argparse.Namespace) -> None:
    with stage_errors("fmproto report", files=[args.out]):
        metrics_diff = dvc("metrics", "diff", args.base, "--md")
        params_diff = dvc("params", "diff", args.base, "--md")
        figures = [] if args.no_pictures else [(t, path) for t, path in KEY_FIGURES if os.path.exists(path)]
        text = render(args.base, metrics_diff, params_diff, figures, args.link_root)
        with io.atomic_path(args.out) as tmp:
            Path(tmp).write_text(text + "\n")
    print(f"report: {args.out} ({len(metrics_diff.splitlines())} metric lines, {len(figures)} pictures)")
