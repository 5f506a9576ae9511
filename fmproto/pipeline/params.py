"""Reading ``params.yaml`` as DVC reads it, and the checkers each section's spec (``specs/``) is made of.

Parsed as ``dvc.utils.serialize.parse_yaml`` does (YAML 1.2, ruamel.yaml's safe loader), so a stage sees
what ``dvc params diff`` shows; importing DVC would cost 50 ms. A checker takes ``(name, value)`` and
returns the value or raises ``ParamError`` naming the key and what is allowed. Allowed names are spelled
out, not imported from the core, so that reading params imports no numerical module."""

import difflib
import math
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

Checker = Callable[[str, Any], Any]

MEMORY_LIMIT = 2 * 1024**3  # what one allocation that a param sizes may take
MAX_SEED = 2**32 - 1
# Characters in the file (14 times the committed one; ruamel.yaml takes 3 s and 50 MB for 100 KB of dense YAML),
# and of scalar text with the aliases expanded.
MAX_CHARS = 100_000
MAX_VALUES = 100_000  # values (scalars, lists, mappings, keys) with the aliases expanded
_QUOTE = 80  # characters of a bad value quoted in a message
_MERGE = "tag:yaml.org,2002:merge"  # the ``<<`` key of a merge; ruamel.yaml resolves it


class ParamError(ValueError):
    """A missing, unknown, mistyped or out-of-range param; the message names it."""


def _shown(value: Any) -> str:
    """``repr(value)`` cut to ``_QUOTE`` characters, built piece by piece: aliases can make a huge tree."""
    pieces, size = [], 0
    for piece in _pieces(value):
        pieces.append(piece)
        size += len(piece)
        if size > _QUOTE:
            break
    return _cut("".join(pieces))


def _pieces(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        ends, entries = "{}", ((k, v) for k, v in value.items())
    elif isinstance(value, list):
        ends, entries = "[]", ((v,) for v in value)
    elif isinstance(value, tuple):
        ends, entries = ("(", ",)" if len(value) == 1 else ")"), ((v,) for v in value)
    elif isinstance(value, set) and value:
        ends, entries = "{}", ((v,) for v in value)
    else:
        if isinstance(value, (str, bytes)):
            yield repr(value[: _QUOTE + 1])  # longer ones are cut anyway
        elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * _QUOTE:
            yield f"<an integer of {value.bit_length():,} bits>"  # repr refuses past 4300 digits
        else:
            yield repr(value)
        return
    yield ends[0]
    for i, entry in enumerate(entries):
        if i:
            yield ", "
        for j, part in enumerate(entry):
            if j:
                yield ": "
            yield from _pieces(part)
    yield ends[1]


def _cut(text: str, limit: int = _QUOTE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _name(key: Any) -> str:
    """A key as it reads in a dotted param name, cut to ``_QUOTE`` characters."""
    if not isinstance(key, str):
        return _shown(key)
    return _cut(repr(key[:_QUOTE])[1:-1] + ("..." if len(key) > _QUOTE else ""))


def load(path: str | Path = "params.yaml") -> dict:
    """The whole params file as DVC reads it: a mapping of known sections, or a one-line ``ParamError``."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = None  # missing or unreadable: open() below says which
    if mode is not None and not stat.S_ISREG(mode):  # a FIFO would hang the read; a device never ends
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise ParamError(f"{path}: is {kind}, not a regular file")
    try:
        with path.open(encoding="utf-8") as f:  # text mode, as DVC reads it
            text = f.read(MAX_CHARS + 1)
    except OSError as err:
        raise ParamError(f"{path}: cannot read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ParamError(f"{path}: not valid UTF-8 (byte {err.object[err.start]:#04x} at offset {err.start})") from None
    if len(text) > MAX_CHARS:
        raise ParamError(f"{path}: more than {MAX_CHARS:,} characters; is it the right file?")
    yaml = YAML(typ="safe")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a reused anchor name: legal YAML, not worth a line
        root = _parsed(path, yaml.compose, text)
        if root is not None:
            _check_tree(path, root, yaml)
        params = _parsed(path, yaml.constructor.construct_document, root) if root is not None else None
    params = params or {}  # as DVC: an empty (or false) document is no params
    if not isinstance(params, dict):
        raise ParamError(f"{path}: must be a mapping of sections; got {type(params).__name__}")
    for key in params:
        if not isinstance(key, str):
            raise ParamError(f"{path}: section names must be strings; got {_shown(key)}")
        if key not in SECTIONS:
            raise ParamError(f"{path}: unknown section {_shown(key)} ({_suggest(key, SECTIONS)})")
    return params


def _suggest(name: str, known: Iterable[str]) -> str:
    near = difflib.get_close_matches(name[:_QUOTE], known, n=1)
    return f"did you mean {near[0]!r}?" if near else f"known: {', '.join(known)}"


def _parsed(path: Path, step: Callable[[Any], Any], given: Any) -> Any:
    """``step(given)``, a ruamel.yaml call, with whatever the text provokes as one ``ParamError``."""
    try:
        return step(given)
    except RecursionError:
        raise ParamError(f"{path}: not valid YAML: nested too deeply") from None
    except Exception as err:  # the text decides which: ValueError for `!!int x`, KeyError for `!!bool x`
        if isinstance(err, MarkedYAMLError):
            what = "; ".join(filter(None, (err.context, err.problem))) or "cannot parse"
            mark = err.problem_mark or err.context_mark
        else:
            what, mark = str(err) if isinstance(err, ValueError) else f"{type(err).__name__} {err}", None
        raise ParamError(f"{path}: not valid YAML: {_cut(' '.join(what.split()), 160)}{_at(mark)}") from None


def _at(mark: Any) -> str:
    return "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"


def _check_tree(path: Path, root: Any, yaml: YAML) -> None:
    """Refuse duplicate or compound keys, self-reference and too much alias expansion; each node's expanded size
    is computed once, children first, so an alias bomb costs time linear in the file."""
    values, chars = {}, {}  # id(node) -> its size with every alias expanded
    open_nodes = set()  # the nodes whose subtree is being walked: meeting one again is a cycle
    stack = [(root, "", False)]
    while stack:
        node, where, children_done = stack.pop()
        ident = id(node)
        if children_done:
            open_nodes.discard(ident)
            kids = (node.value if isinstance(node, SequenceNode) else
                    [kid for pair in node.value for kid in pair] if isinstance(node, MappingNode) else [])
            values[ident] = 1 + sum(values[id(kid)] for kid in kids)
            chars[ident] = (len(node.value) if isinstance(node, ScalarNode) else 0) + sum(chars[id(kid)] for kid in kids)
            if values[ident] > MAX_VALUES:  # a file of MAX_CHARS holds at most about 50,000: aliases did it
                raise ParamError(f"{path}: more than {MAX_VALUES:,} values once its aliases are expanded"
                                 f"{_at(node.start_mark)}; is an alias repeated inside another?")
            if chars[ident] > MAX_CHARS:
                raise ParamError(f"{path}: more than {MAX_CHARS:,} characters of values once its aliases are "
                                 f"expanded{_at(node.start_mark)}")
            continue
        if ident in values:
            continue
        if ident in open_nodes:
            raise ParamError(f"{path}: {_cut(where) or 'the document'} is an alias of a value that contains it"
                             f"{_at(node.start_mark)}")
        open_nodes.add(ident)
        stack.append((node, where, True))
        if isinstance(node, SequenceNode):
            stack.extend((item, f"{where}[{i}]", False) for i, item in enumerate(node.value))
        elif isinstance(node, MappingNode):
            seen = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    raise ParamError(f"{path}: a key must be a single value, not a list or mapping"
                                     f"{_at(key_node.start_mark)}")
                if key_node.tag == _MERGE:  # ruamel.yaml merges the mapping(s) in; explicit keys win
                    stack.extend(((key_node, where, False), (value_node, where, False)))
                    continue
                key = _parsed(path, yaml.constructor.construct_object, key_node)
                name = f"{where}.{_name(key)}" if where else _name(key)
                if key in seen:
                    first = seen[key].start_mark.line + 1
                    raise ParamError(f"{path}: duplicate key {_cut(name)} (lines {first} and {key_node.start_mark.line + 1})")
                seen[key] = key_node
                stack.extend(((key_node, name, False), (value_node, name, False)))


def read_params(section: str, spec: dict[str, Checker], path: str | Path = "params.yaml", *,
                partial: bool = False) -> dict:
    """``params.yaml[section]`` checked by ``spec``; other keys are refused unless ``partial`` (left to others)."""
    path = Path(path)
    values = load(path).get(section)
    if not isinstance(values, dict):
        raise ParamError(f"{path}: section {section!r} is missing or not a mapping")
    if bad := [key for key in values if not isinstance(key, str)]:
        raise ParamError(f"{path}: param names in {section} must be strings; got {_shown(bad[0])}")
    unknown = sorted(set(values) - set(spec))
    if unknown and not partial:
        raise ParamError(f"{path}: unknown param {section}.{_name(unknown[0])} ({_suggest(unknown[0], spec)})")
    checked = {}
    for key, check in spec.items():
        if key not in values:
            raise ParamError(f"{path}: param {section}.{key} is missing")
        checked[key] = check(f"{path}: {section}.{key}", values[key])
    return checked


def check_memory(name: str, value: Any, n_bytes: float, what: str, largest: int | None = None,
                 hint: str = "") -> None:
    """``ParamError`` when ``n_bytes``, what ``value`` of param ``name`` would allocate, exceeds the limit;
    the message ends with ``largest``, the biggest value that fits, or else ``hint``."""
    if n_bytes > MEMORY_LIMIT:
        advice = f"at most {largest:,} fits in {MEMORY_LIMIT / 1e9:.1f} GB" if largest is not None else hint
        raise ParamError(f"{name} {_shown(value)} needs {n_bytes / 1e9:.1f} GB for {what}; {advice}")


def _fail(name: str, must: str, value: Any) -> None:
    raise ParamError(f"{name} must be {must}; got {_shown(value)}")


def _in_range(name: str, value: float, low: float | None, high: float | None, open_low: bool = False,
              open_high: bool = False) -> float:
    if low is not None and (value <= low if open_low else value < low):
        _fail(name, f"greater than {low}" if open_low else f"at least {low}", value)
    if high is not None and (value >= high if open_high else value > high):
        _fail(name, f"less than {high}" if open_high else f"at most {high}", value)
    return value


def integer(low: int | None = None, high: int | None = None) -> Checker:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(name, "an integer", value)
        return _in_range(name, value, low, high)
    return check


def number(low: float | None = None, high: float | None = None, *, open_low: bool = False,
           open_high: bool = False) -> Checker:
    """A finite int or float within the bounds, as a float (``open_*``: that bound excluded)."""
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(name, "a number", value)
        if not math.isfinite(value):
            _fail(name, "a finite number", value)
        return float(_in_range(name, value, low, high, open_low, open_high))
    return check


def boolean() -> Checker:
    return lambda name, value: value if isinstance(value, bool) else _fail(name, "true or false", value)


def one_of(*choices: Any) -> Checker:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, (list, dict)) or value not in choices:
            _fail(name, f"one of {', '.join(map(repr, choices))}", value)
        return value
    return check


def text(max_len: int = 4096) -> Checker:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len:
            _fail(name, f"a non-empty string of at most {max_len} characters", value)
        return value
    return check


def list_of(item: Checker, *, min_len: int = 1, max_len: int = 1000, unique: bool = False) -> Checker:
    def check(name: str, value: Any) -> list:
        if not isinstance(value, list) or not min_len <= len(value) <= max_len:
            _fail(name, f"a list of {min_len} to {max_len} items", value)
        items = [item(f"{name}[{i}]", v) for i, v in enumerate(value)]
        seen = set()
        for v in items if unique else ():
            if repr(v) in seen:  # checked items are small: numbers, short names
                raise ParamError(f"{name} must not repeat items; got {_shown(v)} more than once")
            seen.add(repr(v))
        return items
    return check


def mapping(value: Checker, max_len: int = 1000, key: Checker | None = None) -> Checker:
    """A mapping of 1 to ``max_len`` string keys (that ``key`` accepts) to values that ``value`` accepts."""
    def check(name: str, given: Any) -> dict:
        if not isinstance(given, dict) or not 1 <= len(given) <= max_len:
            _fail(name, f"a mapping of 1 to {max_len} names", given)
        for k in given:
            if not isinstance(k, str):
                raise ParamError(f"{name} must map names (strings) to values; got the key {_shown(k)}")
            if key is not None:
                key(f"{name} key", k)
        return {k: value(f"{name}.{_name(k)}", v) for k, v in given.items()}
    return check


def label(max_len: int = 64) -> Checker:
    """A name shown in pictures, tables and log lines: printable (no newline, tab or control character)."""
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > max_len:
            _fail(name, f"a name of 1 to {max_len} characters, not blank", value)
        if not value.isprintable():
            _fail(name, "printable text on one line (no newline, tab or other control character)", value)
        return value
    return check


def optional(inner: Checker) -> Checker:
    return lambda name, value: None if value is None else inner(name, value)


def either(first: Checker, second: Checker, what: str) -> Checker:
    """``what`` describes both checkers in the error."""
    def check(name: str, value: Any) -> Any:
        for inner in (first, second):
            try:
                return inner(name, value)
            except ParamError:
                pass
        _fail(name, what, value)
    return check


# What several sections allow; each section's own spec is in fmproto/pipeline/specs/<section>.py.
PROTOTYPE_METRICS = ("sqeuclidean", "euclidean", "mse", "cosine", "manhattan")  # fmproto.search.distances.METRICS
KNN_METRICS = ("euclidean", "cosine", "manhattan")
WEIGHTS = ("uniform", "distance")  # fmproto.search.knn.WEIGHTS
SEED = integer(low=0, high=MAX_SEED)
CLASS_NAME = label(64)

# Every section a stage or ``fmproto`` command reads (``read_params``); ``load`` refuses any other.
SECTIONS = ("data", "ingest", "dedup", "split", "centroids", "kmeans", "knn_scaling", "ann", "ann_frontier", "features", "gmlvq",
            "evaluate")
