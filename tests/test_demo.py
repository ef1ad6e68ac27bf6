"""`emogs demo`: the quick configuration end to end (slow, runs in CI), plus fast checks of its pieces."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from emogs.errors import InputError

STAGES = ["synth", "speech", "prepare", "train", "render", "au_check", "eval", "report"]


def _refs(html: str) -> list[str]:
    return re.findall(r"""(?:src|href|poster)=['"]([^'"]+)['"]""", html)


def _duration_checks(out: Path) -> dict[str, float]:
    """Expected duration (s) of every video the demo makes, from the files that define them."""
    from emogs.io.atomic import read_json
    from emogs.io.media import load_audio

    speech = len(load_audio(out / "speech.wav")) / 16000
    man = read_json(out / "dataset" / "manifest.json")
    a, b = man["splits"]["test"]
    return {"subject.mp4": read_json(out / "subject.events.json")["duration"],
            "run/test_render.mp4": (b - a) / 25,
            "videos/speech.mp4": math.ceil(speech * 25 - 1e-9) / 25,
            "videos/au_edit.mp4": math.ceil(speech * 25 - 1e-9) / 25,
            "videos/emotion.mp4": math.ceil(speech * 25 - 1e-9) / 25}


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path: Path) -> None:
    from emogs.cli import main
    from emogs.io.atomic import read_json
    from emogs.io.media import load_audio, probe

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--device", "cpu", "-o", str(out)]) == 0

    html = (out / "index.html").read_text()
    refs = _refs(html)
    assert refs, "index.html links nothing"
    for r in refs:
        assert "://" not in r and not r.startswith("/"), f"non-relative link {r}"
        assert (out / r).is_file(), f"index.html references missing {r}"

    videos = sorted({r for r in refs if r.endswith(".mp4")})
    expected = _duration_checks(out)
    assert set(videos) == set(expected)
    for v in videos:
        info = probe(out / v)
        assert info.has_audio, f"{v} has no audio"
        assert info.duration == pytest.approx(expected[v], abs=0.05), v
        audio_s = len(load_audio(out / v)) / 16000
        assert audio_s == pytest.approx(expected[v], abs=0.1), f"{v}: audio {audio_s:.2f} s"
        assert "<video" in html and f"src='{v}'" in html

    m = read_json(out / "eval" / "metrics.json")
    assert 10 < m["psnr"] < 60 and 0 < m["ssim"] <= 1 and 0 <= m["lpips"] < 1

    c = read_json(out / "au_check.json")
    e = c["au_edit"]
    assert e["au"] == "AU01" and e["frames_in"] > 0 and e["frames_out"] > 0
    for k in ("edit_in", "edit_out", "plain_in", "plain_out", "effect"):
        assert isinstance(e[k], float) and math.isfinite(e[k]), k
    assert e["requested_in"] == pytest.approx(1.0)
    assert all(v["emotion"] is not None and v["plain"] is not None for v in c["emotion"]["aus"].values())
    assert min(c["tracked"].values()) > 0.8
    assert (out / "au_check.png").stat().st_size > 10_000

    t = read_json(out / "timings.json")["stages"]
    assert list(t) == STAGES and all(v["status"] == "ran" and v["seconds"] >= 0 for v in t.values())

    # a re-run reuses every finished stage and rebuilds the page
    assert main(["demo", "--quick", "--device", "cpu", "-o", str(out)]) == 0
    t2 = read_json(out / "timings.json")["stages"]
    assert [k for k, v in t2.items() if v["status"] == "reused"] == STAGES[:-1]
    assert t2["train"]["earlier_seconds"] == t["train"]["seconds"]
    # and refuses to mix in another configuration
    assert main(["demo", "--device", "cpu", "-o", str(out)]) == 2


def test_settings_and_train_config() -> None:
    from emogs.demo.pipeline import make_settings, train_config

    q, full = make_settings(True, "cpu", None), make_settings(False, "cpu", None)
    cq, cf = train_config(q), train_config(full)
    assert cq.iters == q.train_iters < cf.iters == full.train_iters
    assert cq.resolution == 128 and cq.device == "cpu" and cq.model.num_face == q.model_overrides["num_face"]
    assert cq.densify.stop <= cq.iters and cq.fine_start < cq.iters
    g = train_config(make_settings(False, "cuda", None))
    assert g.resolution == 512 and g.iters == 10_000 and g.device == "cuda"


def test_settings_mismatch_is_refused(tmp_path: Path) -> None:
    from emogs.demo.pipeline import check_settings, make_settings

    check_settings(tmp_path, make_settings(True, "cpu", None))
    check_settings(tmp_path, make_settings(True, "cpu", None))  # same: fine
    with pytest.raises(InputError, match="other settings"):
        check_settings(tmp_path, make_settings(False, "cpu", None))


def test_missing_video_is_an_input_error(tmp_path: Path) -> None:
    from emogs.demo import run_demo

    with pytest.raises(InputError, match="no such file"):
        run_demo(tmp_path / "d", video=tmp_path / "nope.mp4", quick=True, device="cpu")


def test_edit_stats_measures_the_window() -> None:
    """A render whose AU01 rises exactly in the requested window gives effect = the rise."""
    from emogs.control.plan import build_plan
    from emogs.eval.controls import edit_stats, edit_windows

    F = 100
    plan = build_plan(F, 25.0, au=["AU01=1.0@1.0-2.5"], default_au=np.zeros(17), blinks=False)
    plain = np.full((F, 17), 0.1, np.float32)
    edit = plain.copy()
    edit[:, 0] += 0.5 * (plan.mask[:, 0] >= 0.999)
    inside, outside = edit_windows(plan.mask[:, 0], 5)
    r = edit_stats(edit, plain, plan.au, inside, outside, 0)
    assert r["effect"] == pytest.approx(0.5, abs=1e-6) and r["plain_delta"] == pytest.approx(0.0, abs=1e-6)
    assert 0 < r["frames_in"] < 38 and r["frames_out"] > 50
    edit[:, 0] = plain[:, 0]  # no effect -> 0
    assert edit_stats(edit, plain, plan.au, inside, outside, 0)["effect"] == pytest.approx(0.0, abs=1e-6)


def test_control_verdict_is_honest() -> None:
    from emogs.demo.report_html import control_verdict

    base = {"au_edit": {"au": "AU01", "effect": 0.01}, "emotion": {"aus": {"AU12": {"delta": 0.3}}}}
    v = control_verdict(base)
    assert "AU01) had no clear effect" in v and "emotion preset moved" in v
