"""emogs.control.plan / emotions / blinks / cli_args: layer semantics, presets, blinks, bad input."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest

from emogs.control import build_plan
from emogs.control.blinks import BLINK_THRESHOLD, blink_track
from emogs.control.cli_args import add_control_args, controls_from_args
from emogs.control.emotions import EMOTIONS, PRESERVED_AUS, emotion_vector
from emogs.control.names import AU_INDEX, AU_NAMES
from emogs.errors import InputError

FPS = 25.0
F = 250  # 10 s
T = np.arange(F) / FPS
I = AU_INDEX
DOCS = Path(__file__).resolve().parents[1] / "docs" / "controls.md"


def col(plan, au):
    return plan.au[:, I[au]]


def test_ranged_au_eases_in_and_out():
    p = build_plan(F, au=["AU01=1.0@2.0-4.0"], base="neutral", blinks=False)
    a = col(p, "AU01")
    assert p.au.dtype == np.float32 and p.au.shape == (F, 17) and p.mask.shape == (F, 17)
    assert np.all(a[T < 2.0] == 0) and np.all(a[T >= 4.0] == 0)
    assert np.all(a[(T >= 2.2 - 1e-9) & (T <= 3.8 + 1e-9)] == 1.0)
    assert np.abs(np.diff(a)).max() <= 0.3 + 1e-6          # 1.5 / (0.2 s * 25 fps): no pop
    hard = col(build_plan(F, au=["AU01=1.0@2.0-4.0"], ease=0.0, base="neutral", blinks=False), "AU01")
    assert np.abs(np.diff(hard)).max() == 1.0               # ease 0 = a step, so the bound above means something
    slow = col(build_plan(F, au=["AU01=1.0@2.0-4.0"], ease=0.6, base="neutral", blinks=False), "AU01")
    assert np.abs(np.diff(slow)).max() <= 1.5 / (0.6 * FPS) + 1e-6
    assert np.allclose(p.mask[:, I["AU01"]], a)             # the mask is the ease weight
    assert p.mask[:, I["AU12"]].max() == 0


def test_override_order_and_blending():
    base = np.full(17, 0.2)
    p = build_plan(F, au=["AU12=0.3", "AU12=0.9@2-4"], base="default", default_au=base, blinks=False)
    a = col(p, "AU12")
    assert np.allclose(a[T < 2], 0.3) and np.allclose(a[(T > 2.3) & (T < 3.7)], 0.9) and np.allclose(a[T >= 4], 0.3)
    mid = a[(T > 2.0) & (T < 2.2)]                          # blended 0.3 -> 0.9 by the ease weight
    assert np.all((mid > 0.3) & (mid < 0.9))
    assert np.allclose(col(p, "AU04"), 0.2) and p.mask[:, I["AU04"]].max() == 0  # untouched AUs keep the base
    # --au beats the emotion, per AU; the emotion's other AUs stay
    p = build_plan(F, au="AU12=0.2", emotion="happy", base="neutral", blinks=False)
    assert np.allclose(col(p, "AU12"), 0.2) and np.allclose(col(p, "AU06"), 0.8)


@pytest.mark.parametrize("name", list(EMOTIONS))
def test_emotion_presets_and_intensity(name):
    full = build_plan(F, emotion=name, base="neutral", blinks=False)
    assert np.allclose(full.au, emotion_vector(name)[None].astype(np.float32))
    for au, v in EMOTIONS[name].aus.items():
        assert col(full, au)[0] == pytest.approx(v)
    half = build_plan(F, emotion=f"{name}:0.5", base="neutral", blinks=False)
    assert np.allclose(half.au, 0.5 * full.au, atol=1e-6)


def test_emotion_table_values():
    assert emotion_vector("happy")[[I["AU06"], I["AU12"]]].tolist() == [0.8, 1.0]
    assert {k for k, v in EMOTIONS["sad"].aus.items()} == {"AU01", "AU04", "AU15"}
    assert set(EMOTIONS["surprised"].aus) == {"AU01", "AU02", "AU05", "AU26"}
    assert set(EMOTIONS["fear"].aus) == {"AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"}
    assert set(EMOTIONS["angry"].aus) == {"AU04", "AU05", "AU07", "AU23"}
    assert set(EMOTIONS["disgusted"].aus) == {"AU09", "AU10", "AU15"}
    assert set(EMOTIONS["contempt"].aus) == {"AU12", "AU14"}
    assert all("AU45" not in e.aus for e in EMOTIONS.values())


def test_emotion_on_default_base_keeps_blinks_and_speech_aus():
    base = np.linspace(0.05, 0.4, 17)
    p = build_plan(F, emotion="happy:1", default_au=base, blinks=False)
    assert np.allclose(col(p, "AU12"), 1.0) and np.allclose(col(p, "AU04"), 0.0)   # others pulled to 0
    for au in PRESERVED_AUS:                                                          # AU45, AU25, AU26 kept
        assert np.allclose(col(p, au), base[I[au]]) and p.mask[:, I[au]].max() == 0
    p = build_plan(F, emotion="surprised", default_au=base, blinks=False)
    assert np.allclose(col(p, "AU26"), 0.6)                                           # named by the prototype
    p0 = build_plan(F, emotion="happy:0", default_au=base, blinks=False)
    assert np.allclose(p0.au, base[None].astype(np.float32))                          # intensity 0 = no change
    pn = build_plan(F, emotion="neutral:0.5", default_au=base, blinks=False)
    assert np.allclose(col(pn, "AU04"), 0.5 * base[I["AU04"]])
    # with blinks on, the preset leaves AU45 to the blink generator
    pb = build_plan(F, emotion="angry", base="neutral")
    assert col(pb, "AU45").max() >= BLINK_THRESHOLD


def test_docs_emotion_table_matches_code():
    text = DOCS.read_text()
    for name, e in EMOTIONS.items():
        row = next((ln for ln in text.splitlines() if ln.startswith(f"| {name} ")), None)
        assert row is not None, f"docs/controls.md has no row for {name}"
        for au, v in e.aus.items():
            assert f"{au} {v:.1f}" in row, f"{name}: {au} {v} missing from the docs row"


# --- blinks ----------------------------------------------------------------------------------------
def test_blink_statistics():
    n = int(600 * FPS)  # 10 minutes
    track, events = blink_track(n, FPS, seed=3)
    peaks = np.array([e[0] for e in events])
    intervals = np.diff(peaks)
    assert 12 <= len(events) / 10 <= 20                               # blinks per minute
    assert 3.5 <= intervals.mean() <= 4.5 and intervals.min() >= 2.0 - 0.04 and intervals.max() <= 8.0 + 0.04
    assert intervals.std() > 0.8                                      # random, not a metronome
    durs = np.array([e[1] for e in events])
    assert durs.min() >= 0.15 and durs.max() <= 0.25
    on = track > 0
    starts = np.flatnonzero(on[1:] & ~on[:-1]) + 1
    ends = np.flatnonzero(on[:-1] & ~on[1:]) + 1
    lengths = (ends - starts[: len(ends)]) / FPS
    assert lengths.max() <= 0.25 + 1e-9 and lengths.min() >= 0.08      # 150-250 ms blinks, sampled at 25 fps
    assert np.all(track[(peaks * FPS).round().astype(int)] >= 0.8)   # the peak lands on a frame
    assert track[: int(0.4 * FPS)].max() == 0
    assert np.array_equal(blink_track(n, FPS, seed=3)[0], track)      # reproducible
    assert not np.array_equal(blink_track(n, FPS, seed=4)[0], track)


def test_blink_rules_in_plans(tmp_path):
    assert col(build_plan(F, base="neutral"), "AU45").max() >= 0.8              # none in the base: generated
    assert col(build_plan(F, base="neutral", blinks=False), "AU45").max() == 0  # --no-blinks
    assert np.allclose(col(build_plan(F, au="AU45=0.1", base="neutral"), "AU45"), 0.1)  # user owns AU45
    p = build_plan(F, au="AU45=0@0-10", base="neutral")
    assert col(p, "AU45").max() == 0
    p = build_plan(F, au="AU45=0@2-6", base="neutral", blink_seed=1)
    a = col(p, "AU45")
    assert a[(T >= 2) & (T < 6)].max() == 0 and a.max() >= 0.8                   # blinks only outside the range
    tl = tmp_path / "b.csv"
    tl.write_text("time,AU45\n0,0\n5.0,0\n5.12,1\n5.24,0\n")                         # the timeline blinks itself
    p = build_plan(F, timeline=tl, base="neutral")
    assert p.blinks == [] and (col(p, "AU45") >= 0.5).sum() <= 3


# --- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(au=["AU01=1@2-5", "AU01=0.5@4-6"]), r"'AU01=1@2-5' and 'AU01=0.5@4-6' overlap in time for AU01"),
    (dict(au=["AU01=1@2-end", "au1=0.5@4-6"]), r"overlap in time for AU01"),
    (dict(au=["AU12=0.5", "AU12=0.7"]), r"both set AU12 for the whole clip"),
    (dict(au=["AU12=0.5@12-14"]), r"starts at 12 s but the audio lasts only 10.00 s"),
    (dict(au=["AU12=0.5@1-2"], ease=-0.1), r"--au-ease"),
    (dict(emotion="joyful"), r"unknown emotion 'joyful'"),
    (dict(emotion="happy:2"), r"outside \[0, 1\]"),
    (dict(pose="dynamic"), r"unknown --pose 'dynamic'"),
    (dict(base="smiling"), r"unknown base 'smiling'"),
    (dict(au={"AU12": (0.5, 1.0)}), r"expected value or \(value, start, end\)"),
])
def test_bad_plans(kwargs, match):
    with pytest.raises(InputError, match=match):
        build_plan(F, **kwargs)


def test_range_past_the_end_is_clipped_with_a_warning():
    p = build_plan(F, au=["AU02=1@8-12"], base="neutral", blinks=False)
    assert len(p.warnings) == 1 and "ends at 12 s" in p.warnings[0] and "clipped" in p.warnings[0]
    assert col(p, "AU02")[-1] == 1.0                                  # held to the end, no ease-out there
    assert "warning: --au 'AU02=1@8-12'" in p.summary()
    p = build_plan(F, au=["AU02=1@9.99-12"], base="neutral", blinks=False)
    assert col(p, "AU02").max() == 0 and "holds no frame" in p.warnings[-1]


def test_mapping_api_and_summary():
    p = build_plan(F, au={"AU12": 0.8, "AU01": (1.0, 2.0, 4.0)}, emotion="sad:0.5", default_au=np.full(17, 0.1))
    s = p.summary()
    assert "emotion: sad x0.5" in s and "--au AU01=1@2-4 (ease 0.2 s)" in s and "blinks: " in s
    assert re.search(r"AU12\s+0\.80\s+0\.80\s+0\.80\s+250/250", s)
    assert p.controlled[:, I["AU12"]].all() and not p.controlled[:, I["AU45"]].any()


# --- cli_args --------------------------------------------------------------------------------------
def _parse(argv):
    ap = argparse.ArgumentParser()
    add_control_args(ap)
    return ap.parse_args(argv)


def test_cli_args_constants_match_and_import_light():
    import subprocess
    import sys

    from emogs.control import cli_args, plan
    from emogs.control.emotions import EMOTION_NAMES

    assert cli_args.DEFAULT_EASE == plan.DEFAULT_EASE and cli_args.EMOTION_NAMES == EMOTION_NAMES
    code = ("import sys, argparse, emogs.control.cli_args as c; c.add_control_args(argparse.ArgumentParser()); "
            "print(sorted(m for m in ('scipy', 'numpy', 'emogs.control.plan') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # `emogs --help` must not pay for numpy / scipy


def test_cli_args_roundtrip(tmp_path):
    tl = tmp_path / "t.json"
    tl.write_text('{"keyframes": [{"time": 0, "AU04": 0.0}, {"time": 10, "AU04": 1.0}]}')
    args = _parse(["--au", "AU12=0.8", "--au", "AU01=1.0@2-4,AU02=1@2-4", "--emotion", "surprised:0.5",
                   "--au-timeline", str(tl), "--pose", "static", "--blink-seed", "2", "--au-ease", "0.3"])
    seen = []
    p = controls_from_args(args, F, default_au=np.full(17, 0.1), warn=seen.append)
    assert np.allclose(col(p, "AU12"), 0.8) and col(p, "AU02")[75] == 1.0 and col(p, "AU04")[125] == pytest.approx(0.5)
    assert p.pose.mode == "static" and seen == []
    args = _parse(["--au", "AU12=0.5@9-11"])
    p = controls_from_args(args, F, warn=seen.append)
    assert len(seen) == 1 and "clipped" in seen[0]
    with pytest.raises(InputError, match="choose one"):
        controls_from_args(_parse(["--pose", "training", "--pose-from", "x.mp4"]), F)
    with pytest.raises(SystemExit):
        _parse(["--pose", "wobbly"])


def test_raising_an_au_relaxes_its_antagonist_unless_it_is_set():
    from emogs.control.names import AU_INDEX

    base = np.zeros(17)
    base[AU_INDEX["AU04"]] = 0.5  # a default face that frowns
    i1, i4 = AU_INDEX["AU01"], AU_INDEX["AU04"]
    p = build_plan(100, 25.0, au=["AU01=1@1-3"], default_au=base, blinks=False)
    t = np.arange(100) / 25
    inside, before = (t > 1.3) & (t < 2.7), t < 0.9
    assert np.allclose(p.au[inside, i4], 0.0, atol=1e-6) and np.allclose(p.au[before, i4], 0.5)
    assert any("antagonists relaxed" in layer for layer in p.layers)
    kept = build_plan(100, 25.0, au=["AU01=1@1-3", "AU04=0.5"], default_au=base, blinks=False)
    assert np.allclose(kept.au[:, i4], 0.5)  # the user set AU04: a 1+4 brow as asked
    half = build_plan(100, 25.0, au=["AU01=0.5"], default_au=base, blinks=False)
    assert np.allclose(half.au[:, i4], 0.25)  # half the way to 1 relaxes half of it
    sad = build_plan(100, 25.0, emotion="sad", default_au=base, blinks=False)
    assert sad.au[50, i1] > 0.7 and sad.au[50, i4] > 0.5  # a preset's own combination (1+4+15) stays
