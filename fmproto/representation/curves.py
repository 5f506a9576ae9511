"""The network's training curves: the records ``cnn.fit`` passes to ``on_epoch``, as a table, a summary and a line.

Seconds stay out of the table and the summary (they change from run to run; the features stage's timings keep
them), and the figures are rounded, so a rerun writes the same bytes."""

import pandas as pd

COLUMNS = ("epoch", "loss", "train_accuracy", "valid_accuracy")
_DECIMALS = {"loss": 6, "train_accuracy": 5, "valid_accuracy": 5}


def table(records: list[dict]) -> pd.DataFrame:
    """A row per epoch, ``COLUMNS``; no rows when no network was trained."""
    frame = pd.DataFrame([{name: record[name] for name in COLUMNS} for record in records], columns=list(COLUMNS))
    return frame.astype({"epoch": "int64", **{name: "float64" for name in _DECIMALS}}).round(_DECIMALS)


def summary(records: list[dict]) -> dict:
    """The last epoch's figures and the best validation accuracy with its epoch; ``{}`` without records."""
    if not records:
        return {}
    last = table(records).iloc[-1]
    figures = {"epochs": int(last["epoch"]), "loss": float(last["loss"]), "train_accuracy": float(last["train_accuracy"])}
    scored = [record for record in records if record["valid_accuracy"] is not None]
    if scored:
        best = max(scored, key=lambda record: (record["valid_accuracy"], -record["epoch"]))
        figures.update(valid_accuracy=float(last["valid_accuracy"]),
                       best_valid_accuracy=round(best["valid_accuracy"], _DECIMALS["valid_accuracy"]),
                       best_epoch=best["epoch"])
    return figures


def line(record: dict) -> str:
    """``epoch 3/15: loss 0.4123, train accuracy 0.8512, valid accuracy 0.8790, 9.8 s``."""
    valid = "" if record["valid_accuracy"] is None else f", valid accuracy {record['valid_accuracy']:.4f}"
    return (f"epoch {record['epoch']}/{record['epochs']}: loss {record['loss']:.4f}, "
            f"train accuracy {record['train_accuracy']:.4f}{valid}, {record['seconds']:.1f} s")
