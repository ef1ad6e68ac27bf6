"""`emogs eval-controls` (emogs.eval.controls): the measures on known arrays, the conditions, and the command
end to end on a tiny trained run (renders reused on a second call, bad inputs refused before any work)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from emogs.errors import InputError
from emogs.eval import controls as ec


def test_edit_windows_are_the_fully_eased_part_clear_of_the_ramps() -> None:
    from emogs.control.plan import build_plan

    F = 125
    plan = build_plan(F, 25.0, au=["AU04=1.0@1-3"], default_au=np.zeros(17), blinks=False)
    inside, outside = ec.edit_windows(plan.mask[:, 2], 5)
    t = np.arange(F) / 25.0
    assert not (inside & outside).any()
    # fully on from 1.2 s to 2.8 s (ease 0.2 s); off before 1.0 s and after 3.0 s, counted more than 0.2 s away
    assert t[inside].min() == pytest.approx(1.2) and t[inside].max() == pytest.approx(2.8)
    assert t[outside & (t < 2)].max() == pytest.approx(0.76) and t[outside & (t > 2)].min() == pytest.approx(3.24)
    assert (plan.mask[inside, 2] >= 0.999).all() and (plan.mask[outside, 2] == 0).all()


def test_edit_stats_effect_subtracts_the_plain_render() -> None:
    F = 125
    inside = np.zeros(F, bool)
    inside[40:60] = True
    outside = np.zeros(F, bool)
    outside[:20] = outside[80:] = True
    rec = np.zeros((F, 17), np.float32)
    rec[inside, 2] = 1.0
    plain = np.full((F, 17), 0.2, np.float32)
    plain[inside, 2] += 0.1  # the plain render drifts up by 0.1 in the window by itself
    edit = plain.copy()
    edit[inside, 2] += 0.5
    edit[:10, 5] = np.nan  # untracked frames are ignored
    r = ec.edit_stats(edit, plain, rec, inside, outside, 2)
    assert r["plain_delta"] == pytest.approx(0.1, abs=1e-6) and r["edit_delta"] == pytest.approx(0.6, abs=1e-6)
    assert r["effect"] == pytest.approx(0.5, abs=1e-6)
    assert r["received_in"] == 1.0 and r["received_out"] == 0.0
    assert r["effect_all_aus"][2] == pytest.approx(0.5, abs=1e-6) and abs(r["effect_all_aus"][5]) < 1e-6


def test_emotion_stats_locality_and_json() -> None:
    F = 50
    plain = np.full((F, 17), 0.1, np.float32)
    emo = plain.copy()
    emo[:, 8] = 0.7
    rec = np.zeros((F, 17), np.float32)
    rec[:, 8] = 1.0
    s = ec.emotion_stats(emo, plain, rec, np.zeros_like(rec), [8, 4])
    assert s["aus"][8]["delta"] == pytest.approx(0.6) and s["aus"][4]["delta"] == pytest.approx(0.0)
    assert s["aus"][8]["received"] == 1.0
    # a change that is all outside the face mask
    a = np.zeros((4, 20, 20, 3), np.uint8)
    b = a.copy()
    b[:, :5] = 100
    face = np.zeros((4, 20, 20), bool)
    face[:, 10:] = True
    loc = ec.locality(a, b, face, np.ones(4, bool))
    assert loc["outside_share"] == pytest.approx(1.0) and loc["inside_mean"] == 0
    doc = ec.json_safe({"a": np.float32(np.nan), "b": np.arange(3), "c": {1: np.float64(0.123456)}, "d": np.bool_(True)})
    assert json.loads(json.dumps(doc, allow_nan=False)) == {"a": None, "b": [0, 1, 2], "c": {"1": 0.1235}, "d": True}


def test_pearson_handles_gaps_and_constants() -> None:
    x = np.sin(np.arange(60) / 3.0)
    y = x.copy()
    y[::7] = np.nan
    assert ec.pearson(x, y) == pytest.approx(1.0)
    assert np.isnan(ec.pearson(x, np.ones(60)))
    assert np.isnan(ec.pearson(x[:5], x[:5]))


def test_conditions_from_the_command_line() -> None:
    cs = ec.conditions_from_args(["AU12=1@1-3"], ["happy:0.7"], False, 5.0)
    assert cs[0] == ec.PLAIN and [c.kind for c in cs] == ["plain", "au", "emotion"]
    assert ec.Condition("x", ("AU04=0",), "sad").kind == "emotion"  # a preset with an AU override (Python API)
    cs = ec.conditions_from_args(["AU12=1@1-3", "AU04=1@1-3"], ["happy", "sad"], False, 5.0)
    assert [c.kind for c in cs] == ["plain", "au", "au", "emotion", "emotion"]
    assert cs[1].edited_au() == "AU12" and cs[1].flags() == "--au AU12=1@1-3"
    std = ec.conditions_from_args([], [], True, 5.0)
    assert [c.name for c in std[1:11]] == list(ec.STANDARD_AUS) and [c.name for c in std[11:]] == list(ec.STANDARD_EMOTIONS)
    assert std[1].au == ("AU01=1.0@0.50-4.50",)  # a 4 s window in the middle of 5 s
    with pytest.raises(InputError, match="nothing to measure"):
        ec.conditions_from_args([], [], False, 5.0)
    with pytest.raises(InputError):
        ec.conditions_from_args(["AU99=1"], [], False, 5.0)
    with pytest.raises(InputError, match="given twice"):
        ec.conditions_from_args(["AU12=1", "AU12=1"], [], False, 5.0)
    cs = ec.conditions_from_args([], [], False, 5.0, [0.1])
    assert [c.kind for c in cs] == ["plain", "noise"] and cs[1].name == "au_noise_0_1" and cs[1].noise == 0.1
    with pytest.raises(InputError, match="noise sd"):
        ec.conditions_from_args([], [], False, 5.0, [0.0])


def test_au_noise_plan_is_seeded_keeps_the_mask_and_raises_the_input_jerk() -> None:
    from emogs.control.plan import build_plan
    from emogs.eval.au_metrics import au_jerk, au_jerk_per_au

    plans = ec.plans_for([ec.PLAIN, ec.Condition("n", noise=0.05)], 200, np.full(17, 0.3, np.float32), False)
    plain, noisy = plans["plain"], plans["n"]
    again = ec.add_au_noise(build_plan(200, 25.0, default_au=np.full(17, 0.3, np.float32), blinks=False), 0.05)
    assert np.array_equal(noisy.au, again.au) and np.array_equal(noisy.mask, plain.mask)
    d = noisy.au - plain.au
    assert 0.04 < d.std() < 0.06 and abs(d.mean()) < 0.01 and noisy.au.min() >= 0 and noisy.au.max() <= 1
    assert au_jerk(plain.au) < 1e-6 and 0.085 < au_jerk(noisy.au) < 0.11  # E|N(0, 6 x .05^2)| = 0.098
    per = au_jerk_per_au(noisy.au)
    assert per.shape == (17,) and np.mean(per) == pytest.approx(au_jerk(noisy.au))


@pytest.mark.slow
def test_eval_controls_end_to_end_on_a_tiny_run(tiny_run, shared_data, tmp_path, capsys) -> None:
    from emogs.cli import main

    audio = shared_data / "audio" / "emotalk_happy.wav"
    out = tmp_path / "ec"
    argv = ["eval-controls", str(tiny_run), "--audio", str(audio), "--au", "AU04=1@1-2.5", "--emotion", "sad",
            "--au-noise", "0.2", "--size", "256", "-o", str(out), "--id-stride", "10"]
    assert main(argv) == 0
    doc = json.loads((out / "results.json").read_text())
    c = doc["conditions"]
    assert list(c) == ["plain", "AU04_1_1-2_5", "sad", "au_noise_0_2"]
    nz = c["au_noise_0_2"]
    assert nz["kind"] == "noise" and nz["au_jerk_received"] > nz["au_jerk_received_plain"] + 0.1
    assert nz["au_jerk"] is not None and nz["au_jerk_plain"] == c["plain"]["au_jerk"]
    assert "AU-noise stress test" in (out / "tables.md").read_text()
    a = c["AU04_1_1-2_5"]
    assert a["kind"] == "au" and a["au"] == "AU04" and a["frames_in"] > 5 and a["frames_out"] > 5
    assert a["received_in"] > a["received_out"]  # the model was asked for more AU04 in the window
    assert c["plain"]["tracked"] > 0.5 and set(c["sad"]["aus"]) == {"AU01", "AU04", "AU15"}
    for f in ("tables.md", "contact_sheet.png", "contact_diff.png", "mouth_tracks.png", "AU04_1_1-2_5.png", "sad.png"):
        assert (out / f).stat().st_size > 500, f
    assert "AU04=1@1-2.5" in (out / "tables.md").read_text()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "videos").glob("*.mp4")}
    capsys.readouterr()
    assert main(argv) == 2  # an earlier report is not replaced without --force
    assert "--force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0  # the same settings: renders reused
    assert "reusing 4 renders" in capsys.readouterr().err
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in (out / "videos").glob("*.mp4")}
    # bad inputs: one-line error, exit 2, before any rendering
    assert main(["eval-controls", str(tiny_run), "--audio", str(audio), "-o", str(tmp_path / "x")]) == 2
    assert "nothing to measure" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["eval-controls", str(tiny_run), "--audio", str(audio), "--au", "AU12=1", "-o", str(tmp_path / "file")]) == 2
    assert "must be a folder" in capsys.readouterr().err
