"""Versioned pkmodel files (checkpoints, prepared labels): one check of what such a file must
hold before anyone reads it, with one sentence per way it can be wrong."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pkmodel.common.errors import PkmodelError


@dataclass(frozen=True)
class FileKind:
    """A kind of versioned file: the entry that marks it (``marker`` = (key, value)), the newest
    ``version`` this pkmodel reads, and the entries it ``requires``."""

    name: str  # "pkmodel checkpoint", in sentences: "X is not a <name>"
    marker: tuple[str, str]
    version: int
    requires: tuple[str, ...]

    def check(self, data: Any, path: str | Path) -> dict[str, Any]:
        """``data`` as read from ``path`` if it is this kind of file; else one PkmodelError."""
        key, value = self.marker
        if not isinstance(data, dict) or data.get(key) != value:
            raise PkmodelError(f"{path} is not a {self.name} (it has no '{key}': '{value}' entry)")
        try:
            version = int(data.get("version", 0))
        except (TypeError, ValueError):
            raise PkmodelError(
                f"{path}: 'version' is {data['version']!r}, not a whole number"
            ) from None
        if version > self.version:
            raise PkmodelError(
                f"{path} is a version {version} {self.name}; this pkmodel reads up to version "
                f"{self.version}"
            )
        for entry in self.requires:
            if entry not in data:
                raise PkmodelError(f"{path} is not a complete {self.name} (no '{entry}' entry)")
        return data
