"""The AU mapping checked on labelled MEAD clips (two speakers): emotion vs neutral clip means."""
from __future__ import annotations

import numpy as np
import pytest

from emogs.face.analyze import analyze_frames
from emogs.face.aus import AU_INDEX, aus_from_blendshapes
from emogs.io.media import probe, read_frames

SPEAKERS = ["W009", "W011"]
EMOTIONS = ["neutral", "happy", "surprised", "angry", "disgusted"]


@pytest.fixture(scope="module")
def mead(shared_data):
    """(speaker, emotion) -> analyze_frames output over the tracked frames."""
    out = {}
    for s in SPEAKERS:
        for e in EMOTIONS:
            (p,) = sorted((shared_data / "emotion").glob(f"{s}_front_{e}_level*_001.mp4"))
            r = analyze_frames(read_frames(p), probe(p).fps)
            assert r["success"].mean() > 0.95, p.name
            out[(s, e)] = {k: v[r["success"]] for k, v in r.items()}
    return out


def _mean(mead, speaker, emotion, au, baseline="clip"):
    c = mead[(speaker, emotion)]
    aus = c["aus"] if baseline == "clip" else aus_from_blendshapes(c["blendshapes"], c["landmarks"], baseline)
    return float(aus[:, AU_INDEX[au]].mean())


@pytest.mark.parametrize("speaker", SPEAKERS)
@pytest.mark.parametrize("au,emotion", [("AU12", "happy"), ("AU01", "surprised"), ("AU02", "surprised"),
                                        ("AU05", "surprised"), ("AU26", "surprised"), ("AU04", "angry")])
def test_au_higher_than_neutral(mead, speaker, au, emotion):
    assert _mean(mead, speaker, emotion, au) > _mean(mead, speaker, "neutral", au)


@pytest.mark.parametrize("baseline", ["clip", "canonical"])
@pytest.mark.parametrize("speaker", SPEAKERS)
def test_au06_happy_vs_neutral(mead, speaker, baseline):
    assert _mean(mead, speaker, "happy", "AU06", baseline) > _mean(mead, speaker, "neutral", "AU06", baseline) + 0.1


@pytest.mark.parametrize("baseline", ["clip", "canonical"])
@pytest.mark.parametrize("speaker", SPEAKERS)
def test_au09_disgusted_vs_neutral(mead, speaker, baseline):
    assert _mean(mead, speaker, "disgusted", "AU09", baseline) > _mean(mead, speaker, "neutral", "AU09", baseline) + 0.1


@pytest.mark.parametrize("speaker", SPEAKERS)
def test_cheek_raise_is_specific_to_happy(mead, speaker):
    """The landmark cheek raise (clip baseline) is larger in happy than in angry or disgusted faces,
    unlike eyeSquint, which is larger in angry / disgusted (lid tightening, AU07)."""
    from emogs.face.aus import GEOMETRY_NAMES, relative_geometry

    j = GEOMETRY_NAMES.index("cheek_raise")
    cheek = {e: relative_geometry(mead[(speaker, e)]["landmarks"], "clip", mead[(speaker, e)]["blendshapes"])[:, j].mean()
             for e in ("happy", "angry", "disgusted", "neutral")}
    assert cheek["happy"] > max(cheek["angry"], cheek["disgusted"], cheek["neutral"])


def test_direct_blendshapes_are_blind(mead):
    """Why AU06/AU09 need landmarks: cheekSquint and noseSneer stay ~0 even in happy / disgusted clips."""
    from emogs.face.aus import BS_INDEX

    for s in SPEAKERS:
        for e, names in (("happy", ("cheekSquintLeft", "cheekSquintRight")), ("disgusted", ("noseSneerLeft", "noseSneerRight"))):
            bs = mead[(s, e)]["blendshapes"]
            assert np.max(bs[:, [BS_INDEX[n] for n in names]]) < 0.05
