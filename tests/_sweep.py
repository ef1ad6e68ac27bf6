"""Helpers of the bad-input sweep tests (tests/test_sweep_*.py): the `emogs` command in a subprocess,
small media files made on the spot, and a read-only folder that holds even for root."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.update(extra)
    return e


def cli(*args: str, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """`python -m emogs.cli ARGS` in a subprocess (exit code and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "emogs.cli", *map(str, args)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=timeout, **popen)


def one_error_line(stderr: str, needle: str | None = None, command: str | None = None) -> str:
    """The last stderr line must be the command's one-line error (containing `needle`); returns it."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines, "stderr is empty"
    last = lines[-1]
    assert last.startswith(f"emogs {command or ''}".rstrip()) and ": error: " in last, lines
    if needle is not None:
        assert needle in last, lines
    return last


def noise_clip(path: Path, seconds: float = 3.0, size: int = 128, audio: bool = True) -> Path:
    """Random frames (no face) with a 220 Hz tone: a valid video that holds nobody."""
    from emogs.io.media import write_video

    rng = np.random.default_rng(0)
    n = int(seconds * 25)
    frames = (rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n))
    t = np.arange(int(seconds * 16000)) / 16000
    write_video(path, frames, 25, audio=(0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32) if audio else None)
    return path


def read_only_runner(folder: Path):
    """A function `run(script) -> dict` that runs Python `script` (which must print one JSON line) while
    `folder` is read-only: chmod for an ordinary user; for root (whom permissions do not stop) a
    read-only bind mount in a private mount namespace (`unshare`). Skips when neither is possible."""
    def run_py(cmd: list[str]) -> dict:
        r = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    if os.geteuid() != 0:
        def run(script: str) -> dict:
            mode = folder.stat().st_mode
            folder.chmod(0o555)
            try:
                return run_py([sys.executable, "-c", textwrap.dedent(script)])
            finally:
                folder.chmod(mode)
        return run
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root without `unshare`: cannot make a folder read-only for this test")

    def run(script: str) -> dict:
        sh = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
        return run_py([unshare, "-rm", "sh", "-c", sh, "sh", str(folder), sys.executable, "-c",
                       textwrap.dedent(script)])
    return run


def write_clip(path: Path, frames: list[np.ndarray], pts_ms, audio: np.ndarray | None = None,
               rotation: int = 0, sample_rate: int = 16000) -> Path:
    """H.264 MP4 with frames at the given timestamps (ms: variable frame rate is allowed), optional mono
    AAC audio and a display rotation (the display matrix a phone writes; degrees counter-clockwise)."""
    from fractions import Fraction

    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.time_base = vs.time_base = Fraction(1, 1000)
        if rotation:
            vs.set_display_rotation(rotation)
        a_s = None
        if audio is not None:
            a_s = c.add_stream("aac", rate=sample_rate)
            a_s.layout = "mono"
        for img, t in zip(frames, pts_ms):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts, f.time_base = int(t), Fraction(1, 1000)
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a_s is not None:
            for i in range(0, len(audio), 1024):
                af = av.AudioFrame.from_ndarray(audio[i:i + 1024].reshape(1, -1).astype(np.float32), format="flt",
                                                layout="mono")
                af.sample_rate, af.pts = sample_rate, i
                for p in a_s.encode(af):
                    c.mux(p)
            for p in a_s.encode():
                c.mux(p)
    return path
