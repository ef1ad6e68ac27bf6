"""The AU -> ICT blendshape table is the inverse of the mesh AU analysis: table -> coefficients -> analysis
gives back the same AU, and no other AU above a small threshold (except FACS co-activations)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emogs.face.aus import AU_NAMES
from emogs.mesh.au_table import AU_DRIVE, AU_DRIVES, CO_ACTIVATION, au_to_expression, drive_matrix
from emogs.mesh.aus import aus_from_expression

# the 53 ICT-FaceKit expression names (the model's order)
ICT_NAMES = tuple(
    "browDown_L browDown_R browInnerUp_L browInnerUp_R browOuterUp_L browOuterUp_R cheekPuff_L cheekPuff_R "
    "cheekSquint_L cheekSquint_R eyeBlink_L eyeBlink_R eyeLookDown_L eyeLookDown_R eyeLookIn_L eyeLookIn_R "
    "eyeLookOut_L eyeLookOut_R eyeLookUp_L eyeLookUp_R eyeSquint_L eyeSquint_R eyeWide_L eyeWide_R jawForward "
    "jawLeft jawOpen jawRight mouthClose mouthDimple_L mouthDimple_R mouthFrown_L mouthFrown_R mouthFunnel "
    "mouthLeft mouthLowerDown_L mouthLowerDown_R mouthPress_L mouthPress_R mouthPucker mouthRight "
    "mouthRollLower mouthRollUpper mouthShrugLower mouthShrugUpper mouthSmile_L mouthSmile_R mouthStretch_L "
    "mouthStretch_R mouthUpperUp_L mouthUpperUp_R noseSneer_L noseSneer_R".split())
THRESHOLD = 0.1


def test_every_au_has_a_drive_on_known_shapes() -> None:
    assert [d.au for d in AU_DRIVES] == AU_NAMES
    for d in AU_DRIVES:
        assert d.shapes and set(d.shapes) <= set(ICT_NAMES), d.au
        assert d.facs and d.muscle
    M = drive_matrix(ICT_NAMES)
    assert M.shape == (17, 53) and (M.sum(1) > 0).all()


@pytest.mark.parametrize("intensity", [0.3, 0.6, 1.0])
def test_round_trip_through_coefficients(intensity: float) -> None:
    """All AUs but AU25 (whose analysis reads the mesh's lip gap; with the model below)."""
    for k, au in enumerate(AU_NAMES):
        if au == "AU25":
            continue
        a = np.zeros(17)
        a[k] = intensity
        e = au_to_expression(a, ICT_NAMES)
        back = aus_from_expression(e[None], ICT_NAMES, baseline="none")[0]
        assert abs(back[k] - intensity) < 0.02, (au, back[k])
        others = [j for j, b in enumerate(AU_NAMES) if j != k and b not in CO_ACTIVATION.get(au, ())]
        assert back[others].max() < THRESHOLD, (au, {AU_NAMES[j]: round(float(back[j]), 2) for j in others
                                                     if back[j] >= THRESHOLD})


def test_dict_input_and_zero() -> None:
    e = au_to_expression({"AU12": 1.0, "AU01": 0.5}, ICT_NAMES)
    assert e[ICT_NAMES.index("mouthSmile_L")] > 0 and e[ICT_NAMES.index("browInnerUp_R")] > 0
    assert not au_to_expression(np.zeros(17), ICT_NAMES).any()
    assert AU_DRIVE["AU26"].shapes == {"jawOpen": 1.0}


def test_round_trip_with_the_mesh_lip_gap(shared_data: Path) -> None:
    """AU25 and AU26 through the fitted-mesh lip gap of ICT's mean face."""
    from emogs.mesh.au_table import AU25_GAP_LOWER_LIP, AU25_GAP_PER_JAW
    from emogs.mesh.aus import lip_gap
    from emogs.mesh.correspondence import load_correspondence
    from emogs.mesh.ict import NPZ_NAME, load_ict

    p = shared_data / "assets" / "ict-facekit" / NPZ_NAME
    if not p.is_file():
        pytest.skip(f"{p} not found")
    model, corr = load_ict(p), load_correspondence()
    assert model.expression_names == ICT_NAMES
    e = np.zeros((2, 53), np.float32)
    e[0, [ICT_NAMES.index("mouthLowerDown_L"), ICT_NAMES.index("mouthLowerDown_R")]] = 1
    e[1, ICT_NAMES.index("jawOpen")] = 0.5
    g = lip_gap(model, corr, np.zeros(100), e)
    assert abs(g[0] / AU25_GAP_LOWER_LIP - 1) < 0.1 and abs(g[1] / (0.5 * AU25_GAP_PER_JAW) - 1) < 0.1, g
    for au in ("AU25", "AU26", "AU12", "AU01"):
        for want in (0.3, 0.8):
            a = np.zeros(17)
            a[AU_NAMES.index(au)] = want
            ex = au_to_expression(a, ICT_NAMES)[None]
            back = aus_from_expression(ex, ICT_NAMES, lip_gap(model, corr, np.zeros(100), ex), baseline="none")[0]
            assert abs(back[AU_NAMES.index(au)] - want) < 0.05, (au, want, back)
            others = [j for j, b in enumerate(AU_NAMES) if b != au and b not in CO_ACTIVATION.get(au, ())]
            assert back[others].max() < THRESHOLD, au
