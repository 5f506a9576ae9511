"""End to end: the real `dvc repro` of the whole pipeline in a temporary git repository, on a small dataset.

One repository is built and reproduced per session (`template`); tests that only read it use it as
it is, and every test that changes anything works on its own copy (`repo`), so each test passes
alone and in any order.
"""

import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

from conftest import REPO, synthetic_dataset
from repos import BIN, CLASSES, git, make_repo, run
from fmproto.data import download

pytestmark = pytest.mark.e2e

def metrics(repo: Path, name: str) -> dict:
    return json.loads((repo / "metrics" / f"{name}.json").read_text())


def arrays(repo: Path, relative: str) -> dict:
    with np.load(repo / relative) as loaded:
        return {name: loaded[name] for name in loaded.files}


def test_ingest_outputs(template):
    assert [p.name for p in (template / "data" / "fashion-mnist").iterdir()] == ["NOT-FETCHED.txt"]  # verify: none
    m = metrics(template, "ingest")
    assert m["image_shape"] == [10, 12]
    assert m["train"] == {"n": 600, "class_counts": dict.fromkeys(CLASSES, 150)}
    assert m["test"] == {"n": 160, "class_counts": dict.fromkeys(CLASSES, 40)}
    for name in ("train_samples", "train_per_class", "test_samples", "test_per_class"):
        assert (template / "reports" / "ingest" / f"{name}.png").stat().st_size > 1000


def test_dedup_finds_planted_duplicates(template):
    m = metrics(template, "dedup")
    assert m["exact"] == {"train": 1, "test": 0, "train_test": 1}
    pairs = (template / "data" / "dedup" / "pairs.csv").read_text().splitlines()
    assert pairs[0].split(",")[:4] == ["kind", "sets", "i", "j"]
    assert any(line.startswith("exact,train,0,4,") for line in pairs)
    assert any(line.startswith("exact,train_test,8,0,") for line in pairs)


def test_split_counts(template):
    m = metrics(template, "split")
    assert m["valid"]["n"] == 120 and m["train"]["n"] == 480 and m["dropped"]["n"] == 0
    split = arrays(template, "data/split/split.npz")
    labels = arrays(template, "data/ingested/train.npz")["labels"]
    assert m["valid"]["class_counts"] == {c: int((labels[split["valid"]] == i).sum()) for i, c in enumerate(CLASSES)}


def test_classifier_metrics_match_scikit_learn(template):
    """centroids, knn-scaling at full size and evaluate-test, each against scikit-learn on the same split."""
    data, split = arrays(template, "data/ingested/train.npz"), arrays(template, "data/split/split.npz")
    test = arrays(template, "data/ingested/test.npz")
    X, y = data["images"].reshape(600, -1).astype(np.float64), data["labels"]
    tr, va = split["train"], split["valid"]
    centroid = NearestCentroid().fit(X[tr], y[tr])
    assert metrics(template, "centroids")["valid"]["accuracy"] == round(float(np.mean(centroid.predict(X[va]) == y[va])), 5)

    scaling = metrics(template, "knn_scaling")
    for k in (1, 3):
        knn = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(X[tr], y[tr])
        error = round(float(np.mean(knn.predict(X[va]) != y[va])), 5)
        assert scaling["by_k"][str(k)]["measured_error_full"] == error
    assert scaling["best_k"] == min((1, 3), key=lambda k: (scaling["by_k"][str(k)]["measured_error_full"], k))

    final = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(X, y)  # fit_on: train+valid
    predicted = final.predict(test["images"].reshape(160, -1).astype(np.float64))
    result = metrics(template, "test")
    assert result["method"] == "knn" and result["n_fit"] == 600
    assert result["accuracy"] == round(float(np.mean(predicted == test["labels"])), 5)
    assert result["summary"]["knn"]["accuracy"] == result["accuracy"]
    assert set(result["summary"]) == {"centroids", "kmeans", "gmlvq", "knn", "ann"}
    assert (template / "reports" / "explain-test" / "explanations.png").stat().st_size > 1000
    for method in ("kmeans", "gmlvq"):  # a grid per class
        grids = sorted(path.name for path in (template / "reports" / "explain-test" / "prototypes" / method).glob("*.png"))
        assert grids == [f"{c}-{name.replace('/', '-')}.png" for c, name in enumerate(CLASSES)]


def test_the_saved_gmlvq_model_gives_the_summarys_accuracy(template):
    """The prototypes and projection evaluate-test keeps, applied by a brute-force nearest-prototype search."""
    saved, test = arrays(template, "models/final/prototypes.npz"), arrays(template, "data/ingested/test.npz")
    omega, W = saved["gmlvq_omega"].astype(np.float64), saved["gmlvq_prototypes"].astype(np.float64)
    assert omega.shape == (64, 120) and len(W) == 20 * len(CLASSES)  # params.yaml: rank 64, 20 a class
    X = test["images"].reshape(160, -1).astype(np.float64)
    D = (((X[:, None] - W[None]) @ omega.T) ** 2).sum(-1)
    predicted = saved["gmlvq_labels"][np.argmin(D, axis=1)]
    accuracy = metrics(template, "test")["summary"]["gmlvq"]["accuracy"]
    assert accuracy == round(float(np.mean(predicted == test["labels"])), 5)


def test_kmeans_and_ann_metrics(template):
    kmeans = metrics(template, "kmeans")
    assert kmeans["n_prototypes"] == 6 and kmeans["classes"]["ring"]["n_prototypes"] == 3
    assert set(kmeans["valid"]["per_class"]) == set(CLASSES)
    ann = metrics(template, "ann")
    assert set(ann["by_k"]) == {"1", "3", "5"} and ann["recall_at_k"]["k"] == 5
    # recall@5 again, from the saved index and an exact float64 search (ann-benchmarks' definition)
    from annoy import AnnoyIndex

    data, split = arrays(template, "data/ingested/train.npz"), arrays(template, "data/split/split.npz")
    X = data["images"].reshape(600, -1).astype(np.float64)
    index = AnnoyIndex(120, "euclidean")
    index.load(str(template / "models" / "ann.ann"))
    exact = np.sort(np.sqrt(((X[split["valid"], None] - X[None, split["train"]]) ** 2).sum(-1)), axis=1)[:, :5]
    found = [index.get_nns_by_vector(row.tolist(), 5, 200, True)[1] for row in X[split["valid"]]]
    hits = [np.sum(np.array(d) <= kth * (1 + 1e-3)) for d, kth in zip(found, exact[:, -1])]
    assert ann["recall_at_k"]["recall"] == round(float(np.sum(hits)) / exact.size, 5)
    assert "queries_per_second" not in ann and "build_seconds" not in ann  # timings live in timings/
    assert json.loads((template / "timings" / "ann-index.json").read_text())["queries_per_second"] > 0


def test_confusion_plots_are_count_tables(template):
    for path in ["plots/centroids/confusion_valid.csv", "plots/kmeans/confusion_train.csv", "plots/test/confusion_test.csv"]:
        lines = (template / path).read_text().splitlines()
        assert lines[0] == "actual,predicted,count" and len(lines) == 1 + len(CLASSES) ** 2
    counts = sum(int(line.rsplit(",", 1)[1]) for line in (template / "plots/test/confusion_test.csv").read_text().splitlines()[1:])
    assert counts == 160


def test_second_repro_does_nothing(repo):
    result = run([BIN / "dvc", "repro"], repo)
    assert "Data and pipelines are up to date." in result.stdout


def test_forced_rerun_leaves_git_clean(repo):
    """Same inputs, same numbers: `dvc repro -f` on an unchanged commit changes nothing git tracks."""
    run([BIN / "dvc", "repro", "-f"], repo)
    assert run(["git", "status", "--porcelain"], repo).stdout == ""


def test_plots_render_offline(repo):
    run([BIN / "dvc", "plots", "show", "-o", "plots_html"], repo)
    html = (repo / "plots_html" / "index.html").read_text()
    assert "kmeans convergence" in html and "test confusion" in html


def test_remote_push_then_pull_in_a_clone(repo, tmp_path):
    run([BIN / "dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "remote")
    run([BIN / "dvc", "push"], repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run([BIN / "dvc", "pull"], clone)
    assert (clone / "data" / "ingested" / "train.npz").exists()
    assert "Data and pipelines are up to date." in run([BIN / "dvc", "repro"], clone).stdout


def test_exp_run_and_report_lead_with_accuracy(repo):
    run([BIN / "dvc", "exp", "run", "-S", "evaluate.k=1"], repo)
    diff = json.loads(run([BIN / "dvc", "metrics", "diff", "--json"], repo).stdout)
    assert diff["metrics/test.json"]["k"] == {"old": 5, "new": 1, "diff": -4}
    run([BIN / "fmproto", "report", "--base", "HEAD", "--out", "pr.md"], repo)
    text = (repo / "pr.md").read_text()
    first_table = text.split("### Quality metrics that changed")[1].split("###")[0]
    assert "`accuracy` | metrics/test.json" in first_table
    assert "second" not in first_table and "per_second" not in text.split("### Timings")[0]
    assert "evaluate.k" in text and "![Test confusion matrix]" in text


def knn_accuracies(repo: Path, k: int) -> tuple[float, float]:
    """Validation and test accuracy of scikit-learn's kNN with ``k``, as evaluate-valid and evaluate-test score it."""
    data, split = arrays(repo, "data/ingested/train.npz"), arrays(repo, "data/split/split.npz")
    test = arrays(repo, "data/ingested/test.npz")
    X, y = data["images"].reshape(len(data["labels"]), -1).astype(np.float64), data["labels"]
    tr, va = split["train"], split["valid"]
    valid = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(X[tr], y[tr]).predict(X[va])
    final = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(X, y)  # fit_on: train+valid
    predicted = final.predict(test["images"].reshape(len(test["labels"]), -1).astype(np.float64))
    return round(float(np.mean(valid == y[va])), 5), round(float(np.mean(predicted == test["labels"])), 5)


def test_queued_and_temp_experiments_need_no_extra_flags(repo):
    """Your own data, tracked with `dvc add` as the README says: `dvc exp run --queue` + `dvc queue start`
    and `dvc exp run --temp` each run in a copy of the repository that git and DVC fill, with no
    --copy-paths; the fetch stage fetches nothing (data.verify: none)."""
    run(["git", "rm", "-r", "-q", "--cached", "rawdata"], repo)
    run([BIN / "dvc", "add", "rawdata"], repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "raw data tracked by DVC, not git")
    assert run(["git", "ls-files", "rawdata"], repo).stdout == ""
    run([BIN / "dvc", "exp", "run", "--queue", "-S", "evaluate.k=1", "--name", "k1"], repo)
    run([BIN / "dvc", "queue", "start"], repo)
    run([BIN / "dvc", "exp", "run", "--temp", "-S", "evaluate.k=3", "--name", "k3"], repo)
    deadline = time.monotonic() + 300
    while True:  # `dvc queue start` returns at once; `dvc queue logs --follow` refuses a task not yet started
        status = run([BIN / "dvc", "queue", "status"], repo).stdout
        if not ("Queued" in status or "Running" in status) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "Success" in status, status + run([BIN / "dvc", "queue", "logs", "k1"], repo, check=False).stdout
    shown = json.loads(run([BIN / "dvc", "exp", "show", "--json"], repo).stdout)
    found = {exp["name"]: exp["data"]["metrics"] for rev in shown for group in (rev.get("experiments") or [])
             for exp in group["revs"] if exp.get("name") in ("k1", "k3")}
    assert set(found) == {"k1", "k3"}
    for name, k in (("k1", 1), ("k3", 3)):
        test, valid = found[name]["metrics/test.json"]["data"], found[name]["metrics/valid.json"]["data"]
        assert test["k"] == k and (valid["accuracy"], test["accuracy"]) == knn_accuracies(repo, k)


def test_fetch_and_ingest_lock_is_the_same_from_differently_gzipped_sources(fashion_dir, tmp_path):
    """The default data: the fetch stage gets the real files from data/raw, once as the Debian package
    gzipped them and once gzipped otherwise; dvc.lock is the same, and a clone with neither source
    gets everything with `dvc pull`."""
    import gzip

    locks = []
    for name in ("debian", "regzipped"):
        repo = make_repo(tmp_path / name, {})
        (repo / "data" / "raw").mkdir(parents=True)
        for file in download.FILES:
            payload = (fashion_dir / file).read_bytes()
            if name == "regzipped":
                payload = gzip.compress(gzip.decompress(payload), compresslevel=1, mtime=1)
                assert payload != (fashion_dir / file).read_bytes()
            (repo / "data" / "raw" / file).write_bytes(payload)
        run([BIN / "dvc", "cache", "dir", "--local", tmp_path / "cache"], repo)  # one cache; not in git
        # Persisted outputs keep DVC's run-cache out (dvc.yaml): each repository runs both stages.
        result = run([BIN / "dvc", "repro", "fetch"], repo)
        assert "decompressed and verified (from data/raw)" in result.stdout, result.stdout
        result = run([BIN / "dvc", "repro", "ingest"], repo)
        assert "Running stage 'ingest'" in result.stdout, result.stdout
        locks.append(yaml.safe_load((repo / "dvc.lock").read_text())["stages"])
    assert locks[0] == locks[1]
    assert {out["path"] for out in locks[0]["fetch"]["outs"]} == {"data/fashion-mnist"}
    assert locks[0]["ingest"]["deps"][0]["path"] == "data/fashion-mnist"
    assert metrics(repo, "ingest")["train"]["n"] == 60_000

    run([BIN / "dvc", "remote", "add", "-d", "shared", tmp_path / "remote"], repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "fetched and ingested")
    run([BIN / "dvc", "push"], repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run([BIN / "dvc", "pull", "fetch", "ingest"], clone)
    assert not (clone / "data" / "raw").exists()
    assert "Data and pipelines are up to date." in run([BIN / "dvc", "repro", "ingest"], clone).stdout


def test_validation_metrics(template):
    valid = metrics(template, "valid")
    assert valid["features"] == "raw" and valid["n_fit"] == metrics(template, "split")["train"]["n"]
    # evaluate-valid's k=5 kNN on the training split is knn-scaling's full-size k... only when k is in its ks:
    data, split = arrays(template, "data/ingested/train.npz"), arrays(template, "data/split/split.npz")
    X, y = data["images"].reshape(600, -1).astype(np.float64), data["labels"]
    knn = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(X[split["train"]], y[split["train"]])
    assert valid["accuracy"] == round(float(np.mean(knn.predict(X[split["valid"]]) == y[split["valid"]])), 5)


@pytest.mark.parametrize("override, fragment", [
    ({"kind": "sift"}, "features.kind must be one or more of raw, standard, hog"),
    ({"kind": "hog", "hog_cell": 6}, "features.hog_cell must leave at least 2x2 cells in 10x12 images"),
    ({"pca_components": 4000}, "features.pca_components must be at most"),
    ({"augment_flip": "yes"}, "features.augment_flip must be true or false"),
    ({"kind": "cnn", "cnn_epochs": 0}, "features.cnn_epochs must be at least 1; got 0"),
])
def test_features_stage_bad_params(template, tmp_path, override, fragment):
    params = yaml.safe_load((template / "params.yaml").read_text())
    params["features"].update(override)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "features.npz"
    result = run([sys.executable, "-m", "stages.features", "--params", tmp_path / "params.yaml",
                  "--train", "data/ingested/train.npz", "--test", "data/ingested/test.npz",
                  "--split", "data/split/split.npz", "--out", out, "--curves", tmp_path / "curves.csv",
                  "--training", tmp_path / "training.json"], template, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and fragment in result.stderr, result.stderr
    assert not out.exists() and not (tmp_path / "curves.csv").exists() and not (tmp_path / "training.json").exists()


def test_hog_pca_shift_features_through_the_pipeline(repo):
    """HOG + PCA + shifted copies on the small data, scored on valid and test, and explained; GMLVQ in the
    summary classifies each test image with its four one-pixel shifts (``gmlvq.query_shifts``)."""
    from fmproto.evaluation import estimators
    from fmproto.pipeline.settings import method_settings

    run([BIN / "dvc", "exp", "run", "-S", "features.kind=hog", "-S", "features.hog_cell=3",
         "-S", "features.pca_components=8", "-S", "features.augment_shifts=true", "-S", "evaluate.method=knn",
         "-S", "gmlvq.query_shifts=true", "-S", "gmlvq.epochs=3"], repo)
    valid, test = metrics(repo, "valid"), metrics(repo, "test")
    n_train = metrics(repo, "split")["train"]["n"]
    assert valid["features"] == "hog" and valid["n_features"] == 8 and valid["n_fit"] == 5 * n_train
    assert test["features"] == "hog" and test["n_fit"] == 5 * metrics(repo, "ingest")["train"]["n"]
    result = run([BIN / "fmproto", "explain", "3", "--out", "why.png"], repo)
    assert "predicted" in result.stdout and "on hog features" in result.stdout and (repo / "why.png").exists()

    feats, train = arrays(repo, "data/features/features.npz"), arrays(repo, "data/ingested/train.npz")
    test_labels, n_test = arrays(repo, "data/ingested/test.npz")["labels"], len(feats["test"])
    _, settings = method_settings(repo / "params.yaml", CLASSES, train["labels"])
    model = estimators.make("gmlvq", settings).fit(np.concatenate([feats["train"], feats["augmented"]]),
                                                   np.tile(train["labels"], 5), len(CLASSES))
    views = [feats["test"], *np.split(feats["test_shifted"], 4)]  # the test images, then each shift of all of them
    P = model.transform(model.prototypes_).astype(np.float64)
    score = sum(np.stack([np.sqrt(((model.transform(view)[:, None].astype(np.float64) - P[model.prototype_labels_ == c])
                                   ** 2).sum(-1)).min(1) for c in range(len(CLASSES))], axis=1) for view in views)
    assert test["summary"]["gmlvq"]["accuracy"] == round(float(np.mean(score.argmin(1) == test_labels)), 5)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["method"] = "gmlvq"
    (repo / "gmlvq.yaml").write_text(yaml.safe_dump(params))
    for index in (3, 7):
        result = run([BIN / "fmproto", "explain", str(index), "--params", "gmlvq.yaml", "--out", "why.png"], repo)
        assert "classes ranked by the mean distance over the image and its four one-pixel shifts" in result.stdout
        assert f"predicted {CLASSES[score[index].argmin()]} " in result.stdout
        assert "the class's mean over the shifts" in result.stdout


def test_query_shifts_without_shifted_copies_is_one_line(template, tmp_path):
    """The default features have no shifted copies: gmlvq.query_shifts is refused before any model is fitted."""
    params = yaml.safe_load((template / "params.yaml").read_text())
    params["gmlvq"]["query_shifts"], params["evaluate"]["method"] = True, "gmlvq"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    expected = (f"{tmp_path / 'params.yaml'}: gmlvq.query_shifts classifies each image with its one-pixel shifts, but "
                "data/features/features.npz has none: set features.augment_shifts: true")
    result = run([BIN / "fmproto", "explain", "3", "--params", tmp_path / "params.yaml", "--out", tmp_path / "x.png"],
                 template, check=False)
    assert result.returncode == 1 and result.stderr.strip() == f"fmproto explain: error: {expected}"
    out = tmp_path / "out"
    result = run([sys.executable, "-m", "stages.evaluate_test", "--params", tmp_path / "params.yaml",
                  "--train", "data/ingested/train.npz", "--test", "data/ingested/test.npz", "--split", "data/split/split.npz",
                  "--features", "data/features/features.npz", "--metrics", out / "test.json", "--plots", out / "plots",
                  "--figures", out / "figures", "--prototypes", out / "prototypes.npz"], template, check=False)
    assert result.returncode == 1 and result.stderr.strip() == f"evaluate-test: error: {expected}"
    assert not out.exists() and not (tmp_path / "x.png").exists()


def test_cnn_features_through_the_pipeline(repo):
    """A network trained on the training split, joined with HOG: scored as scikit-learn scores its
    saved features, and explained by training images."""
    from sklearn.neighbors import KNeighborsClassifier

    result = run([BIN / "dvc", "exp", "run", "-S", "features.kind=cnn+hog", "-S", "features.hog_cell=3",
                  "-S", "features.pca_components=8", "-S", "features.cnn_width=4", "-S", "features.cnn_embedding=8",
                  "-S", "features.cnn_epochs=2", "-S", "evaluate.k=3"], repo)
    assert re.search(r"^epoch 1/2: loss \d\.\d{4}, train accuracy \d\.\d{4}, valid accuracy \d\.\d{4}, [\d.]+ s$",
                     result.stdout + result.stderr, re.M)  # each epoch as it ends (plain lines: not a terminal)
    curves = pd.read_csv(repo / "plots/features/training.csv")
    assert curves["epoch"].tolist() == [1, 2] and curves.notna().all().all()
    last = curves.iloc[-1]
    assert metrics(repo, "training") | {"best_valid_accuracy": 0, "best_epoch": 0} == {
        "epochs": 2, "loss": last["loss"], "train_accuracy": last["train_accuracy"],
        "valid_accuracy": last["valid_accuracy"], "best_valid_accuracy": 0, "best_epoch": 0}
    drawn = json.loads(run([BIN / "dvc", "plots", "show", "--json"], repo).stdout)["data"]
    accuracy = [plot for name, plot in drawn.items() if name.startswith("network accuracy")][0][0]["content"]
    assert len(accuracy["data"]["values"]) == 4  # two epochs, training and validation
    valid = metrics(repo, "valid")
    assert valid["features"] == "cnn+hog" and valid["n_features"] == 8
    feats, split = arrays(repo, "data/features/features.npz"), arrays(repo, "data/split/split.npz")
    labels = arrays(repo, "data/ingested/train.npz")["labels"]
    assert "state_cnn_fc_w" in feats  # the trained network travels with the features
    model = KNeighborsClassifier(n_neighbors=3, algorithm="brute").fit(feats["train"][split["train"]], labels[split["train"]])
    expected = model.score(feats["train"][split["valid"]], labels[split["valid"]])
    assert valid["accuracy"] == round(expected, 5)  # the metric is kept to 5 decimals
    result = run([BIN / "fmproto", "explain", "3", "--out", "why.png"], repo)
    assert "on cnn+hog features" in result.stdout and "1. train #" in result.stdout and (repo / "why.png").exists()


def test_explain_bad_target_is_one_line(template, tmp_path):
    result = run([BIN / "fmproto", "explain", "missing.png", "--out", tmp_path / "x.png"], template, check=False)
    assert result.returncode == 1 and result.stderr.strip() == "fmproto explain: error: missing.png: file not found"
    np.save(tmp_path / "small.npy", np.zeros((5, 5), dtype=np.uint8))
    result = run([BIN / "fmproto", "explain", tmp_path / "small.npy", "--out", tmp_path / "x.png"], template, check=False)
    assert result.returncode == 1 and "image is 5x5 but the dataset's images are 10x12" in result.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("method, space", [("kmeans", "euclidean"), ("gmlvq", "euclidean after the learned projection")])
def test_explain_shows_a_prototype_models_deciding_prototypes(template, tmp_path, method, space):
    """A prototype model decides by the nearest prototype of each class: the predicted class's and the runner-up's are
    printed with their distances, each with its nearest training images, as an independent search finds them."""
    params = yaml.safe_load((template / "params.yaml").read_text())
    params["evaluate"]["method"] = method
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = run([BIN / "fmproto", "explain", "3", "--params", tmp_path / "params.yaml", "--out", tmp_path / "why.png"],
                 template)
    lines = result.stdout.splitlines()
    assert f"the nearest prototype of each of the two nearest classes ({space})" in lines[0]
    deciding = [line for line in lines if " prototype " in line and "distance" in line]
    assert len(deciding) == 2 and "(the runner-up)" in deciding[1] and (tmp_path / "why.png").exists()
    predicted = lines[0].split("predicted ")[1].split(" ")[0]
    assert deciding[0].strip().startswith(f"{predicted} prototype ")
    first, second = (float(line.split("distance ")[1].split(";")[0]) for line in deciding)
    assert first <= second


def test_explain_never_deletes_what_the_user_had(repo):
    """An existing folder as --out is a usage error; an existing file survives a failed run."""
    keep = repo / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    for out in ("mine", "."):
        result = run([BIN / "fmproto", "explain", "3", "--out", out], repo, check=False)
        assert result.returncode == 1 and "is an existing folder" in result.stderr and "Traceback" not in result.stderr
    assert (keep / "notes.txt").read_text() == "mine" and (repo / ".git").is_dir()
    (repo / "picture.png").write_bytes(b"users picture")
    result = run([BIN / "fmproto", "explain", "99999", "--out", "picture.png"], repo, check=False)
    assert result.returncode == 1 and "test index 99999 is outside 0..159" in result.stderr
    assert (repo / "picture.png").read_bytes() == b"users picture"


KILL_AFTER_REPLACES = """
import os, runpy, signal, sys
from fmproto.pipeline import atomic
replaces, real_replace = [0], os.replace
def replace_then_die(source, target):
    real_replace(source, target)
    replaces[0] += 1
    if replaces[0] == int(os.environ["KILL_AFTER"]):
        os.kill(os.getpid(), signal.SIGKILL)
atomic.os = type(os)("os_with_a_trap")  # the module whose commit renames the outputs into place
atomic.os.__dict__.update(os.__dict__, replace=replace_then_die)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def test_a_killed_stage_is_rebuilt_as_if_clean(repo, tmp_path):
    """SIGKILL halfway through writing a stage's outputs under `dvc repro`; the next `dvc repro` gives the
    clean run's outputs, and git sees no change and no stray temporary file."""
    outputs = ["metrics/kmeans.json", "plots/kmeans/convergence.csv", "plots/kmeans/confusion_valid.csv"]
    clean = {path: (repo / path).read_bytes() for path in outputs}
    wrapper = tmp_path / "kill_after_replaces.py"
    wrapper.write_text(KILL_AFTER_REPLACES)
    pipeline = (repo / "dvc.yaml").read_text()
    (repo / "dvc.yaml").write_text(pipeline.replace("python -m stages.kmeans", f"python {wrapper} stages.kmeans"))
    result = run([BIN / "dvc", "repro", "-s", "kmeans"], repo, check=False, env={**os.environ, "KILL_AFTER": "3",
                 "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(repo)})
    assert result.returncode != 0
    assert any(not (repo / path).exists() for path in outputs) or any(
        p.name.startswith(".") and ".fmproto-tmp" in p.name for p in repo.rglob("*"))  # it died mid-write
    (repo / "dvc.yaml").write_text(pipeline)
    run([BIN / "dvc", "repro"], repo)
    assert {path: (repo / path).read_bytes() for path in outputs} == clean
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    assert not [p for p in repo.rglob("*") if ".fmproto-tmp" in p.name]
