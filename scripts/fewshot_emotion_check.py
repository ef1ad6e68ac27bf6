"""Mechanism check of the EmoTaG emotion guidance on adapted runs (docs/fewshot.md): what an emotion request
does to the head through the motion network's residual branch.

    PYTHONPATH=. python scripts/fewshot_emotion_check.py RUN [RUN ...] --audio SPEECH.wav [-o out.json]

Per run and preset (happy, sad, surprised, angry at intensity 1, against no request), with blinks and speech
AUs off (so the only difference is the request):
  res_abs        mean |residual-branch change| over frames and the 53 ICT coefficients (EmoTagHead.residual_motion)
  res_upper_abs  the same over the upper-face ICT shapes (brow*, eye*, cheekSquint*)
  px_branch      mean |pixel change| (0-255) in the upper half of the frame, --upper-drive branch
  px_table       the same with --upper-drive table (the AU table alone: the mesh head's path)
  px_both        the same with --upper-drive both (the default)
  latent         (heads with the emotion latent) |mu(preset) - mu(neutral)| and KL(q || N(0, I)) per preset
and the FER2013 conditioning's training statistics of the run (the person's mean e = 1 - p(neutral)).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

PRESETS = ("happy", "sad", "surprised", "angry")
UPPER_PREFIXES = ("brow", "eye", "cheekSquint")


def check(run: Path, wav: np.ndarray) -> dict:
    from emogs.audio import feature_rows
    from emogs.avatar import Avatar
    from emogs.control.parse import EmotionSpec
    from emogs.io.media import frames_for_audio

    out: dict = {"run": str(run)}
    av = Avatar.load(run, device="cpu", upper_drive="branch")
    names = list(av.info["expression_names"])
    up = [i for i, n in enumerate(names) if n.startswith(UPPER_PREFIXES)]
    out["has_emotion_latent"] = bool(getattr(av.model, "has_emotion", False))
    if out["has_emotion_latent"]:
        out["fer_mean_e"] = float(av.model.fer_mean[-1])
    if out["has_emotion_latent"]:  # the latent's mean per preset: how far from the neutral request, its KL
        import torch

        from emogs.face.fer import preset_condition

        with torch.no_grad():
            c = torch.tensor(np.stack([preset_condition(p, 1.0)[0] for p in ("neutral", *PRESETS)]))
            mu, lv = av.model.grmn.emotion_posterior(c)
            kl = av.model.grmn.kl(mu, lv)
        out["latent"] = {p: dict(mu_dist_from_neutral=float((mu[k] - mu[0]).norm()), kl=float(kl[k]))
                         for k, p in enumerate(("neutral", *PRESETS))}
    F = frames_for_audio(len(wav))
    rows, rpf = feature_rows(wav, av.model.cfg.audio_feature)
    frames = {}
    for mode in ("branch", "table", "both"):
        av.upper_drive = mode
        frames[mode, None] = av.render(wav, quiet=True, blinks=False, speech_aus=False).astype(np.float32)
    for p in PRESETS:
        plan = av.plan(F, emotion=f"{p}:1", blinks=False)
        au = av.clamp_to_training(plan.au)
        av.upper_drive = "branch"
        r = av.residual_expression(rows, rpf, au, EmotionSpec(p, 1.0))
        rec = dict(res_abs=float(np.abs(r).mean()), res_upper_abs=float(np.abs(r[:, up]).mean()))
        for mode in ("branch", "table", "both"):
            av.upper_drive = mode
            f = av.render(wav, quiet=True, emotion=f"{p}:1", blinks=False, speech_aus=False).astype(np.float32)
            top = slice(0, f.shape[1] // 2)
            rec[f"px_{mode}"] = float(np.abs(f - frames[mode, None])[:, top].mean())
        out[p] = rec
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--audio", type=Path, required=True)
    ap.add_argument("-o", "--output", type=Path, default=None)
    a = ap.parse_args()
    from emogs.io.media import load_audio

    wav = load_audio(a.audio, 16000)
    res = [check(r, wav) for r in a.runs]
    print(json.dumps(res, indent=1))
    if a.output:
        a.output.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
