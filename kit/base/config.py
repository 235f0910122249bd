"""Strict settings: one validator for every mapping the kit turns into settings (profile sections,
gate thresholds, limits, paper-trading settings). An unknown or misspelt key is an error that names
the key and the nearest valid one; it is never silently ignored."""

from __future__ import annotations

import dataclasses
import difflib

__all__ = ["ConfigError", "nearest", "unknown_keys_message", "strict_dataclass"]


class ConfigError(ValueError):
    """A settings mapping has an unknown key or a value of the wrong type (message names both)."""


def nearest(key: str, valid) -> str | None:
    """The valid key closest to ``key``: one that ``key`` abbreviates or extends (the shortest such),
    else the best ``difflib`` match with ratio >= 0.6, else None."""
    key, valid = str(key), [str(v) for v in valid]
    prefix = sorted((v for v in valid if v.startswith(key) or key.startswith(v)), key=lambda v: (abs(len(v) - len(key)), v))
    if prefix:
        return prefix[0]
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_keys_message(unknown, valid, where: str) -> str:
    """``"<where>: unknown key 'epoch' (did you mean 'epochs'?); valid keys: ..."``."""
    parts = []
    for k in sorted(unknown, key=str):
        near = nearest(k, valid)
        parts.append(f"{k!r}" + (f" (did you mean {near!r}?)" if near else ""))
    noun = "key" if len(parts) == 1 else "keys"
    return f"{where}: unknown {noun} {', '.join(parts)}; valid keys: {', '.join(sorted(map(str, valid)))}"


def strict_dataclass(cls, d, where: str | None = None):
    """``cls(**d)`` for a dataclass ``cls`` after refusing keys that are not its fields.

    Parameters
    ----------
    cls : a dataclass type.
    d : mapping or None (None: the defaults).
    where : context for the message (default the class name).

    Raises
    ------
    ConfigError
        ``d`` is not a mapping, or has a key that is not a field of ``cls`` (named, with the
        nearest valid key).
    """
    where = where or cls.__name__
    if d is None:
        return cls()
    if not hasattr(d, "keys"):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__} {d!r}")
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in d if k not in valid]
    if unknown:
        raise ConfigError(unknown_keys_message(unknown, valid, where))
    return cls(**dict(d))
