"""Semantic version precedence (semver.org 2.0 §11), for "a new version must be greater than every earlier one"."""

from __future__ import annotations

import re
from functools import total_ordering

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


@total_ordering
class SemVer:
    def __init__(self, text: str) -> None:
        match = _SEMVER.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a semantic version")
        self.text = text
        self.core = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
        self.prerelease = tuple(match.group(4).split(".")) if match.group(4) else ()

    @staticmethod
    def _identifier_key(identifier: str) -> tuple[int, int, str]:
        # Numeric identifiers sort numerically and before alphanumeric ones.
        return (0, int(identifier), "") if identifier.isdigit() else (1, 0, identifier)

    def _key(self) -> tuple[tuple[int, int, int], int, tuple[tuple[int, int, str], ...], int]:
        # A release sorts after its pre-releases; a longer pre-release after its prefix.
        return (
            self.core,
            0 if self.prerelease else 1,
            tuple(self._identifier_key(part) for part in self.prerelease),
            len(self.prerelease),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SemVer) and self._key() == other._key()

    def __lt__(self, other: SemVer) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"SemVer({self.text!r})"
