"""Who is who in the test images: identities, the photos they appear in, which face.

The images come from pinned PyPI packages (``make testdata``): face_recognition's
Obama and Biden photos, insightface's ``t1.jpg`` (six people) and Tom Hanks crop,
scikit-image's astronaut (Eileen Collins) and cameraman. For people with several
photos, the scene uses a different photo from the enrolment one where it can
(Obama: enrolled from ``obama.jpg``, walks as ``obama2.jpg``/``obama3.jpg``), so a
match is a real recognition, not a pixel copy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FaceRef:
    """One face in one test image: ``index`` counts the detector's faces left to right;
    None means the photo's largest face (its subject, not a bystander)."""

    file: str
    index: int | None = None


@dataclass(frozen=True)
class Identity:
    name: str
    scene: tuple[FaceRef, ...]  # photos the walking person is cut from
    enrol: tuple[FaceRef, ...]  # photos for the watchlist (may equal scene if only one)
    note: str = ""
    mask: str | None = None  # a face-mask photo drawn over nose and mouth in the scene


def _single(name: str, file: str, note: str = "") -> Identity:
    ref = FaceRef(file)
    return Identity(name, (ref,), (ref,), note)


_T1_NOTE = "insightface t1.jpg, faces counted left to right"

IDENTITIES: dict[str, Identity] = {
    i.name: i
    for i in (
        Identity("obama", (FaceRef("obama2.jpg"), FaceRef("obama3.jpg")), (FaceRef("obama.jpg"),),
                 "face_recognition test images; enrol from obama.jpg, walk as obama2/obama3"),
        _single("biden", "biden.jpg", "face_recognition test image (one photo only)"),
        _single("tom_hanks", "Tom_Hanks_54745.png", "insightface 112x112 aligned crop"),
        _single("astronaut", "astronaut.png", "scikit-image astronaut (Eileen Collins)"),
        *(Identity(f"t1_{k}", (FaceRef("t1.jpg", k),), (FaceRef("t1.jpg", k),), _T1_NOTE)
          for k in range(6)),
        # Masked passers-by: insightface's mask photos over t1 faces. Not watchlisted;
        # a detector may well miss them, which is why they are not in DEFAULT_OTHERS.
        *(Identity(f"t1_{k}_{colour}_mask", (FaceRef("t1.jpg", k),), (FaceRef("t1.jpg", k),),
                   f"{_T1_NOTE}, wearing mask_{colour}.jpg", mask=f"mask_{colour}.jpg")
          for k, colour in ((0, "blue"), (2, "white"), (3, "black"), (5, "green"))),
    )
}

# Cameraman (skimage camera.png) is left out: his face is half hidden by the camera,
# so he is a poor "other" that a detector may or may not find at 40 px.

# People who are never on the demo watchlist, in the order scenes take them.
DEFAULT_OTHERS: tuple[str, ...] = (
    "t1_0", "t1_1", "t1_2", "t1_3", "t1_4", "t1_5", "astronaut",
)
DEFAULT_WATCHLISTED: tuple[str, ...] = ("obama", "biden", "tom_hanks")


def identity(name: str) -> Identity:
    try:
        return IDENTITIES[name]
    except KeyError:
        raise KeyError(f"unknown identity {name!r}; known: {', '.join(sorted(IDENTITIES))}") \
            from None
