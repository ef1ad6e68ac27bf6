"""The speech stage of a mesh run (emogs.train.speech, default SpeechConfig) on the held-out identities of the
shipped prior: per clip, fine-tune on the clip's training split, then measure the pretrained prior and the
stage's output on the clip's test split (neither has seen it): jawOpen r, jawOpen spread ratio, MSE over the
speech coefficients. Targets are the ICT fits of scripts/speech_motion_data.py.

    python scripts/speech_stage_heldout.py --data /work/prep --fits /work/scratch-speech/fits_v1 \\
        --out docs/speech_motion/stage_heldout.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> None:
    import torch

    from emogs.io.atomic import write_json
    from emogs.model.speech_motion import SPEECH_COEFFS, coeff_index, load_speech_motion, predict_rows, weights_path
    from emogs.train.config import SpeechConfig
    from emogs.train.speech import fine_tune_prior

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/prep", help="prepared datasets (manifest splits, audio_whisper.npy)")
    ap.add_argument("--fits", default="/work/scratch-speech/fits_v1", help="ICT fits per clip (<clip>.npz)")
    ap.add_argument("--out", default="docs/speech_motion/stage_heldout.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prior", default=None, help="a prior's .safetensors (default: the shipped one)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    wpath = Path(a.prior) if a.prior else weights_path("whisper")
    info = json.loads(wpath.with_suffix(".json").read_text())
    prior = load_speech_motion(path=a.prior) if a.prior else load_speech_motion()
    j = SPEECH_COEFFS.index("jawOpen")
    out = {}
    for clip in info["held_out_clips"]:
        m = json.loads((Path(a.data) / clip / "manifest.json").read_text())
        (t0, t1), (c, d) = m["splits"]["train"], m["splits"]["test"]
        rows = np.load(Path(a.data) / clip / "audio_whisper.npy").astype(np.float32)
        z = np.load(Path(a.fits) / f"{clip}.npz")
        names = [str(n) for n in z["expression_names"]]
        s = time.time()
        stage, mean, scale, rep = fine_tune_prior(rows, z["expression"], names, np.arange(t0, t1), SpeechConfig(),
                                                 prior=prior)
        sec = time.time() - s
        y = z["expression"][:, coeff_index(names)]
        res = {}
        for name, net in (("pretrained", prior), ("stage", stage)):
            p, t = predict_rows(net, rows, d, mean, scale)[c:d], y[c:d]
            res[name] = dict(jaw_r=float(np.corrcoef(p[:, j], t[:, j])[0, 1]),
                             jaw_sd_ratio=float(p[:, j].std() / t[:, j].std()), mse=float(((p - t) ** 2).mean()))
        out[clip] = dict(train_frames=t1 - t0, test_frames=d - c, seconds=round(sec, 1), stage=rep, test=res)
        print(clip, t1 - t0, d - c, f"{sec:.1f}s", rep["choice"], json.dumps(res), flush=True)
    summary = {}
    for k in ("pretrained", "stage"):
        sd = np.array([v["test"][k]["jaw_sd_ratio"] for v in out.values()])
        summary[k] = dict(jaw_r_clip_mean=float(np.mean([v["test"][k]["jaw_r"] for v in out.values()])),
                          jaw_sd_ratio_median=float(np.median(sd)), jaw_sd_ratio_abs_err_mean=float(np.abs(sd - 1).mean()),
                          jaw_sd_within_25pct=int((np.abs(sd - 1) <= 0.25).sum()), clips=len(sd),
                          mse_clip_mean=float(np.mean([v["test"][k]["mse"] for v in out.values()])))
    print(json.dumps(summary, indent=1))
    write_json(a.out, dict(prior=str(wpath), command="python scripts/speech_stage_heldout.py " + " ".join(sys.argv[1:]),
                           summary=summary, clips=out))


if __name__ == "__main__":
    main()
