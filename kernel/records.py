"""Reading stored JSON into the frozen dataclasses that are the project's contracts (InversionSpec, AdaptiveState,
ValidityRecord, AlignmentReport): one check of a record's version and keys, one wording of its errors.

A record without a ``version`` key is version 0 (written before its contract had one); a version this code does not
know, a key its dataclass has not, or a key it needs and lacks is a ``ValueError`` whose sentence names it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

NOT_A_DICT = "{what} must be a dict, got {type}."
VERSION_UNKNOWN = "{what}: version {version!r} is unknown; this code reads versions 0 (no version key) to {latest}."
KEYS_UNKNOWN = "{what} has unknown keys {keys}; allowed keys are {allowed}."
KEYS_MISSING = "{what} lacks keys {keys}."


def record_check_dict(data: Any, *, what: str) -> None:
    if not isinstance(data, Mapping):
        raise ValueError(NOT_A_DICT.format(what=what, type=type(data).__name__))


def record_version(data: Any, *, what: str, latest: int) -> int:
    """The version of a stored record: 0 without a ``version`` key, else 0..latest (a bool is no version)."""
    record_check_dict(data, what=what)
    version = data.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= latest:
        raise ValueError(VERSION_UNKNOWN.format(what=what, version=version, latest=latest))
    return version


def record_unknown_keys(cls: type, data: Mapping[str, Any], *, what: str, ignore: tuple[str, ...] = ()) -> str | None:
    """The sentence naming ``data``'s keys that ``cls`` has no field for (None when there are none)."""
    names = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(data) - {*names, *ignore})
    if not unknown:
        return None
    return KEYS_UNKNOWN.format(what=what, keys=", ".join(unknown), allowed=", ".join(names))


def record_values(cls: type, data: Any, *, what: str, defaults: Mapping[str, Any] | None = None,
                  optional: tuple[str, ...] = (), ignore: tuple[str, ...] = ("version",)) -> dict[str, Any]:
    """``data``'s values for ``cls``'s fields, ``defaults`` filling what it lacks; a ValueError for a key it has not
    (``ignore`` aside) or a field it lacks that is neither in ``defaults`` nor ``optional``."""
    record_check_dict(data, what=what)
    unknown = record_unknown_keys(cls, data, what=what, ignore=ignore)
    if unknown:
        raise ValueError(unknown)
    values = {**(defaults or {}), **{key: value for key, value in data.items() if key not in ignore}}
    names = [field.name for field in dataclasses.fields(cls)]
    missing = [name for name in names if name not in values and name not in optional]
    if missing:
        raise ValueError(KEYS_MISSING.format(what=what, keys=", ".join(missing)))
    return {name: values[name] for name in names if name in values}
