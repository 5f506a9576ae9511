"""fmproto.pipeline.inputs.load_prototypes: evaluate-test's prototype models, refused in one line when they do not fit."""

import numpy as np
import pytest

from fmproto.evaluation import estimators, final
from fmproto.pipeline import inputs, io

RNG = np.random.default_rng(0)
Y = np.arange(60) % 3
X = (RNG.normal(size=(60, 5)) + 2 * Y[:, None]).astype(np.float32)


def saved_models() -> dict:
    settings = {"kmeans": {"n_prototypes": np.array([2, 2, 2])},
                "gmlvq": {"n_prototypes": np.array([2, 2, 2]), "rank": 3, "epochs": 2}}
    models = {m: estimators.make(m, settings) for m in ("centroids", "kmeans", "gmlvq")}
    return final.prototype_arrays({m: model.fit(X, Y, 3) for m, model in models.items()})


def test_what_evaluate_test_saves_is_read_back(tmp_path):
    arrays = saved_models()
    assert sorted(arrays) == ["gmlvq_labels", "gmlvq_omega", "gmlvq_prototypes", "kmeans_labels", "kmeans_prototypes"]
    io.save_arrays(tmp_path / "p.npz", **arrays)
    loaded = inputs.load_prototypes(tmp_path / "p.npz", 5, 3)
    assert all(loaded[name].tobytes() == arrays[name].tobytes() for name in arrays)
    io.save_arrays(tmp_path / "none.npz")  # both prototype methods skipped
    assert dict(inputs.load_prototypes(tmp_path / "none.npz", 5, 3)) == {}


@pytest.mark.parametrize("change, fragment", [
    (lambda a: a.pop("gmlvq_omega"), "must hold each method's prototypes and labels (and gmlvq_omega)"),
    (lambda a: a.update(kmeans_prototypes=a["kmeans_prototypes"][:, :4]), "kmeans_prototypes must be rows of 5 features"),
    (lambda a: a.update(gmlvq_omega=a["gmlvq_omega"][:, :2]), "gmlvq_omega must be rows of 5 features"),
    (lambda a: a.update(kmeans_labels=a["kmeans_labels"][:-1]), "kmeans_labels must give one label per prototype"),
    (lambda a: a.update(gmlvq_labels=a["gmlvq_labels"] + 1), "gmlvq_labels must lie in 0..2"),
    (lambda a: a.update(kmeans_labels=a["kmeans_labels"].astype(np.float32)), "kmeans_labels must be 1-D labels"),
    (lambda a: a["gmlvq_prototypes"].__setitem__((0, 0), np.nan), "a prototype or projection value is NaN"),
    (lambda a: a.update(extra=np.zeros(2)), "got arrays extra, gmlvq_labels"),
])
def test_a_file_that_does_not_fit_is_refused(tmp_path, change, fragment):
    arrays = saved_models()
    change(arrays)
    io.save_arrays(tmp_path / "p.npz", **arrays)
    with pytest.raises(io.DataError) as err:
        inputs.load_prototypes(tmp_path / "p.npz", 5, 3)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'p.npz'}: ") and fragment in message and "\n" not in message
