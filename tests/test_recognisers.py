"""The ArcFace-aligned recognisers through the device's own path, on real test faces.

Each family runs through ``FaceAnalyzer`` exactly as ``edge embed``, enrolment
and the live pipeline run it (BlazeFace keypoints -> ArcFace 112x112 chip ->
TFLite model named by the manifest), float32 and int8.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from edge.perception.analyzer import ChipEmbedder, FaceAnalyzer
from edge.perception.cli import load_image
from edge.perception.embedder import ManifestEmbedder
from edge.perception.manifest import DEFAULT_EMBEDDER, load_manifest
from edge.perception.runtime import open_model

# family -> embedding size, may it be the default under the provenance rule
FAMILIES = {"mobileface_v2": (256, True), "mobilefacenet_expo": (192, False),
            "faceplugin_fr": (512, False)}
# (x - mean) * scale as each publisher normalised its input
CHIP_MEAN = {"mobileface_v2": 127.5, "mobilefacenet_expo": 127.5, "faceplugin_fr": 127.0}
OBAMA = ("obama.jpg", "obama2.jpg", "obama3.jpg")
OTHERS_ONE_FACE = ("biden.jpg", "astronaut.png", "Tom_Hanks_54745.png")
# Measured int8-vs-float cosine on these faces; the floors leave room for rounding only.
# mobileface_v2 (min, mean) 0.9958, 0.9972: its floors fail the file built with min/max
# activation ranges (0.9937, 0.9959) and the one built without activation equalisation
# (mean 0.9948; models/build_mobileface.py).
INT8_FLOOR = {"mobileface_v2": (0.995, 0.9965), "mobilefacenet_expo": (0.95, 0.97),
              "faceplugin_fr": (0.94, 0.97)}


@pytest.fixture(scope="module", params=[(f, v) for f in FAMILIES for v in ("float", "int8")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def analyzer(request: pytest.FixtureRequest, models_dir: Path) -> FaceAnalyzer:
    family, variant = request.param
    return FaceAnalyzer.from_models_dir(models_dir, variant, family=family)


def test_same_person_scores_above_different_people(analyzer: FaceAnalyzer,
                                                   testdata: Path) -> None:
    def best(name: str) -> np.ndarray:
        face = analyzer.main_face(load_image(testdata / name))
        assert face is not None and face.embedding is not None, name
        return face.embedding

    obama = [best(n) for n in OBAMA]
    others = {n: best(n) for n in OTHERS_ONE_FACE}
    t1 = analyzer.analyze(load_image(testdata / "t1.jpg"))
    assert len(t1) == 6
    for i, f in enumerate(t1):
        assert f.embedding is not None
        others[f"t1[{i}]"] = f.embedding
    genuine = [float(a @ b) for a, b in itertools.combinations(obama, 2)]
    impostor = {f"{o}/{n}": float(obama[i] @ e) for i, o in enumerate(OBAMA)
                for n, e in others.items()}
    worst = max(impostor, key=lambda k: impostor[k])
    assert min(genuine) > impostor[worst], (genuine, worst, impostor[worst])


def test_chip_and_embedding_follow_the_manifest(analyzer: FaceAnalyzer, testdata: Path) -> None:
    assert isinstance(analyzer.embedder, ManifestEmbedder)
    size, _ = FAMILIES[analyzer.embedder.family]
    (a,) = analyzer.analyze_detailed(load_image(testdata / "obama.jpg"))
    assert a.chip.shape == (112, 112, 3)
    assert a.face.embedding is not None and a.face.embedding.shape == (size,)
    assert abs(float(np.linalg.norm(a.face.embedding)) - 1.0) < 1e-5


@pytest.mark.parametrize("family", list(FAMILIES))
def test_int8_close_to_float(family: str, models_dir: Path, testdata: Path) -> None:
    from edge.perception.analyzer import detect_with_close_up
    from edge.perception.detector import BlazeFaceDetector

    det = BlazeFaceDetector.from_models_dir(models_dir, variant="float32")
    f32 = ChipEmbedder.from_models_dir(models_dir, "float", family=family)
    i8 = ChipEmbedder.from_models_dir(models_dir, "int8", family=family)
    cos = []
    for name in (*OBAMA, *OTHERS_ONE_FACE, "t1.jpg", "camera.png"):
        image = load_image(testdata / name)
        kps = [d.keypoints for d in detect_with_close_up(det, image)]
        chips, a = f32.from_keypoints(image, kps)
        _, b = i8.from_keypoints(image, kps)
        assert chips.shape[0] >= 1, name
        cos.extend(np.sum(a * b, axis=1).tolist())
    lo, mean = INT8_FLOOR[family]
    assert min(cos) >= lo and float(np.mean(cos)) >= mean, cos


@pytest.mark.parametrize("family", list(FAMILIES))
def test_manifest_records_provenance(family: str, models_dir: Path) -> None:
    manifest = load_manifest(models_dir)
    entries = manifest.family(family)
    manifest.verify_hashes([e.model_id for e in entries])
    size, eligible = FAMILIES[family]
    assert {e.variant for e in entries} == {"float32", "int8"}
    for e in entries:
        x = e.extra
        assert e.role == "embedder" and x["embedding_size"] == size
        assert x["alignment_template"]["name"] == "arcface_112"
        mean = CHIP_MEAN[family]
        assert x["chip_input"] == {"channel_order": "RGB", "mean": [mean, mean, mean],
                                   "scale": 0.0078125}
        assert x["provenance"]["eligible_default"] is eligible
        assert e.licence and x["training_data"] and x["training_data_terms"]
        assert x["cpu_latency_ms"]["median_1_thread"] > 0
        assert set(x["ops"]) <= {"ADD", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                                 "PAD", "PRELU", "RESHAPE"}, x["ops"]
        assert e.source and e.build_command
    int8 = manifest.variant(family, "int8")
    assert int8.inputs[0].dtype == "int8" and int8.outputs[0].dtype == "int8"
    assert int8.edgetpu_file == f"{family}_int8_edgetpu.tflite"
    emb = ManifestEmbedder(open_model(manifest, family, variant="float32"))
    assert emb.dim == size and emb.spec.chip_size == 112


def test_the_default_is_eligible_by_provenance_and_dlib_stays_selectable(models_dir: Path) -> None:
    assert DEFAULT_EMBEDDER == "mobileface_v2"
    manifest = load_manifest(models_dir)
    assert manifest.variant(DEFAULT_EMBEDDER, "float32").extra["provenance"]["eligible_default"] is True
    assert FaceAnalyzer.from_models_dir(models_dir, "float").embedder.model_id.startswith("mobileface_v2")
    assert FaceAnalyzer.from_models_dir(models_dir, "float", family="dlib_resnet_v1"
                                        ).embedder.model_id.startswith("dlib_resnet_v1")


def test_embed_cli_selects_the_recogniser(testdata: Path, models_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import json

    rc = main(["embed", str(testdata / "obama.jpg"), "--json", "--variant", "float",
               "--embedder", "mobileface_v2", "--models-dir", str(models_dir)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    fp32 = load_manifest(models_dir).variant("mobileface_v2", "float32")
    assert out["models"]["embedder"] == "mobileface_v2_fp32"
    assert out["models"]["embedding_space"] == f"mobileface_v2:{fp32.sha256}"
    assert len(out["images"][0]["faces"][0]["embedding"]) == 256
