"""Enrolment: images and a CSV of entry metadata to bundle entries.

The templates come from the device's own pipeline (``FaceAnalyzer``: the same
detector, aligner and embedder), so a central template and a live embedding are
comparable. The face used is the photo's main face (the largest,
``edge.perception.pick``); an image is rejected with its reason rather than
guessed at when another face is nearly as large, when the face is narrower than
the model card's reliable width, or when its quality is too low.

CSV columns: ``image, subject_ref, category, authority_ref, offence_code,
image_source, image_date, expires_at`` and optionally ``added_at``. Several rows
with one ``subject_ref`` give that subject several templates; their metadata
must agree.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge.authority.build import EntrySpec, normalise
from edge.errors import EnrolmentError, ImageError, SignedDocumentError
from edge.perception.imageio import load_image
from edge.perception.pick import main_index, rival_index
from edge.perception.types import Face, RGBImage
from edge.watchlist import canonical
from edge.watchlist.bundle import CATEGORIES, EntryMetadata

REQUIRED = ("image", "subject_ref", "category", "authority_ref", "image_source", "image_date",
            "expires_at")
DEFAULT_MIN_QUALITY = 0.5


class Analyzer(Protocol):
    def analyze(self, image: RGBImage) -> list[Face]: ...


@dataclass(frozen=True)
class Row(EntryMetadata):
    """One CSV row: an entry's metadata, the image to enrol and the line it stands on."""

    line: int
    image: str

    def metadata(self) -> tuple[object, ...]:
        return (self.category, self.authority_ref, self.offence_code, self.image_source,
                self.image_date, self.added_at, self.expires_at)


@dataclass(frozen=True)
class Rejection:
    image: str
    subject_ref: str
    reason: str


def read_rows(path: Path, now: datetime) -> list[Row]:
    """Parse and check the CSV; a bad row is an ``EnrolmentError`` naming its line."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise EnrolmentError(f"{path}: missing columns {', '.join(missing)}")
            records = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EnrolmentError(f"{path}: cannot read CSV: {exc}") from exc
    rows = []
    for n, rec in enumerate(records, start=2):
        clean = {k: (v or "").strip() for k, v in rec.items() if k}
        if not clean.get("added_at"):
            clean["added_at"] = canonical.format_time(now)
        f = canonical.Fields({k: v for k, v in clean.items() if v}, f"{path.name} line {n}")
        try:
            category = f.text("category")
            if category not in CATEGORIES:
                raise EnrolmentError(
                    f"{path.name} line {n}: category {category!r} is not one of "
                    f"{', '.join(CATEGORIES)}"
                )
            offence = f.opt_text("offence_code")
            if category == "suspect" and offence is None:
                raise EnrolmentError(f"{path.name} line {n}: a suspect needs an offence_code")
            rows.append(Row(
                line=n, image=f.text("image"), subject_ref=f.text("subject_ref"),
                category=category, authority_ref=f.text("authority_ref"), offence_code=offence,
                image_source=f.text("image_source"), image_date=f.day("image_date"),
                added_at=f.time("added_at"), expires_at=f.time("expires_at"),
            ))
        except SignedDocumentError as exc:
            raise EnrolmentError(str(exc)) from exc
    return rows


read_rgb = load_image  # the shared reader: pixel count checked from the header first


def template_for(analyzer: Analyzer, image: RGBImage, min_quality: float,
                 min_width: float) -> npt.NDArray[Any]:
    """The main face's embedding, or ``EnrolmentError`` saying why there is none."""
    faces = analyzer.analyze(image)
    dets = [f.detection for f in faces]
    main = main_index(dets, (image.shape[0], image.shape[1]))
    if main is None:
        raise EnrolmentError("no face found")
    rival = rival_index(dets, main)
    if rival is not None:
        raise EnrolmentError(
            f"{len(faces)} faces found, two of similar size ({dets[main].width:.0f} and "
            f"{dets[rival].width:.0f} px wide); an enrolment image must show one person")
    face = faces[main]
    if face.detection.width < min_width:
        raise EnrolmentError(
            f"the face is {face.detection.width:.0f} px wide, below the model card's reliable width of "
            f"{min_width:.0f} px; use a larger photo")
    if face.quality < min_quality:
        raise EnrolmentError(f"face quality {face.quality:.2f} is below {min_quality:.2f}")
    if face.embedding is None or face.embedding.ndim != 1:
        raise EnrolmentError("the analyzer returned no embedding")
    return np.asarray(face.embedding, dtype=np.float32)


def build_entries(
    rows: Sequence[Row], images_dir: Path, analyzer: Analyzer, min_quality: float, min_width: float
) -> tuple[list[EntrySpec], list[Rejection]]:
    """Entries with at least one accepted template, and every rejected image with its reason."""
    by_subject: dict[str, list[Row]] = {}
    for row in rows:
        group = by_subject.setdefault(row.subject_ref, [])
        if group and group[0].metadata() != row.metadata():
            raise EnrolmentError(
                f"line {row.line}: metadata for {row.subject_ref!r} differs from line "
                f"{group[0].line}"
            )
        group.append(row)
    entries: list[EntrySpec] = []
    rejected: list[Rejection] = []
    for subject, group in by_subject.items():
        templates = []
        for row in group:
            try:
                templates.append(template_for(analyzer, read_rgb(images_dir / row.image),
                                              min_quality, min_width))
            except (EnrolmentError, ImageError) as exc:
                rejected.append(Rejection(row.image, subject, str(exc)))
        if not templates:
            continue
        first = group[0]
        entries.append(EntrySpec(
            subject_ref=subject, category=first.category, authority_ref=first.authority_ref,
            offence_code=first.offence_code, image_source=first.image_source,
            image_date=first.image_date, added_at=first.added_at, expires_at=first.expires_at,
            templates=normalise(np.stack(templates)),
        ))
    return entries, rejected
