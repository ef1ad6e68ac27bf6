"""The speech stage of a mesh run (emogs.train.speech) and the mouth it drives at render time: a tiny mesh run
on a short real slice (may_5s, 128 px) fine-tunes the shipped prior and writes speech_motion.safetensors; the
expression the Avatar feeds the head follows the driving audio and mouth AU edits still add on top."""
from __future__ import annotations

import json

import numpy as np
import pytest

from emogs.cli import main

OVER = {"resolution": 64, "log_every": 5, "model": {"num_face": 2500, "num_shell": 800, "num_mouth": 300},
        "num_vote_views": 8, "eval_lpips": False, "checkpoint_every": 5,
        "speech": {"fine_tune_steps": 10, "eval_every": 5, "batch": 8}}


@pytest.fixture(scope="module")
def speech_run(may_dataset, tmp_path_factory):
    if not (may_dataset / "mesh.npz").is_file():
        pytest.skip("the test dataset has no mesh fit (ICT-FaceKit not found)")
    run = tmp_path_factory.mktemp("speech") / "run"
    assert main(["train", str(may_dataset), "-o", str(run), "--model", "mesh", "--iters", "10", "--device", "cpu",
                 "--config-json", json.dumps(OVER)]) == 0
    return run


def _speech(may_dataset) -> np.ndarray:
    """The slice's own speech (4 s), then 1.5 s of near-silence, then its first second again."""
    from emogs.io.media import load_audio

    wav = load_audio(may_dataset / "audio.wav")
    quiet = np.random.default_rng(0).normal(scale=1e-3, size=24000).astype(np.float32)
    return np.concatenate([wav, quiet, wav[:16000]]).astype(np.float32)


def _fed_expressions(av, wav, **kw) -> np.ndarray:
    """Render `wav` and return the (F, E) expressions the Avatar passed to the head, frame by frame."""
    fed = []
    run = av.renderer.run

    def spy(calls, *a, **k):
        def gen():
            for c in calls:
                fed.append(c[5].cpu().numpy())
                yield c
        return run(gen(), *a, **k)

    av.renderer.run = spy
    try:
        frames = av.render(wav, quiet=True, blinks=False, **kw)
    finally:
        av.renderer.run = run
    e = np.concatenate(fed)
    assert len(e) == len(frames)
    return e


def test_mesh_run_writes_a_fine_tuned_prior_with_its_report(speech_run):
    from emogs.model.speech_motion import PRIOR_FEATURE, SPEECH_COEFFS
    from emogs.run import open_run

    r = open_run(speech_run)
    assert (speech_run / "speech_motion.safetensors").is_file() and r.is_complete()
    module, mean, scale = r.speech_motion()
    assert module.cfg.feature == PRIOR_FEATURE and mean.shape == scale.shape == (len(SPEECH_COEFFS),)
    from safetensors import safe_open

    with safe_open(str(speech_run / "speech_motion.safetensors"), framework="pt") as f:
        rep = json.loads(f.metadata()["report"])
    assert rep["choice"] in ("fine_tuned", "pretrained") and rep["steps"] == 10
    assert rep["tail_mse_pretrained"] is not None and rep["tail_mse_fine_tuned"] is not None
    # the kept weights are the better of the two on the held-out tail
    assert rep["tail_mse_after"] == pytest.approx(min(rep["tail_mse_pretrained"], rep["tail_mse_fine_tuned"]))
    assert (rep["choice"] == "fine_tuned") == (rep["tail_mse_fine_tuned"] < rep["tail_mse_pretrained"])
    # the person's mean is the training split's mean of the fit's coefficients
    from emogs.model.speech_motion import coeff_index

    with np.load(r.info()["dataset"]["root"] + "/mesh.npz") as z:
        e, names = z["expression"], [str(n) for n in z["expression_names"]]
    a, b = json.loads((speech_run / "dataset.json").read_text())["manifest"]["splits"]["train"]
    np.testing.assert_allclose(mean, e[a:b][:, coeff_index(names)].mean(0), atol=1e-5)


def test_rendered_jaw_follows_the_audio_and_au26_still_adds(speech_run, may_dataset):
    from emogs.avatar import Avatar

    av = Avatar.load(speech_run, device="cpu", size=64)
    assert av.motion is not None
    wav = _speech(may_dataset)
    names = av.info["expression_names"]
    j = names.index("jawOpen")
    e = _fed_expressions(av, wav)
    jaw = e[:, j]
    speech, quiet = jaw[5:95], jaw[105:135]  # frames 0-100: speech; 100-137.5: near silence
    assert speech.std() > 0.01, speech.std()                 # the jaw moves with the speech ...
    assert speech.std() > 3 * quiet.std(), (speech.std(), quiet.std())  # ... and rests in the quiet part
    assert quiet.mean() < speech.mean()
    # the same as the prior predicts for this audio on its own (the mouth's coefficients come from it)
    from emogs.audio import feature_rows
    from emogs.model.speech_motion import SPEECH_COEFFS, predict_rows

    module, mean, scale = av.motion
    rows, _ = feature_rows(wav, module.cfg.feature)
    pred = predict_rows(module, rows, len(jaw), mean, scale)[:, SPEECH_COEFFS.index("jawOpen")]
    np.testing.assert_allclose(jaw, pred, atol=1e-5)
    # the upper face is the head's default, not the audio's
    k = names.index("browInnerUp_L")
    assert np.ptp(e[:, k]) < 1e-6
    # an AU26 edit from 1 s to 2 s opens the jaw further on top of the speech
    e26 = _fed_expressions(av, wav, au="AU26=1@1-2")
    d = e26[:, j] - jaw
    assert d[30:45].min() > 0.15, d[30:45]
    assert np.abs(d[:20]).max() < 1e-5 and np.abs(d[60:]).max() < 1e-5
    # --no-speech-aus holds the mouth: no audio-driven jaw
    held = _fed_expressions(av, wav, speech_aus=False)
    assert np.ptp(held[:, j]) < 1e-6


def test_a_mesh_run_without_the_prior_renders_as_before(speech_run, tmp_path):
    import shutil

    from emogs.avatar import Avatar

    old = tmp_path / "old"
    shutil.copytree(speech_run, old)
    (old / "speech_motion.safetensors").unlink()
    av = Avatar.load(old, device="cpu", size=64)
    assert av.motion is None
    frames = av.render(np.random.default_rng(1).normal(scale=0.05, size=16000).astype(np.float32), quiet=True)
    assert frames.shape == (25, 64, 64, 3)


def test_the_stage_runs_once_across_an_interrupted_and_a_complete_run(may_dataset, tmp_path):
    import torch

    if not (may_dataset / "mesh.npz").is_file():
        pytest.skip("the test dataset has no mesh fit (ICT-FaceKit not found)")
    from emogs.train.config import build_config
    from emogs.train.loop import train

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = build_config("cpu", 6, None, {**OVER, "model.kind": "mesh", "checkpoint_every": 3})
        logs: list[str] = []
        out = tmp_path / "run"
        s1 = train(may_dataset, out, cfg, max_steps=3, log=logs.append)
        assert not s1["finished"] and not (out / "speech_motion.safetensors").exists()
        s2 = train(may_dataset, out, cfg, log=logs.append)
        assert s2["finished"] and s2["speech_motion"]["steps"] == 10
        stamp = (out / "speech_motion.safetensors").stat().st_mtime_ns
        s3 = train(may_dataset, out, cfg, log=logs.append)
        assert s3.get("already_complete") and "speech_motion" not in s3
        assert (out / "speech_motion.safetensors").stat().st_mtime_ns == stamp
        assert sum("[train] speech motion:" in m and "prior kept" in m for m in logs) == 1
        off = build_config("cpu", 2, None, {**OVER, "model.kind": "mesh", "speech.enabled": False})
        s4 = train(may_dataset, tmp_path / "off", off, log=logs.append)
        assert "speech_motion" not in s4 and not (tmp_path / "off" / "speech_motion.safetensors").exists()
    finally:
        torch.set_num_threads(old)


def test_the_stage_skips_free_heads_and_caps_steps_by_epochs():
    from emogs import config as cfgio
    from emogs.train.config import SpeechConfig, cpu_config
    from emogs.train.speech import fine_tune_steps, speech_motion_stage

    free = cfgio.override(cpu_config(), {"model.kind": "free"})
    assert speech_motion_stage(None, object(), free, log=lambda _: None) is None
    sc = SpeechConfig()
    assert fine_tune_steps(10_000, sc) == sc.fine_tune_steps              # a long clip: the step budget
    assert fine_tune_steps(50, sc) == int(np.ceil(sc.max_epochs * 40 / (sc.batch * sc.seq)))  # a short one: epochs
    assert fine_tune_steps(50, cfgio.override(sc, max_epochs=0.0)) == sc.fine_tune_steps


def test_fine_tune_prior_keeps_the_better_of_pretrained_and_fine_tuned():
    """Targets that no audio explains (noise): the report's choice matches its two tail errors."""
    from emogs import config as cfgio
    from emogs.model.speech_motion import SPEECH_COEFFS
    from emogs.train.config import SpeechConfig
    from emogs.train.speech import fine_tune_prior

    rng = np.random.default_rng(0)
    n = 120
    rows = rng.normal(size=(2 * n, 512)).astype(np.float32)
    names = [f"x{i}" for i in range(5)] + list(SPEECH_COEFFS)
    expr = rng.uniform(0, 0.3, size=(n, len(names))).astype(np.float32)
    cfg = cfgio.override(SpeechConfig(), fine_tune_steps=6, eval_every=2, batch=4)
    before = torch_state()
    module, mean, scale, rep = fine_tune_prior(rows, expr, names, np.arange(100), cfg)
    assert torch_state() == before  # the global RNG is untouched
    assert rep["frames"] == 100 and rep["frames_tail"] == 20 and rep["steps"] == 6
    assert (rep["choice"] == "fine_tuned") == (rep["tail_mse_fine_tuned"] < rep["tail_mse_pretrained"])
    np.testing.assert_allclose(mean, expr[:100, 5:].mean(0), atol=1e-6)
    assert scale.shape == mean.shape
    # the spread correction: gains within bounds, applied to the returned module's output gain only
    from emogs.model.speech_motion import load_speech_motion
    from emogs.train.speech import SPREAD_GAIN

    sp = rep["spread"]
    assert SPREAD_GAIN[0] <= sp["gain_min"] <= sp["gain_max"] <= SPREAD_GAIN[1]
    g = (module.gain / load_speech_motion().gain).numpy()
    assert g.min() == pytest.approx(sp["gain_min"], rel=1e-4) and g.max() == pytest.approx(sp["gain_max"], rel=1e-4)
    off = fine_tune_prior(rows, expr, names, np.arange(100), cfgio.override(cfg, match_spread=False))
    assert off[3]["spread"] is None
    if off[3]["choice"] == "pretrained":
        np.testing.assert_allclose(off[0].gain.numpy(), load_speech_motion().gain.numpy())


def torch_state():
    import torch

    return torch.random.get_rng_state().numpy().tobytes()


def test_speech_config_is_validated():
    from emogs.train.config import build_config

    with pytest.raises(ValueError, match="speech.tail"):
        build_config("cpu", 2, None, {"speech.tail": 0.9})
    with pytest.raises(ValueError, match="unknown config key"):
        build_config("cpu", 2, None, {"speech.steps": 3})


def test_add_to_a_run_trained_before_the_stage(speech_run, may_dataset, tmp_path):
    import shutil

    from emogs.errors import InputError
    from emogs.train.speech import add_to_run

    old = tmp_path / "old"
    shutil.copytree(speech_run, old)
    (old / "speech_motion.safetensors").unlink()
    rep = add_to_run(old, may_dataset, {"fine_tune_steps": 4, "eval_every": 2, "batch": 4}, log=lambda _: None)
    assert rep["steps"] == 4 and (old / "speech_motion.safetensors").is_file()
    with pytest.raises(InputError, match="already has"):
        add_to_run(old, may_dataset, log=lambda _: None)
    with pytest.raises(InputError, match="speech.tail"):
        add_to_run(old, may_dataset, {"tail": 0.9}, force=True, log=lambda _: None)
    (old / "run.json").write_text((old / "run.json").read_text().replace('"complete"', '"training"'))
    with pytest.raises(InputError, match="not a finished run"):
        add_to_run(old, may_dataset, force=True, log=lambda _: None)


def test_silence_and_a_machine_without_whisper_fall_back_to_no_prior(speech_run, may_dataset, monkeypatch, capsys):
    """Silence needs no Whisper (the mouth rests at the mean); where the prior's features cannot be computed
    (no faster-whisper, e.g. the GPU image without a feature cache) the Avatar warns once and renders with the
    speech AUs instead of failing."""
    import emogs.audio as audio
    from emogs.avatar import Avatar

    av = Avatar.load(speech_run, device="cpu", size=64)
    assert av.speech_expression(np.zeros(16000, np.float32), 25) is None
    wav = _speech(may_dataset)
    assert av.speech_expression(wav, len(wav) // 640) is not None

    def no_whisper(w, kind):
        if kind == "whisper":
            raise ImportError("No module named 'faster_whisper'")
        return real(w, kind)

    real = audio.feature_rows
    monkeypatch.setattr(audio, "feature_rows", no_whisper)
    assert av.speech_expression(wav, len(wav) // 640) is None
    assert av.speech_expression(wav, len(wav) // 640) is None
    assert capsys.readouterr().err.count("speech-motion prior needs whisper") == 1
