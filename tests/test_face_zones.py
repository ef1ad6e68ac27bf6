"""Zone label maps from landmarks."""
from __future__ import annotations

import numpy as np

from emogs.face import zones as Z
from emogs.face.tracker import FaceTracker
from emogs.io.media import read_frames


def test_label_names():
    assert Z.LABEL_NAMES == ["background", "torso", "head_other", "synergy", "expression", "audio", "mouth_interior"]
    assert (Z.SYNERGY, Z.EXPRESSION, Z.AUDIO, Z.MOUTH_INTERIOR) == (3, 4, 5, 6)


def test_zones_on_real_face(shared_data):
    path = shared_data / "emotion" / "W011_front_surprised_level3_001.mp4"  # open mouth
    frame = list(read_frames(path, max_seconds=2.0))[-1]
    with FaceTracker(video_mode=False) as tr:
        res = tr.track(frame)
    h, w = frame.shape[:2]
    lab = Z.label_map(res.landmarks, h, w)
    assert lab.shape == (h, w) and lab.dtype == np.uint8
    assert set(np.unique(lab)) == {0, 3, 4, 5, 6}
    p = res.landmarks[:, :2].round().astype(int)
    at = lambda i: lab[p[i, 1], p[i, 0]]  # noqa: E731
    assert at(1) == Z.EXPRESSION  # nose tip
    assert at(105) == Z.EXPRESSION and at(334) == Z.EXPRESSION  # brows
    assert at(50) == Z.SYNERGY and at(280) == Z.SYNERGY  # cheeks
    assert at(152 - 0) in (Z.SYNERGY, 0)  # chin (on the oval's edge)
    assert at(200) == Z.SYNERGY  # chin boss
    mouth_centre = ((res.landmarks[13, :2] + res.landmarks[14, :2]) / 2).round().astype(int)
    assert lab[mouth_centre[1], mouth_centre[0]] == Z.MOUTH_INTERIOR
    assert at(0) == Z.AUDIO and at(17) == Z.AUDIO  # upper and lower lip
    # forehead: well above the brows, still expression
    fh = (res.landmarks[9, :2] + 0.1 * (res.landmarks[10, :2] - res.landmarks[152, :2])).round().astype(int)
    assert lab[fh[1], fh[0]] == Z.EXPRESSION
    # zones are a sensible share of the face: audio and mouth interior smaller than the rest
    counts = np.bincount(lab.ravel(), minlength=7)
    assert counts[Z.SYNERGY] > counts[Z.AUDIO] > counts[Z.MOUTH_INTERIOR] > 0
    # painting into an existing map keeps labels outside the face
    base = np.full((h, w), Z.TORSO, np.uint8)
    out = Z.label_map(res.landmarks, h, w, out=base)
    assert out is base and out[0, 0] == Z.TORSO and out[mouth_centre[1], mouth_centre[0]] == Z.MOUTH_INTERIOR
