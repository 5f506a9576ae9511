"""Reading ``params.yaml`` and the checkers a section's spec is made of; each spec is in ``specs/<section>.py``.

Every section is checked completely before a stage does any work.

The file is read as DVC reads it: YAML 1.2 through ruamel.yaml's safe loader, the way
``dvc.utils.serialize.parse_yaml`` does (``YAML(typ="safe").load(text) or {}``), so every value a
stage sees is the value ``dvc params diff`` shows and ``dvc.lock`` records. PyYAML (YAML 1.1) would
disagree on plain scalars: ``012`` (12 here, 10 there), ``1:20`` (a string, not 80), ``yes``/``on``
(strings, not true), ``1e-4`` (a float, not a string). DVC's own function is not imported, because
importing ``dvc`` costs about 50 ms more than ruamel.yaml; ``tests/pipeline/test_params_yaml.py`` checks the
two agree and that ``dvc params diff`` shows the same values.

Before anything is built from the text, the parsed tree is checked: a duplicate key (DVC refuses
one too), a key that is a list or mapping, an alias that contains itself, and a document whose
aliases expand it past ``MAX_VALUES`` values or ``MAX_CHARS`` characters are refused in one line, as
is a top-level section that no stage reads (``evalute:`` would otherwise be ignored by all).

A spec maps each key of a section to a checker; it lives in its own module, a dep only of the
stages that read that section, so that editing it reruns no other stage. A checker takes ``(name,
value)`` and returns the value (converted where that is safe) or raises ``ParamError`` naming the
key and what is allowed.
Floats must be finite and every count that sizes memory has an upper bound here; bounds that depend
on the data (k against the fit rows, a tile against the images) are checked by the stage with
``check_memory`` before it allocates.

The allowed names (metrics, methods) are spelled out rather than imported from the core, so that
reading params does not import the numerical modules: a stage's DVC deps stay what it really uses.
``tests/pipeline/test_params.py`` checks they match the core's own lists.
"""

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

# One allocation that a param sizes may take at most this much; the message says how far off it is.
MEMORY_LIMIT = 2 * 1024**3
MAX_SEED = 2**32 - 1
# Characters in the file (14 times the committed one; ruamel.yaml's pure-Python parser takes about
# 3 s and 50 MB for 100 KB of dense YAML), and of scalar text with the aliases expanded.
MAX_CHARS = 100_000
MAX_VALUES = 100_000  # values (scalars, lists, mappings, keys) with the aliases expanded
_QUOTE = 80  # characters of a bad value quoted in a message
_MERGE = "tag:yaml.org,2002:merge"  # the ``<<`` key of a merge; ruamel.yaml resolves it


class ParamError(ValueError):
    """A missing, unknown, mistyped or out-of-range param; the message names it."""


class _Raw(str):
    """Punctuation of a repr, told apart from a string value."""


def _shown(value: Any) -> str:
    """``repr(value)`` cut to ``_QUOTE`` characters, building no more of it than that.

    A value reached through aliases can be a huge tree of shared lists (or contain itself), so its
    repr is produced piece by piece and the walk stops once enough characters are out.
    """
    pieces, size = [], 0
    for piece in _repr_pieces(value):
        pieces.append(piece)
        size += len(piece)
        if size > _QUOTE:
            break
    return _cut("".join(pieces))


def _repr_pieces(value: Any) -> Iterator[str]:
    stack = [iter((value,))]
    while stack:
        item = next(stack[-1], stack)  # the stack itself marks an exhausted iterator
        if item is stack:
            stack.pop()
        elif type(item) is _Raw:
            yield item
        elif isinstance(item, dict):
            stack.append(_enclosed("{", ((key, _Raw(": "), v) for key, v in item.items()), "}"))
        elif isinstance(item, list):
            stack.append(_enclosed("[", ((v,) for v in item), "]"))
        elif isinstance(item, tuple):
            stack.append(_enclosed("(", ((v,) for v in item), ",)" if len(item) == 1 else ")"))
        elif isinstance(item, (set, frozenset)):
            stack.append(_enclosed("{", ((v,) for v in item), "}") if item else iter((_Raw("set()"),)))
        elif isinstance(item, (str, bytes)):
            yield repr(item[: _QUOTE + 1])  # longer ones are cut anyway
        elif isinstance(item, int) and not isinstance(item, bool) and item.bit_length() > 4 * _QUOTE:
            yield f"<an integer of {item.bit_length():,} bits>"  # repr refuses past 4300 digits
        else:
            yield repr(item)


def _enclosed(opening: str, entries: Iterator[tuple], closing: str) -> Iterator[Any]:
    yield _Raw(opening)
    for i, entry in enumerate(entries):
        if i:
            yield _Raw(", ")
        yield from entry
    yield _Raw(closing)


def _cut(text: str, limit: int = _QUOTE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _name(key: Any) -> str:
    """A key as it reads in a dotted param name, at most ``_QUOTE`` characters."""
    if not isinstance(key, str):
        return _shown(key)
    text = repr(key[:_QUOTE])[1:-1]
    return _cut(text + ("..." if len(key) > _QUOTE else ""))


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
    yaml = YAML(typ="safe")  # what dvc.utils.serialize.parse_yaml uses
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a reused anchor name: legal YAML, not worth a line
        root = _parsed(path, yaml.compose, text)
        if root is not None:
            _check_tree(path, root, yaml)
            params = _parsed(path, yaml.constructor.construct_document, root)
        else:
            params = None
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
    """The nearest known name, or all of them when none is near."""
    near = difflib.get_close_matches(name[:_QUOTE], known, n=1)
    return f"did you mean {near[0]!r}?" if near else f"known: {', '.join(known)}"


def _parsed(path: Path, step: Callable[[Any], Any], given: Any) -> Any:
    """``step(given)``, a ruamel.yaml call, with whatever the text provokes as one ``ParamError``."""
    try:
        return step(given)
    except RecursionError:
        raise ParamError(f"{path}: not valid YAML: nested too deeply") from None
    except Exception as err:  # the text decides which: ValueError for `!!int x`, KeyError for `!!bool x`
        raise _yaml_error(path, err) from None


def _yaml_error(path: Path, err: Exception) -> ParamError:
    if isinstance(err, MarkedYAMLError):
        what = "; ".join(filter(None, (err.context, err.problem))) or "cannot parse"
        mark = err.problem_mark or err.context_mark
    else:  # a constructor's own error: ValueError for `!!int x`, KeyError for `!!bool x`
        what, mark = str(err) if isinstance(err, ValueError) else f"{type(err).__name__} {err}", None
    return ParamError(f"{path}: not valid YAML: {_cut(' '.join(what.split()), 160)}{_at(mark)}")


def _at(mark: Any) -> str:
    return "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"


def _check_tree(path: Path, root: Any, yaml: YAML) -> None:
    """Refuse what must not be built: duplicate or compound keys, self-reference, too much expansion.

    Each node is visited once (depth first, children before parents) and its expanded size kept, so
    an alias bomb is measured in time linear in the file rather than in its expansion.
    """
    values, chars = {}, {}  # id(node) -> its size with every alias expanded
    open_nodes = set()  # the nodes whose subtree is being walked: meeting one again is a cycle
    stack = [(root, "", False)]
    while stack:
        node, where, children_done = stack.pop()
        ident = id(node)
        if children_done:
            open_nodes.discard(ident)
            kids = _children(node)
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


def _children(node: Any) -> list:
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [kid for pair in node.value for kid in pair]
    return []


def read_params(section: str, spec: dict[str, Checker], path: str | Path = "params.yaml", *,
                partial: bool = False) -> dict:
    """Return ``params.yaml[section]`` with every key checked by ``spec``; nothing else allowed.

    ``partial``: read just the keys of ``spec`` and leave the section's other keys to their readers.
    """
    path = Path(path)
    values = load(path).get(section)
    if not isinstance(values, dict):
        raise ParamError(f"{path}: section {section!r} is missing or not a mapping")
    bad = [key for key in values if not isinstance(key, str)]
    if bad:
        raise ParamError(f"{path}: param names in {section} must be strings; got {_shown(bad[0])}")
    unknown = sorted(set(values) - set(spec))
    if unknown and not partial:
        raise ParamError(f"{path}: unknown param {section}.{_name(unknown[0])} ({_suggest(unknown[0], spec)})")
    checked = {}
    for key, check in spec.items():
        name = f"{section}.{key}"
        if key not in values:
            raise ParamError(f"{path}: param {name} is missing")
        checked[key] = check(f"{path}: {name}", values[key])
    return checked


def check_memory(name: str, value: Any, n_bytes: float, what: str, largest: int | None = None,
                 hint: str = "") -> None:
    """``ParamError`` when ``n_bytes`` (what ``value`` of param ``name`` would allocate) exceeds the limit.

    ``largest`` is the biggest value that fits, for the message, e.g. ``dedup.chunk 100000000 needs
    14.4 GB for one block of distances; at most 23,170 fits in 2.1 GB``; without it, ``hint`` ends it.
    """
    if n_bytes > MEMORY_LIMIT:
        advice = f"at most {largest:,} fits in {MEMORY_LIMIT / 1e9:.1f} GB" if largest is not None else hint
        raise ParamError(f"{name} {_shown(value)} needs {n_bytes / 1e9:.1f} GB for {what}; {advice}")


# ---------------------------------------------------------------------------------------------------- checkers


def integer(low: int | None = None, high: int | None = None) -> Checker:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{name} must be an integer; got {_shown(value)}")
        _check_range(name, value, low, high)
        return value

    return check


def number(low: float | None = None, high: float | None = None, *, open_low: bool = False,
           open_high: bool = False) -> Checker:
    """A finite int or float within the bounds (``open_*``: the bound itself is excluded)."""

    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{name} must be a number; got {_shown(value)}")
        if not math.isfinite(value):
            raise ParamError(f"{name} must be a finite number; got {_shown(value)}")
        if open_low and low is not None and value <= low:
            raise ParamError(f"{name} must be greater than {low}; got {_shown(value)}")
        if open_high and high is not None and value >= high:
            raise ParamError(f"{name} must be less than {high}; got {_shown(value)}")
        _check_range(name, value, low, high)
        return float(value)

    return check


def boolean() -> Checker:
    def check(name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ParamError(f"{name} must be true or false; got {_shown(value)}")
        return value

    return check


def one_of(*choices: Any) -> Checker:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, (list, dict)) or value not in choices:
            raise ParamError(f"{name} must be one of {', '.join(map(repr, choices))}; got {_shown(value)}")
        return value

    return check


def text(max_len: int = 4096) -> Checker:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise ParamError(f"{name} must be a non-empty string of at most {max_len} characters; got {_shown(value)}")
        return value

    return check


def list_of(item: Checker, *, min_len: int = 1, max_len: int = 1000, unique: bool = False) -> Checker:
    def check(name: str, value: Any) -> list:
        if not isinstance(value, list) or not min_len <= len(value) <= max_len:
            raise ParamError(f"{name} must be a list of {min_len} to {max_len} items; got {_shown(value)}")
        items = [item(f"{name}[{i}]", v) for i, v in enumerate(value)]
        seen = set()
        for v in items if unique else ():
            if repr(v) in seen:  # checked items are small: numbers, short names
                raise ParamError(f"{name} must not repeat items; got {_shown(v)} more than once")
            seen.add(repr(v))
        return items

    return check


def mapping(value: Checker, max_len: int = 1000, key: Checker | None = None) -> Checker:
    """A non-empty mapping from string names (that ``key`` accepts, if given) to values that ``value`` accepts."""

    def check(name: str, given: Any) -> dict:
        if not isinstance(given, dict) or not 1 <= len(given) <= max_len:
            raise ParamError(f"{name} must be a mapping of 1 to {max_len} names; got {_shown(given)}")
        for k in given:
            if not isinstance(k, str):
                raise ParamError(f"{name} must map names (strings) to values; got the key {_shown(k)}")
            if key is not None:
                key(f"{name} key", k)
        return {k: value(f"{name}.{_name(k)}", v) for k, v in given.items()}

    return check


def label(max_len: int = 64) -> Checker:
    """A name shown in pictures, reports and one-line messages: printable text on one line.

    ``str.isprintable`` refuses newlines, tabs and every other control or invisible character.
    """

    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > max_len:
            raise ParamError(f"{name} must be a name of 1 to {max_len} characters, not blank; got {_shown(value)}")
        if not value.isprintable():
            raise ParamError(f"{name} must be printable text on one line (no newline, tab or other control "
                             f"character); got {_shown(value)}")
        return value

    return check


def optional(inner: Checker) -> Checker:
    """``null`` or a value ``inner`` accepts."""

    def check(name: str, value: Any) -> Any:
        return None if value is None else inner(name, value)

    return check


def either(first: Checker, second: Checker, what: str) -> Checker:
    """A value that ``first`` or ``second`` accepts; ``what`` describes both in the error."""

    def check(name: str, value: Any) -> Any:
        for inner in (first, second):
            try:
                return inner(name, value)
            except ParamError:
                pass
        raise ParamError(f"{name} must be {what}; got {_shown(value)}")

    return check


def _check_range(name: str, value: float, low: float | None, high: float | None) -> None:
    if low is not None and value < low:
        raise ParamError(f"{name} must be at least {low}; got {_shown(value)}")
    if high is not None and value > high:
        raise ParamError(f"{name} must be at most {high}; got {_shown(value)}")


# ---------------------------------------------------------------------------------------------------- shared

# What several sections allow; each section's own spec is in fmproto/pipeline/specs/<section>.py.
PROTOTYPE_METRICS = ("sqeuclidean", "euclidean", "mse", "cosine", "manhattan")  # fmproto.search.distances.METRICS
KNN_METRICS = ("euclidean", "cosine", "manhattan")
WEIGHTS = ("uniform", "distance")  # fmproto.search.knn.WEIGHTS
SEED = integer(low=0, high=MAX_SEED)
CLASS_NAME = label(64)

# Every section a stage or ``fmproto`` command reads (``read_params``); ``load`` refuses any other.
SECTIONS = ("data", "ingest", "dedup", "split", "centroids", "kmeans", "knn_scaling", "ann", "ann_frontier", "features", "evaluate")
