"""Render the control-proof conditions (scripts/control_proof.py CONDITIONS) of several runs on the GPU machine,
for measuring here (the GPU image has no MediaPipe / dlib / PyAV):

    python3 scripts/gpu_control_renders.py RUN [RUN ...] --audio SPEECH_16k.wav --out DIR [--size 512]

Writes DIR/<run name>/<condition>.mp4 (OpenCV, no audio track; frames only) and DIR/<run name>/timing.json.
Then, here: `python scripts/control_proof.py RUN --audio SPEECH --videos DIR/<run name> --size 512 -o OUT` reuses
the videos and measures them. Same render settings as control_proof.py: blinks off, AUs clamped to the
training range (the default of `emogs render`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    ap = argparse.ArgumentParser()
    if len(sys.argv) == 3 and sys.argv[1] == "--features":  # here: precompute Whisper rows for the GPU side
        import numpy as np

        from emogs.avatar import audio_feature_rows
        from emogs.io.media import read_wav

        wav_path = Path(sys.argv[2])
        rows, _ = audio_feature_rows(read_wav(wav_path), "whisper")
        np.save(wav_path.with_suffix(".whisper.npy"), rows)
        print(f"wrote {wav_path.with_suffix('.whisper.npy')} {rows.shape}")
        return 0
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--audio", type=Path, required=True, help="16 kHz mono 16-bit WAV")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--conditions", default=None, help="comma list (default: all of control_proof.CONDITIONS)")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()

    try:
        import av  # noqa: F401
    except ImportError:
        from emogs.train.gpu import install_cv2_decoders

        install_cv2_decoders()  # OpenCV video writer, WAV reader
    from control_proof import CONDITIONS

    from emogs.avatar import Avatar
    from emogs.io.media import read_wav

    wav = read_wav(a.audio)
    pre = a.audio.with_suffix(".whisper.npy")
    if pre.is_file():  # precomputed Whisper rows for this audio (see the docstring)
        import numpy as np

        import emogs.avatar as avmod

        real, rows = avmod.audio_feature_rows, np.load(pre)
        avmod.audio_feature_rows = lambda w, kind: (rows, 2) if kind == "whisper" else real(w, kind)
    names = a.conditions.split(",") if a.conditions else [n for n, _ in CONDITIONS]
    controls = dict(CONDITIONS)
    for run in a.runs:
        out = a.out / run.name
        out.mkdir(parents=True, exist_ok=True)
        avatar = Avatar.load(run, device=a.device, size=a.size)
        timing = {}
        for n in names:
            c = controls[n]
            t0 = time.time()
            res = avatar.render(wav, out / f"{n}.mp4", au=c.get("au"), emotion=c.get("emotion"), blinks=False,
                                quiet=True)
            dt = time.time() - t0
            timing[n] = dict(name=n, frames=res.frames, seconds=dt, fps=res.frames / dt, device=a.device,
                             inference=avatar.renderer.mode)
            print(f"[control] {run.name} {n}: {res.frames} frames in {dt:.2f} s", flush=True)
        (out / "timing.json").write_text(json.dumps(timing, indent=1))
        (out / "test_audio.wav").unlink(missing_ok=True)  # written by the OpenCV writer shim
    return 0


if __name__ == "__main__":
    sys.exit(main())
