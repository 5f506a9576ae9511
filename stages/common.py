"""What every stage script shares: checked params, and one-line errors that leave no output behind.

Params are checked here, at the boundary, so the core in ``fmproto/`` never sees YAML. A spec maps
each key of a params section to a checker; a checker takes ``(name, value)`` and returns the value
(converted where that is safe) or raises ``ParamError`` naming the key and the allowed values.
"""

import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

Checker = Callable[[str, Any], Any]


class ParamError(ValueError):
    """A missing, unknown, mistyped or out-of-range param; the message names it."""


def read_params(section: str, spec: dict[str, Checker], path: str | Path = "params.yaml") -> dict:
    """Return ``params.yaml[section]`` with every key checked by ``spec``; nothing else allowed."""
    path = Path(path)
    try:
        with path.open() as f:
            params = yaml.safe_load(f) or {}
    except OSError as err:
        raise ParamError(f"{path}: cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ParamError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    values = params.get(section)
    if not isinstance(values, dict):
        raise ParamError(f"{path}: section {section!r} is missing or not a mapping")
    unknown = sorted(set(values) - set(spec))
    if unknown:
        raise ParamError(f"{path}: unknown param {section}.{unknown[0]} (known: {', '.join(spec)})")
    checked = {}
    for key, check in spec.items():
        name = f"{section}.{key}"
        if key not in values:
            raise ParamError(f"{path}: param {name} is missing")
        checked[key] = check(f"{path}: {name}", values[key])
    return checked


def integer(low: int | None = None, high: int | None = None) -> Checker:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{name} must be an integer; got {value!r}")
        _check_range(name, value, low, high)
        return value

    return check


def number(low: float | None = None, high: float | None = None, *, open_low: bool = False) -> Checker:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{name} must be a number; got {value!r}")
        if open_low and low is not None and value <= low:
            raise ParamError(f"{name} must be greater than {low}; got {value!r}")
        _check_range(name, value, low, high)
        return float(value)

    return check


def boolean() -> Checker:
    def check(name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ParamError(f"{name} must be true or false; got {value!r}")
        return value

    return check


def one_of(*choices: Any) -> Checker:
    def check(name: str, value: Any) -> Any:
        if value not in choices:
            raise ParamError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
        return value

    return check


def text() -> Checker:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ParamError(f"{name} must be a non-empty string; got {value!r}")
        return value

    return check


def list_of(item: Checker, *, min_len: int = 1, unique: bool = False) -> Checker:
    def check(name: str, value: Any) -> list:
        if not isinstance(value, list) or len(value) < min_len:
            raise ParamError(f"{name} must be a list of at least {min_len} item(s); got {value!r}")
        items = [item(f"{name}[{i}]", v) for i, v in enumerate(value)]
        if unique and len(set(items)) != len(items):
            raise ParamError(f"{name} must not repeat items; got {value!r}")
        return items

    return check


def mapping(value: Checker) -> Checker:
    """A non-empty mapping from names to values that ``value`` accepts."""

    def check(name: str, given: Any) -> dict:
        if not isinstance(given, dict) or not given:
            raise ParamError(f"{name} must be a non-empty mapping; got {given!r}")
        return {str(key): value(f"{name}.{key}", v) for key, v in given.items()}

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
        raise ParamError(f"{name} must be {what}; got {value!r}")

    return check


def _check_range(name: str, value: float, low: float | None, high: float | None) -> None:
    if low is not None and value < low:
        raise ParamError(f"{name} must be at least {low}; got {value!r}")
    if high is not None and value > high:
        raise ParamError(f"{name} must be at most {high}; got {value!r}")


@contextmanager
def stage_errors(stage: str, outputs: list[str | Path]) -> Iterator[None]:
    """Turn bad input into one line on stderr and exit status 1, and remove partial outputs.

    Expected failures are ``ValueError`` (bad data, bad params, core validation) and ``OSError``
    (missing or unreadable files); anything else is a bug and keeps its traceback.
    """
    try:
        yield
    except (ValueError, OSError) as err:
        for output in outputs:
            _remove(Path(output))
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"{stage}: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
