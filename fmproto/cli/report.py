"""``fmproto report``: a Markdown report for a pull request, comparing the workspace with a base revision.

The quality metrics that changed, per-class and per-k detail folded, the settings the metrics record,
the params diff, pictures (PNGs; the two test confusions via vl-convert), timings that moved beyond noise.
"""

import argparse
import json
import math
import os
import subprocess
from pathlib import Path

from fmproto.pipeline import io, timings
from fmproto.pipeline.guard import stage_errors

KEY_FIGURES = [
    ("Test confusion matrix", "reports/test/confusion_test.png"),
    ("Explanations: test images beside their nearest training images", "reports/explain-test/explanations.png"),
    ("kNN error against training size (log-log, with fit)", "reports/knn_scaling/error_vs_n.png"),
    ("k-means prototypes", "reports/kmeans/prototypes.png"),
    ("Class-mean prototypes", "reports/centroids/prototypes.png"),
]
QUALITY = {"accuracy", "macro_f1", "f1", "precision", "recall", "error", "measured_error_full",
           "predicted_error_full", "valid_accuracy_best_k", "inertia", "r2", "slope", "intercept"}
COUNTS = {"exact", "near", "labels_disagree", "class_counts", "n"}
DETAIL = {"per_class", "per_class_accuracy", "by_k", "classes", "class_counts", "summary"}
LEAD = {"accuracy": 0, "macro_f1": 1, "recall": 2}
NOISE_FRACTION, NOISE_SECONDS = 0.25, 0.5  # a timing moved by more than both (seconds: the second too)


def dvc(*args: str) -> str:
    """Output of a dvc command; a failure becomes one ValueError line."""
    result = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip() or "failed").splitlines()[-1]
        raise ValueError(f"dvc {' '.join(args)}: {last}")
    return result.stdout.strip()


def classify(key: str) -> str:
    """``quality``, ``detail`` (per class, per k, per method) or ``setting`` for a dotted metric key."""
    parts = key.split(".")
    if not (parts[-1] in QUALITY or any(p in COUNTS for p in parts) or parts[0] == "per_class_accuracy"
            or key == "recall_at_k.recall"):
        return "setting"
    return "detail" if any(p in DETAIL for p in parts[:-1]) else "quality"


def _cell(text: str) -> str:
    """``text`` safe in a Markdown table cell (code spans too): ``|`` escaped, all whitespace one space."""
    return " ".join(str(text).replace("|", "\\|").split())


def _number(value) -> str:
    return "–" if value is None else f"{value:.5g}" if isinstance(value, float) else str(value)


def metric_tables(diff: dict, base: str) -> dict[str, list[str]]:
    """Markdown table rows of ``dvc metrics diff --json`` output, grouped by ``classify``."""
    rows = {"quality": [], "detail": [], "setting": []}
    ordered = sorted(((path, key, change) for path, changes in diff.items() for key, change in changes.items()),
                     key=lambda item: (LEAD.get(item[1].split(".")[-1], len(LEAD)), item[0], item[1]))
    for path, key, change in ordered:
        old, new, delta = change.get("old"), change.get("new"), change.get("diff")
        shown = f"{delta:+.5g}" if isinstance(delta, (int, float)) and not isinstance(delta, bool) else ""
        rows[classify(key)].append(f"| `{_cell(key)}` | {_cell(path)} | {_number(old)} | {_number(new)} | {shown} |")
    return rows


def timing_changes(base: dict[str, dict], now: dict[str, dict]) -> list[str]:
    """Rows for the timings that moved by more than noise between two ``timings.read_all`` results."""
    rows = []
    for stage in sorted(set(base) & set(now)):
        old_flat, new_flat = _flatten(base[stage]), _flatten(now[stage])
        for key in sorted(set(old_flat) & set(new_flat)):
            old, new = old_flat[key], new_flat[key]
            moved = abs(new - old) > NOISE_FRACTION * abs(old) and (
                "seconds" not in key or abs(new - old) > NOISE_SECONDS)
            if old and math.isfinite(old) and math.isfinite(new) and moved:
                rows.append(f"| `{key}` | {stage} | {old:.4g} | {new:.4g} | {100 * (new - old) / old:+.0f}% |")
    return rows


def _flatten(tree: dict, prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def classes_without_test_images(metrics_path: str | Path = "metrics/test.json") -> list[str]:
    """The classes evaluate-test found no test images of (their ``per_class_accuracy`` is null); [] if unknown."""
    try:
        per_class = io.read_json(metrics_path).get("per_class_accuracy", {})
    except (ValueError, OSError, AttributeError):  # no metrics yet, or not evaluate-test's
        return []
    return [name for name, value in per_class.items() if value is None] if isinstance(per_class, dict) else []


def render(base: str, tables: dict[str, list[str]], params_diff: str, pictures: list[tuple[str, str]],
           timing_rows: list[str] | None, no_test_images: list[str] = ()) -> str:
    """The report's Markdown; ``pictures``: (title, link) pairs; ``timing_rows`` None: no base timings."""
    head = ["| Metric | File | " + _cell(base) + " | this change | change |", "|---|---|---:|---:|---:|"]
    lines = [f"## fmproto: this change against `{base}`", "", "### Quality metrics that changed", ""]
    lines += (head + tables["quality"] if tables["quality"] else ["No quality metric changed."]) + [""]
    if no_test_images:
        lines += [f"No test images of {len(no_test_images)} class{'es' * (len(no_test_images) > 1)}: "
                  + ", ".join(f"`{_cell(name)}`" for name in no_test_images)
                  + " (per-class test figures null; macro F1 is over the other classes).", ""]
    if tables["detail"]:
        lines += [f"<details><summary>Per-class, per-k and per-method changes ({len(tables['detail'])})</summary>",
                  "", *head, *tables["detail"], "", "</details>", ""]
    if tables["setting"]:
        lines += ["### Settings the metrics record", "", *head, *tables["setting"], ""]
    lines += ["### Params", "", params_diff or "No param changed.", ""]
    if pictures:
        lines += ["### Pictures", ""] + [line for title, link in pictures
                                          for line in (f"**{title}**", "", f"![{title}]({link})", "")]
    lines += ["### Timings", ""]
    if timing_rows is None:
        lines.append("Not compared: no base timings given (`--base-timings`); `make timings` shows this run's.")
    elif timing_rows:
        lines += [f"Moved by more than {NOISE_FRACTION:.0%} (and {NOISE_SECONDS} s):", "",
                  "| Timing | Stage | base | this change | change |", "|---|---|---:|---:|---:|", *timing_rows]
    else:
        lines.append(f"No timing moved by more than {NOISE_FRACTION:.0%}.")
    return "\n".join(lines) + "\n"


def confusion_diff_png(base: str, plot_id: str, out: Path) -> bool:
    """Draw ``dvc plots diff`` of one confusion plot to a PNG with vl-convert; False when it cannot."""
    try:
        import vl_convert
        spec = json.loads(dvc("plots", "diff", base, "--show-vega", "--targets", plot_id))
    except (ImportError, ValueError):  # JSONDecodeError is a ValueError
        return False
    if not isinstance(spec, dict) or "data" not in spec:
        return False
    with io.atomic_path(out) as tmp:
        tmp.write_bytes(vl_convert.vegalite_to_png(spec, scale=1.5))
    return True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", default="main", help="git revision to compare with (default: main)")
    parser.add_argument("--out", default="report.md")
    parser.add_argument("--link-root", default="", help="prefix for image links, e.g. a URL where they are published")
    parser.add_argument("--no-pictures", action="store_true", help="leave the pictures out (where links cannot resolve)")
    parser.add_argument("--timings", default="timings", help="this run's timings folder (default: %(default)s)")
    parser.add_argument("--base-timings", help="the base run's timings folder, to show timings that moved")


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    figures_dir = out.with_name(out.stem + "_files")
    with stage_errors("fmproto report", files=[out], folders=[figures_dir]):
        try:
            diff = json.loads(dvc("metrics", "diff", args.base, "--json") or "{}")
        except json.JSONDecodeError:
            raise ValueError(f"dvc metrics diff {args.base}: output is not JSON") from None
        params_diff = dvc("params", "diff", args.base, "--md")
        pictures = []
        if not args.no_pictures:
            drawn = figures_dir / "test-confusion-diff.png"
            if confusion_diff_png(args.base, "test confusion", drawn):
                pictures.append((f"Test confusion: {args.base} beside this change (dvc plots diff)",
                                 args.link_root + os.path.relpath(drawn, out.parent)))
            pictures += [(title, args.link_root + path) for title, path in KEY_FIGURES if os.path.exists(path)]
        timing_rows = (timing_changes(timings.read_all(args.base_timings), timings.read_all(args.timings))
                       if args.base_timings else None)
        tables = metric_tables(diff, args.base)
        with io.atomic_path(out) as tmp:
            tmp.write_text(render(args.base, tables, params_diff, pictures, timing_rows, classes_without_test_images()))
    print(f"report: {out} ({len(tables['quality'])} quality metrics changed, {len(pictures)} pictures)")
