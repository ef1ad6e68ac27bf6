"""Fast checks of scripts/control_proof.py's measures (no model, no rendering)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "control_proof.py"


@pytest.fixture(scope="module")
def cp():
    spec = importlib.util.spec_from_file_location("control_proof", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_windows_are_the_eased_part_and_clear_of_the_ramps(cp) -> None:
    from emogs.control.plan import build_plan

    F = 125
    inside, outside = cp.windows(F)
    t = np.arange(F) / 25.0
    assert t[inside].min() == pytest.approx(1.2) and t[inside].max() == pytest.approx(2.8)
    assert not (inside & outside).any() and t[outside & (t < 2)].max() < 0.8 and t[outside & (t > 2)].min() > 3.2
    # the window is exactly where an @1-3 request is fully eased in; outside it is not requested at all
    plan = build_plan(F, 25.0, au=["AU04=1.0@1-3"], default_au=np.zeros(17), blinks=False)
    assert (plan.mask[inside, 2] >= 0.999).all() and (plan.mask[outside, 2] == 0).all()


def test_edit_stats_effect_subtracts_the_plain_render(cp) -> None:
    F = 125
    inside, _ = cp.windows(F)
    req = np.zeros((F, 17), np.float32)
    req[inside, 2] = 1.0
    plain = np.full((F, 17), 0.2, np.float32)
    plain[inside, 2] += 0.1  # the plain render drifts up by 0.1 in the window by itself
    edit = plain.copy()
    edit[inside, 2] += 0.5
    edit[:10, 5] = np.nan  # untracked frames are ignored
    r = cp.edit_stats(edit, plain, req, 2)
    assert r["plain_delta"] == pytest.approx(0.1, abs=1e-6)
    assert r["edit_delta"] == pytest.approx(0.6, abs=1e-6)
    assert r["effect"] == pytest.approx(0.5, abs=1e-6)
    assert r["requested_in"] == 1.0 and r["requested_out"] == 0.0
    assert r["effect_all_aus"][2] == pytest.approx(0.5, abs=1e-6) and abs(r["effect_all_aus"][5]) < 1e-6


def test_emotion_stats_and_json(cp) -> None:
    F = 50
    plain = np.full((F, 17), 0.1, np.float32)
    emo = plain.copy()
    emo[:, 8] = 0.7
    req = np.zeros((F, 17), np.float32)
    req[:, 8] = 1.0
    s = cp.emotion_stats(emo, plain, req, np.zeros_like(req), [8, 4])
    assert s["aus"][8]["delta"] == pytest.approx(0.6) and s["aus"][4]["delta"] == pytest.approx(0.0)
    assert s["aus"][8]["requested"] == 1.0
    doc = cp.json_safe({"a": np.float32(np.nan), "b": np.arange(3), "c": {1: np.float64(0.123456)}})
    assert json.loads(json.dumps(doc, allow_nan=False)) == {"a": None, "b": [0, 1, 2], "c": {"1": 0.1235}}


def test_pearson_handles_gaps_and_constants(cp) -> None:
    x = np.sin(np.arange(60) / 3.0)
    y = x.copy()
    y[::7] = np.nan
    assert cp.pearson(x, y) == pytest.approx(1.0)
    assert np.isnan(cp.pearson(x, np.ones(60)))
    assert np.isnan(cp.pearson(x[:5], x[:5]))
