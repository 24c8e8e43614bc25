"""Helpers used by several test modules (and nothing else)."""

from __future__ import annotations

from pathlib import Path


class CreatesFileWhenUnpickled:
    """A pickled payload whose unpickling calls ``open(marker, "w")``: the marker existing
    proves that it ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))
