"""Options: each setting of an experiment declared once, with its help text and check.

An :class:`Option` is the single place where a setting's meaning (``help``), type,
allowed values (``check``) and role are written. The config dataclass, the command
line, the sweep specs and the sharing strategies all read options from here or from
the strategy that owns them, so nothing about an option is written twice.

``traced`` marks the hyperparameters that change no array shape and no program (the
learning rate, a sharing fraction, CHOCO's gamma, ...): a sweep passes them into one
compiled program as arrays and ``vmap`` runs many values at once. Every other option
is *static*: configs that differ in a static option compile separately.

This module imports nothing from JAX, so the command line can parse and check its
input before the (slow) JAX import.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jwins_jax.errors import ConfigError

Check = Callable[[str, Any], Any]


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting.

    Attributes:
        help: one line for ``--help``, the README and sweep ``--dry-run``.
        kind: the Python type of a value: int, float, str, bool, tuple (of floats)
            or dict (a table of NAME = value, kept as sorted pairs).
        check: ``check(name, value) -> value`` raises :class:`ConfigError` with one
            line naming the field, the value and what is allowed; may normalise the
            value (e.g. a list to a tuple).
        traced: a hyperparameter that changes no shape (vmappable in a sweep).
        choices: the allowed values of a str option (for ``--help``).
    """

    help: str
    kind: type
    check: Check | None = None
    traced: bool = False
    choices: tuple[str, ...] | None = None

    def allowed(self) -> str:
        """What a value must be, in words (for messages): its type or choices."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        return {
            bool: "true or false",
            int: "an integer",
            float: "a number",
            str: "a string",
            tuple: "a list of numbers",
            dict: "a table of NAME = value",
        }[self.kind]

    def validate(self, name: str, value: Any) -> Any:
        """Checks a value's type and range; returns it (normalised)."""
        value = check_kind(name, value, self.kind)
        if self.choices is not None:
            choice(self.choices)(name, value)
        if self.check is not None:
            out = self.check(name, value)
            if out is not None:
                value = out
        return value


# ------------------------------------------------------------------------- checks
def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_kind(name: str, value: Any, kind: type) -> Any:
    """``value`` if it has the option's type (ints are accepted for floats)."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(
                f"{name}={_describe(value)} is not allowed: {name} must be true or false"
            )
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(
                f"{name}={_describe(value)} is not allowed: {name} must be an integer"
            )
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"{name}={_describe(value)} is not allowed: {name} must be a number"
            )
        if math.isnan(value):
            raise ConfigError(f"{name}=nan is not allowed: {name} must be a number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(
                f"{name}={_describe(value)} is not allowed: {name} must be a string"
            )
        if "\x00" in value:
            raise ConfigError(f"{name}={_describe(value)} contains a NUL character")
        return value
    if kind is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(
                f"{name}={_describe(value)} is not allowed: {name} must be a list"
            )
        return tuple(value)
    if kind is dict:
        items = value.items() if isinstance(value, Mapping) else value
        try:
            pairs = [(k, v) for k, v in items]
        except (TypeError, ValueError):
            pairs = None
        if pairs is None or isinstance(value, str):
            raise ConfigError(
                f"{name}={_describe(value)} is not allowed: {name} must be a table "
                "of NAME = value"
            )
        if not all(isinstance(k, str) for k, _ in pairs):
            raise ConfigError(f"{name}: every NAME must be a string")
        return tuple(sorted(pairs, key=lambda kv: kv[0]))
    raise TypeError(f"unknown option kind {kind!r}")


def choice(allowed: Sequence[str]) -> Check:
    """A str option that must be one of ``allowed``."""

    def check(name: str, value: Any) -> None:
        if value not in allowed:
            raise ConfigError(
                f"{name}={_describe(value)} is unknown; allowed: {', '.join(allowed)}"
            )

    return check


def int_range(low: int, high: int | None = None) -> Check:
    """An int in ``[low, high]`` (``high`` None: no upper bound)."""

    def check(name: str, value: Any) -> None:
        if value < low or (high is not None and value > high):
            if high is None:
                rule = "a positive integer" if low == 1 else f"an integer >= {low}"
            else:
                rule = f"an integer in [{low}, {high}]"
            raise ConfigError(f"{name}={value!r} is not allowed: {name} must be {rule}")

    return check


def positive(name: str, value: float) -> None:
    """A finite number > 0."""
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name}={value!r} is not allowed: {name} must be > 0")


def unit_interval(name: str, value: float) -> None:
    """A number in (0, 1]."""
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{name}={value!r} is not allowed: {name} must be in (0, 1]")


def interval(low: float, high: float, right_open: bool = False) -> Check:
    """A number in ``[low, high]`` (or ``[low, high)``); ``high`` may be inf."""

    def check(name: str, value: float) -> None:
        ok = low <= value < high if right_open else low <= value <= high
        if not ok or math.isinf(value):
            right = ")" if right_open or math.isinf(high) else "]"
            raise ConfigError(
                f"{name}={value!r} is not allowed: {name} must be a finite number in "
                f"[{low}, {high}{right}"
            )

    return check


def unit_list(name: str, value: tuple) -> tuple[float, ...]:
    """A non-empty list of numbers in (0, 1]."""
    if not value:
        raise ConfigError(f"{name} is empty: give at least one value in (0, 1]")
    if len(value) > 64:
        raise ConfigError(f"{name} has {len(value)} entries: at most 64 are allowed")
    out = []
    for v in value:
        v = check_kind(f"{name} entry", v, float)
        unit_interval(f"{name} entry", v)
        out.append(v)
    return tuple(out)


def path_text(name: str, value: str) -> None:
    """A non-empty file-system path."""
    if not value.strip():
        raise ConfigError(f"{name}={value!r} is not allowed: give a path")
    if len(value) > 4000:
        raise ConfigError(f"{name} is {len(value)} characters long: at most 4000")


def file_name(name: str, value: str) -> None:
    """One safe path component: no separators, not '.' or '..', at most 100 chars."""
    bad = (
        not value.strip()
        or value in (".", "..")
        or "/" in value
        or "\\" in value
        or value.startswith("-")
        or len(value) > 100
        or any(ord(ch) < 32 for ch in value)
    )
    if bad:
        raise ConfigError(
            f"{name}={_describe(value)} is not allowed: {name} must be a plain name of "
            "1-100 characters without '/', '\\', control characters or a leading '-', "
            "and not '.' or '..'"
        )


def parse_float_list(text: str) -> tuple[float, ...]:
    """``"0.1,0.2"`` or ``"[0.1, 0.2]"`` as a tuple of floats (ConfigError if not)."""
    parts = [v for v in text.replace("[", "").replace("]", "").split(",") if v.strip()]
    try:
        return tuple(float(v) for v in parts)
    except ValueError:
        raise ConfigError(
            f"{_describe(text)} is not a list of numbers: give comma-separated numbers"
        ) from None


def parse_text(name: str, text: str, kind: type) -> Any:
    """A value typed on the command line as the option's kind (ConfigError if not).

    Args:
        name: the option's name, for the message.
        text: the text, e.g. ``"0.1"``, ``"true"`` or ``"0.1,0.2"``.
        kind: int, float, str, bool or tuple (of floats).
    """
    text = text.strip()
    if kind is str:
        return text
    if kind is tuple:
        return parse_float_list(text)
    if kind is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(
            f"{name}={_describe(text)} is not allowed: give true or false"
        )
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(
            f"{name}={_describe(text)} is not allowed: {name} must be {what}"
        ) from None


def parse_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """``"a=1,b=x"`` as ``(("a", "1"), ("b", "x"))`` (a list value in brackets may
    hold commas: ``"a=[0.1,0.2]"``)."""
    pairs, depth, item = [], 0, ""
    for ch in text + ",":
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            if item.strip():
                key, sep, value = item.partition("=")
                if not sep or not key.strip():
                    raise ConfigError(
                        f"{_describe(item.strip())} is not allowed: give NAME=VALUE "
                        "pairs separated by commas"
                    )
                pairs.append((key.strip().replace("-", "_"), value.strip()))
            item = ""
        else:
            item += ch
    return tuple(pairs)


def read_text_file(path, what: str) -> str:
    """A UTF-8 text file's contents, or a one-line ConfigError naming ``what``.

    Args:
        path: the file.
        what: how the message names it, e.g. ``"config file 'x.toml'"``.
    """
    import pathlib

    p = pathlib.Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} does not exist")
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} is not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(f"{what} cannot be read: {err.strerror}") from None
