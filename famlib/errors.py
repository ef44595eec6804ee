"""Errors that say what was given, what is allowed, and where it came from."""

from __future__ import annotations

import difflib
from typing import Iterable


class FamlibError(Exception):
    """Base class of every error famlib raises on purpose."""


class ConfigError(FamlibError, ValueError):
    """A parameter file or an injected parameter is invalid.

    The message names the file (or other origin), the dotted key, the value given and what is allowed.
    """

    def __init__(self, origin: str, key: str, value: object, allowed: str, hint: str = ""):
        self.origin, self.key, self.value, self.allowed = origin, key, value, allowed
        msg = f"{origin}: key '{key}' has invalid value {value!r}; allowed: {allowed}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


class ChecksumError(FamlibError):
    """A downloaded artefact does not match its pinned sha256."""


class DataError(FamlibError):
    """The corpus is missing, incomplete or inconsistent."""


def near(value: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean X?' for the closest choice, or ''."""
    match = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"Did you mean '{match[0]}'?" if match else ""


def one_of(choices: Iterable[str]) -> str:
    return "one of " + ", ".join(repr(c) for c in sorted(choices))
