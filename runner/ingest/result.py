"""The typed outcome of one ingest, as returned to the CLI (and any other caller)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ReasonCount:
    reason: str
    rows: int
    first_rows: tuple[int, ...]  # the first few row numbers rejected for this reason


@dataclass(frozen=True)
class IngestResult:
    """Counts always satisfy inserted + unchanged + updated + rejected == rows_in_file."""

    ingest_id: str
    kind: str
    source_file: str
    file_sha256: str
    file_format: str
    rows_in_file: int
    inserted: int
    unchanged: int
    updated: int
    rejected: int
    rejects_by_reason: tuple[ReasonCount, ...]
    ignored_columns: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def loaded(self) -> int:
        return self.inserted + self.unchanged + self.updated

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "loaded": self.loaded}
