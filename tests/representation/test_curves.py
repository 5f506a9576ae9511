"""The training-curve table, summary and line, from records as ``cnn.fit`` makes them."""

import math

import pytest

from fmproto.representation import curves


def record(epoch, loss, train, valid, seconds=1.25, epochs=3):
    return {"epoch": epoch, "epochs": epochs, "loss": loss, "train_accuracy": train, "valid_accuracy": valid,
            "seconds": seconds}


RECORDS = [record(1, 1.0 / 3, 0.5, 0.6), record(2, 0.25, 2 / 3, 0.8125), record(3, 0.2, 0.7, 0.8125)]


def test_the_table_has_a_row_per_epoch_rounded_and_no_seconds():
    frame = curves.table(RECORDS)
    assert list(frame.columns) == ["epoch", "loss", "train_accuracy", "valid_accuracy"]
    assert frame["epoch"].tolist() == [1, 2, 3]
    assert frame["loss"].tolist() == [0.333333, 0.25, 0.2]
    assert frame["train_accuracy"].tolist() == [0.5, 0.66667, 0.7]
    assert curves.table([]).empty and list(curves.table([]).columns) == list(curves.COLUMNS)


def test_the_summary_is_the_last_epoch_and_the_first_best_validation_epoch():
    assert curves.summary(RECORDS) == {"epochs": 3, "loss": 0.2, "train_accuracy": 0.7, "valid_accuracy": 0.8125,
                                       "best_valid_accuracy": 0.8125, "best_epoch": 2}
    assert curves.summary([]) == {}
    unscored = curves.summary([record(1, 0.5, 0.75, None)])
    assert unscored == {"epochs": 1, "loss": 0.5, "train_accuracy": 0.75}
    assert all(math.isfinite(value) for value in curves.summary(RECORDS).values())


@pytest.mark.parametrize("valid, expected", [
    (0.8125, "epoch 2/3: loss 0.2500, train accuracy 0.6667, valid accuracy 0.8125, 1.2 s"),
    (None, "epoch 2/3: loss 0.2500, train accuracy 0.6667, 1.2 s"),
])
def test_the_line(valid, expected):
    assert curves.line(record(2, 0.25, 2 / 3, valid)) == expected
