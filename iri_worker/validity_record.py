"""The typed contract of ``IriImage.validity``: the proof that an IRI is one, written by the worker with the image
(iri_worker.services.validity) and read by the survey builder's filter, the admin, the job API's summary, the
exports, the report's recognition analysis and the study archive.

Three kinds of stored JSON, all of them since the first record (2026-11-29): ``{}`` (an image made before records
existed: no record), ``{"error": ...}`` (the record failed; the IRI stands without it) and the full record.
Versions: 0 (no ``version`` key) has the same keys as 1; a key it lacks reads as None. The label the network gave
is shown by its class name where the backbone has names, else by its index (``iri_label_shown``,
``target_label_shown``), the one place that choice is made.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kernel.records import record_values, record_version

@dataclass(frozen=True)
class NullSummary:
    """The null distribution an IRI was judged against: its cache key, layer, pairs, photos, median and smallest
    distance (None without pairs)."""

    key: str
    layer: str
    pairs: int
    photos: int
    median: float | None
    min: float | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NullSummary:
        return cls(**record_values(cls, data, what="The validity record's null summary", ignore=()))


@dataclass(frozen=True)
class ValidityRecord:
    """One IRI's validity record; every field None (``loss_curve`` empty) where the record does not say.

    distance             relative representation distance of the IRI (8-bit, as stored) to its target
    percentile           where that distance lies in the null distribution (None: fewer than two photos)
    null                 the null distribution's summary (None: no record)
    label_match, iri_label, target_label, iri_label_name, target_label_name
                         the classifier's top-1 labels of IRI and target (None: the network has no classifier;
                         names None where the backbone has no class names)
    loss_curve           [[step, loss], ...] over the run
    error                why the record failed (the other fields are then None)
    """

    VERSION: ClassVar[int] = 1

    distance: float | None = None
    percentile: float | None = None
    null: NullSummary | None = None
    label_match: bool | None = None
    iri_label: int | None = None
    target_label: int | None = None
    iri_label_name: str | None = None
    target_label_name: str | None = None
    loss_curve: list[list] = field(default_factory=list)
    error: str | None = None

    @property
    def made(self) -> bool:
        """Whether the worker measured this IRI (a full record, not ``{}`` nor a failed one)."""
        return self.null is not None

    @property
    def iri_label_shown(self) -> str | int | None:
        return self.iri_label_name if self.iri_label_name is not None else self.iri_label

    @property
    def target_label_shown(self) -> str | int | None:
        return self.target_label_name if self.target_label_name is not None else self.target_label

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidityRecord:
        """Read a stored record of any known version (``{}``: no record); ValueError naming the problem for an
        unknown version or key."""
        record_version(data, what="The validity record", latest=cls.VERSION)
        present = {key: value for key, value in data.items() if value is not None}  # None: the record does not say
        values = record_values(cls, present, what="The validity record", optional=tuple(f.name for f in dataclasses.fields(cls)))
        if "null" in values:
            values["null"] = NullSummary.from_dict(values["null"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored in ``IriImage.validity`` (the latest version); a failed record keeps only its error."""
        if self.error is not None:
            return {"version": self.VERSION, "error": self.error}
        data = dataclasses.asdict(self)
        del data["error"]
        return {"version": self.VERSION, **data}
