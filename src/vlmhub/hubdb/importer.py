"""Import of an existing JSON home into the hub database (run once, by the first ``vlmhub db upgrade``)."""

from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import HubDB

__all__ = ["ImportReport", "import_json_home"]


@dataclass(frozen=True)
class ImportReport:
    models: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def import_json_home(db: "HubDB") -> ImportReport:
    report = ImportReport()
    with db.write() as s:
        db.set_meta(s, "json_import", report.to_dict())
    return report
