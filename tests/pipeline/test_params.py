"""fmproto.pipeline.params: every section checked completely, every float finite, every size bounded."""

import importlib
import math
import re
import tracemalloc

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from fmproto.search import ann, distances, knn
from fmproto.evaluation import estimators
from fmproto.pipeline import params as P
from fmproto.pipeline.specs import ann as ann_params, dedup as dedup_params, evaluate as evaluate_params

# Each section's spec, from its own module under fmproto/pipeline/specs.
SECTIONS = {name: importlib.import_module(f"fmproto.pipeline.specs.{name}").SPEC for name in P.SECTIONS}


def write_params(tmp_path, change: dict | None = None, text: str | None = None):
    params = P.load(REPO / "params.yaml")
    for dotted, value in (change or {}).items():
        section, key = dotted.split(".")
        params[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(params))
    return path


def test_the_committed_params_pass_every_spec():
    for section, spec in SECTIONS.items():
        P.read_params(section, spec, REPO / "params.yaml")


def test_the_known_sections_are_the_ones_read():
    """``load`` refuses any section not in ``P.SECTIONS``: it must be every one a stage or command reads,
    each through its own spec module, whose keys are the section's keys in params.yaml."""
    sources = [*(REPO / "stages").glob("*.py"), *(REPO / "fmproto").glob("**/*.py")]
    read = {name for source in sources for name in re.findall(r'read_params\(\s*"(\w+)"', source.read_text())}
    assert read == set(P.SECTIONS)
    assert {p.stem for p in (REPO / "fmproto" / "pipeline" / "specs").glob("*.py")} - {"__init__"} == set(P.SECTIONS)
    for section in read:
        assert set(SECTIONS[section]) == set(P.load(REPO / "params.yaml")[section])


def test_allowed_names_match_the_core():
    assert P.PROTOTYPE_METRICS == distances.METRICS
    assert ann_params.ANN_METRICS == ann.ANN_METRICS
    assert evaluate_params.METHODS == estimators.METHODS
    assert P.WEIGHTS == knn.WEIGHTS
    assert set(P.KNN_METRICS) <= set(knn.KNN_METRICS)


@pytest.mark.parametrize("dotted, value, fragment", [
    ("dedup.near_threshold", math.nan, "dedup.near_threshold must be a finite number; got nan"),
    ("dedup.near_threshold", math.inf, "dedup.near_threshold must be a finite number; got inf"),
    ("dedup.near_threshold", 300, "dedup.near_threshold must be at most 255"),
    ("dedup.chunk", 100_000_000, "dedup.chunk must be at most 65536"),
    ("dedup.max_pairs", 0, "dedup.max_pairs must be at least 1"),
    ("kmeans.lvq_learning_rate", math.inf, "kmeans.lvq_learning_rate must be a finite number"),
    ("kmeans.lvq_learning_rate", 0, "kmeans.lvq_learning_rate must be greater than 0"),
    ("kmeans.tol", math.inf, "kmeans.tol must be a finite number"),
    ("kmeans.tol", 2, "kmeans.tol must be at most 1"),
    ("kmeans.n_prototypes", 10**9, "kmeans.n_prototypes must be a count (1..10000)"),
    ("kmeans.n_prototypes", {3: 2}, "kmeans.n_prototypes must be a count (1..10000), or a mapping"),
    ("split.valid_pct", 1.0, "split.valid_pct must be less than 1"),
    ("split.valid_pct", math.nan, "split.valid_pct must be a finite number"),
    ("split.seed", -1, "split.seed must be at least 0"),
    ("ann.seed", 2**31, "ann.seed must be at most 2147483647"),
    ("ann.ks", [1, 5, 1], "ann.ks must not repeat items; got 1 more than once"),
    ("data.classes", ["a", "b\nc"], r"data.classes[1] must be printable text on one line (no newline, tab or other "
                                     r"control character); got 'b\nc'"),
    ("data.classes", ["a", "b\tc"], r"data.classes[1] must be printable text on one line"),
    ("data.classes", ["a", "b\x1b[31m"], r"data.classes[1] must be printable text on one line"),
    ("data.classes", ["a", "b\u200bc"], r"data.classes[1] must be printable text on one line"),  # zero width space
    ("data.classes", ["a", ""], "data.classes[1] must be a name of 1 to 64 characters, not blank; got ''"),
    ("data.classes", ["a", "   "], "data.classes[1] must be a name of 1 to 64 characters, not blank; got '   '"),
    ("data.classes", ["a", "x" * 65], "data.classes[1] must be a name of 1 to 64 characters, not blank; got 'xxxx"),
    ("data.classes", ["a", 3], "data.classes[1] must be a name of 1 to 64 characters, not blank; got 3"),
    ("data.classes", ["Shirt", "Coat", "Shirt"], "data.classes must not repeat items; got 'Shirt' more than once"),
    ("evaluate.explain_confusions", [["Shirt", "a\nb"]], "evaluate.explain_confusions must be 'auto' or a list"),
    ("ann.search_k", 10**12, "ann.search_k must be at most 100000000"),
    ("evaluate.k", 10**9, "evaluate.k must be at most 10000"),
    ("evaluate.k", True, "evaluate.k must be an integer; got True"),
    ("evaluate.method", ["knn"], "evaluate.method must be one of"),
    ("knn_scaling.sizes", [200, 200], "knn_scaling.sizes must be 'auto' or a list of sizes"),
    ("features.pca_components", 100_000, "features.pca_components must be at most 4096"),
    ("ingest.seed", 2**40, "ingest.seed must be at most 4294967295"),
    ("evaluate.explain_confusions", [["Shirt"]], "evaluate.explain_confusions must be 'auto' or a list of [true, predicted]"),
])
def test_bad_values_are_one_line_naming_the_param(tmp_path, dotted, value, fragment):
    path = write_params(tmp_path, {dotted: value})
    section = dotted.split(".")[0]
    with pytest.raises(P.ParamError) as info:
        P.read_params(section, SECTIONS[section], path)
    message = str(info.value)
    assert fragment in message and message.startswith(f"{path}: ") and "\n" not in message and len(message) < 300


@pytest.mark.parametrize("text, fragment", [
    ("- a\n- b\n", "must be a mapping of sections; got list"),
    ("7\n", "must be a mapping of sections; got int"),
    ("1: 2\n", "section names must be strings; got 1"),
    ("dedup: {1: 2}\n", "param names in dedup must be strings; got 1"),
    ("dedup: [1, 2]\n", "section 'dedup' is missing or not a mapping"),
    ("dedup: {near_threshold: [\n", "not valid YAML"),
    ("", "section 'dedup' is missing or not a mapping"),
])
def test_malformed_files_are_one_line(tmp_path, text, fragment):
    path = write_params(tmp_path, text=text)
    with pytest.raises(P.ParamError, match=fragment):
        dedup_params.read(path)


def test_unknown_and_missing_keys(tmp_path):
    with pytest.raises(P.ParamError, match=r"unknown param dedup.chunks \(did you mean 'chunk'\?\)$"):
        dedup_params.read(write_params(tmp_path, text="dedup: {chunks: 3}\n"))
    with pytest.raises(P.ParamError, match=r"unknown param dedup.zzz \(known: near_threshold, chunk, max_pairs, n_show\)$"):
        dedup_params.read(write_params(tmp_path, text="dedup: {zzz: 3}\n"))
    with pytest.raises(P.ParamError, match="param dedup.near_threshold is missing"):
        dedup_params.read(write_params(tmp_path, text="dedup: {chunk: 3}\n"))
    assert P.read_params("dedup", {"chunk": dedup_params.SPEC["chunk"]}, write_params(tmp_path), partial=True) == {"chunk": 4096}


def test_long_values_are_quoted_short(tmp_path):
    path = write_params(tmp_path, {"evaluate.method": "x" * 10_000})
    with pytest.raises(P.ParamError) as info:
        evaluate_params.read(path)
    assert len(str(info.value)) < 300 and "..." in str(info.value)


def test_check_memory_names_the_estimate_and_what_fits():
    P.check_memory("dedup.chunk", 1000, 4e6, "one block of distances", 23_170)
    with pytest.raises(P.ParamError, match=r"^dedup.chunk 100000000 needs 40.0 GB for one block of distances; "
                                           r"at most 23,170 fits in 2.1 GB$"):
        P.check_memory("dedup.chunk", 100_000_000, 4e10, "one block of distances", 23_170)


YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=500)
@given(section=st.sampled_from(sorted(SECTIONS)), key=st.text(max_size=12), value=YAML_VALUES, pick=st.integers(0, 20))
def test_any_value_is_accepted_or_one_clean_error(tmp_path_factory, section, key, value, pick):
    """Fuzzing: whatever value a key gets, reading ends in checked values or one ParamError, never another exception."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    keys = sorted(params[section])
    params[section][keys[pick % len(keys)] if pick < 15 else key] = value
    path = tmp_path_factory.mktemp("fuzz") / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    try:
        checked = P.read_params(section, SECTIONS[section], path)
    except P.ParamError as err:
        assert "\n" not in str(err) and len(str(err)) < 400
    else:
        for v in checked.values():
            assert not (isinstance(v, float) and not math.isfinite(v))


def shown_by_a_checker(value) -> str:
    """How a message quotes ``value``: the part after ``got `` of a checker's error."""
    with pytest.raises(P.ParamError) as info:
        P.boolean()("x", value)
    return str(info.value).removeprefix("x must be true or false; got ")


def cut_repr(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


QUOTED_VALUES = st.recursive(
    st.none() | st.integers() | st.floats() | st.text(max_size=30) | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
    | st.tuples(inner) | st.tuples(inner, inner) | st.sets(st.integers(), max_size=3),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=QUOTED_VALUES)
def test_values_are_quoted_as_their_repr_cut_to_80_characters(value):
    assert shown_by_a_checker(value) == cut_repr(value)


def test_quoting_a_huge_or_recursive_value_builds_no_more_than_it_shows():
    """9 ** 9 elements shared through aliases would be gigabytes of repr; a list inside itself never ends."""
    shared = ["x"] * 9
    for _ in range(8):
        shared = [shared] * 9
    recursive = []
    recursive.append(recursive)
    long_text, big = "y" * 10**7, 16**10_000
    tracemalloc.start()
    try:
        nine = ", ".join(["'x'"] * 9)
        assert shown_by_a_checker(shared) == ("[" * 9 + nine + "], [" + nine)[:77] + "..."
        assert shown_by_a_checker(recursive) == "[" * 77 + "..."
        assert shown_by_a_checker(long_text) == "'" + "y" * 76 + "..."
        assert shown_by_a_checker(big).startswith("<an integer of 40,001 bits>")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1e6
