"""The default recogniser through the whole analyzer, float and int8, and the embed/verify CLI.

Same person above different people, for every recogniser and variant: test_recognisers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from edge.errors import ImageError
from edge.perception.analyzer import FaceAnalyzer
from edge.perception.cli import load_image
from edge.perception.embedder import ManifestEmbedder
from edge.perception.manifest import DEFAULT_EMBEDDER
from edge.perception.quality import assess


@pytest.fixture(scope="module", params=["float", "int8"])
def analyzer(request: pytest.FixtureRequest, models_dir: Path) -> FaceAnalyzer:
    return FaceAnalyzer.from_models_dir(models_dir, variant=request.param)


def test_faces_carry_quality_and_unit_embeddings(analyzer: FaceAnalyzer, testdata: Path) -> None:
    detailed = analyzer.analyze_detailed(load_image(testdata / "obama.jpg"))
    assert len(detailed) == 1
    a = detailed[0]
    emb = analyzer.embedder
    assert isinstance(emb, ManifestEmbedder) and emb.model_id.startswith(DEFAULT_EMBEDDER)
    assert a.chip.shape == (emb.spec.chip_size, emb.spec.chip_size, 3)
    assert a.face.embedding is not None and a.face.embedding.shape == (emb.dim,)
    assert abs(float(np.linalg.norm(a.face.embedding)) - 1.0) < 1e-5
    assert 0.5 < a.face.quality <= 1.0
    assert a.quality == assess(a.face.detection, a.chip)
    assert analyzer.analyze(load_image(testdata / "brick.png")) == []
    assert analyzer.main_face(load_image(testdata / "brick.png")) is None


def test_embed_cli_json(testdata: Path, models_dir: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["embed", str(testdata / "obama.jpg"), str(testdata / "t1.jpg"),
               "--json", "--variant", "int8", "--models-dir", str(models_dir)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [len(i["faces"]) for i in out["images"]] == [1, 6]
    assert out["models"]["embedder"] == f"{DEFAULT_EMBEDDER}_int8"
    face = out["images"][0]["faces"][0]
    assert set(face) >= {"box", "keypoints", "score", "quality", "embedding"}
    assert len(face["keypoints"]) == 6 and face["score"] > 0.5
    assert abs(float(np.linalg.norm(face["embedding"])) - 1.0) < 1e-4
    assert 0.0 <= face["quality"] <= 1.0


def test_embed_cli_text(testdata: Path, models_dir: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", str(testdata / "biden.jpg"), "--models-dir", str(models_dir)]) == 0
    out = capsys.readouterr().out
    assert "1 face(s)" in out and "quality=" in out and "embedding:" in out


def test_verify_cli(testdata: Path, models_dir: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    def verify(a: str, b: str) -> float:
        assert main(["verify", str(testdata / a), str(testdata / b),
                     "--models-dir", str(models_dir)]) == 0
        return float(capsys.readouterr().out.strip())

    same = verify("obama.jpg", "obama2.jpg")
    other = verify("obama.jpg", "biden.jpg")
    assert -1.0 <= other < same <= 1.0
    assert main(["verify", str(testdata / "obama.jpg"), str(testdata / "obama3.jpg"),
                 "--json", "--models-dir", str(models_dir)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["similarity"] > other and doc["embedder"].startswith(DEFAULT_EMBEDDER)


def test_cli_bad_files(tmp_path: Path, testdata: Path, models_dir: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 this is not a jpeg")
    assert main(["embed", str(junk), "--models-dir", str(models_dir)]) == 1
    assert "junk.jpg" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "missing.png")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["verify", str(testdata / "obama.jpg"), str(testdata / "brick.png"),
                 "--models-dir", str(models_dir)]) == 1
    assert "no face" in capsys.readouterr().err
    with pytest.raises(ImageError):
        load_image(junk)
