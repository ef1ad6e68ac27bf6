"""Video and audio through PyAV (FFmpeg libraries bundled in the `av` wheel): probe, decode, encode.

Frames are numpy uint8 RGB arrays (H, W, 3). Audio is float32 mono in [-1, 1] at a requested rate.
Writers go through a temporary file and rename, so a crash never leaves a playable half-file.

Display rotation (the display matrix phones write instead of rotating the pixels) is honoured: `probe`
reports the displayed width and height and `read_frames` yields upright frames, as a video player and
the `ffmpeg` command show them.

Backends: PyAV normally. Where PyAV is not installed (the GPU machine's image), or with
`EMOGS_MEDIA_BACKEND=opencv`, video goes through OpenCV's bundled FFmpeg instead: decoding at the file's own
frame rate (no resampling), writing MPEG-4 part 2 without an audio track (the audio is written beside the
video as `<name>.wav`; `python -m emogs.io.media mux VIDEO` muxes it where PyAV exists), and audio only from
16-bit mono WAV files. `backend()` says which one is in use.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from emogs.errors import InputError
from emogs.io.atomic import atomic_path


def backend() -> str:
    """"pyav" or "opencv" (see the module docstring)."""
    import importlib.util
    import os

    want = os.environ.get("EMOGS_MEDIA_BACKEND", "auto")
    if want not in ("auto", "pyav", "opencv"):
        raise InputError(f"EMOGS_MEDIA_BACKEND={want!r}: choose auto, pyav or opencv")
    if want == "auto":
        return "pyav" if importlib.util.find_spec("av") is not None else "opencv"
    return want


def _check_input(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a media file")
    if not path.is_file():
        raise InputError(f"{path}: no such file")


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: float
    duration: float  # seconds
    num_frames: int  # estimated when the container does not say
    has_audio: bool
    audio_rate: int | None
    audio_channels: int | None
    codec: str
    rotation: int = 0  # display rotation, degrees counter-clockwise (0, 90, 180, -90); width/height are displayed


def _open(path: str | Path):
    import av

    path = Path(path)
    _check_input(path)
    try:
        return av.open(str(path))
    except Exception as e:  # av.error.InvalidDataError and friends
        raise InputError(f"{path}: not a readable media file ({type(e).__name__})") from None


def probe(path: str | Path) -> VideoInfo:
    """Read stream facts; raise InputError if there is no video stream."""
    if backend() == "opencv":
        return _cv2_probe(Path(path))
    with _open(path) as c:
        if not c.streams.video:
            raise InputError(f"{path}: has no video stream")
        v = c.streams.video[0]
        fps = float(v.average_rate or v.guessed_rate or 25)
        if v.duration is not None and v.time_base is not None:
            dur = float(v.duration * v.time_base)
        elif c.duration is not None:
            dur = c.duration / 1_000_000
        else:
            dur = 0.0
        n = v.frames or int(round(dur * fps))
        a = c.streams.audio[0] if c.streams.audio else None
        rot = _first_frame_rotation(c, v)
        w, h = v.codec_context.width, v.codec_context.height
        if rot in (90, -90):
            w, h = h, w
        return VideoInfo(str(path), w, h, fps, dur, n, a is not None,
                         a.codec_context.sample_rate if a else None, a.codec_context.channels if a else None,
                         v.codec_context.name, rot)


def _rotation_of(frame) -> int:
    """The frame's display rotation snapped to a multiple of 90 degrees (counter-clockwise)."""
    try:
        r = float(getattr(frame, "rotation", 0) or 0)
    except Exception:  # noqa: BLE001 - a malformed display matrix: show the frame as stored
        return 0
    k = int(round(r / 90.0)) % 4
    return {0: 0, 1: 90, 2: 180, 3: -90}[k]


def _first_frame_rotation(container, stream) -> int:
    """Display rotation of a stream, read from its first decoded frame (0 when none decodes)."""
    try:
        for frame in container.decode(stream):
            return _rotation_of(frame)
    except Exception:  # noqa: BLE001 - decoding errors are reported by read_frames
        return 0
    return 0


def _upright(img: np.ndarray, rotation: int) -> np.ndarray:
    """A stored frame (H, W, ...) turned as the display matrix says."""
    return img if rotation == 0 else np.ascontiguousarray(np.rot90(img, rotation // 90))


class UprightFrame:
    """A decoded `av.VideoFrame` whose `to_ndarray` returns the displayed (rotated) picture; `width` and
    `height` are the displayed size (what `read_frames(raw=True)` yields for rotated videos)."""

    def __init__(self, frame, rotation: int) -> None:
        self.frame, self.rotation = frame, rotation
        self.pts, self.time_base = frame.pts, frame.time_base
        swap = rotation in (90, -90)
        self.width, self.height = (frame.height, frame.width) if swap else (frame.width, frame.height)

    def to_ndarray(self, format: str = "rgb24", width: int | None = None, height: int | None = None,
                   **kw) -> np.ndarray:
        if self.rotation in (90, -90):
            width, height = height, width
        size = {"width": width, "height": height} if width or height else {}
        return _upright(self.frame.to_ndarray(format=format, **size, **kw), self.rotation)


def read_frames(path: str | Path, fps: float | None = None, size: tuple[int, int] | None = None,
                max_seconds: float | None = None, raw: bool = False) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames (H, W, 3), optionally resampled to `fps` and resized to `size` = (width, height).

    Resampling picks, for output time k/fps, the source frame shown at that time (the frame with the
    largest timestamp <= k/fps), like FFmpeg's fps filter: frames are duplicated or dropped, never blended.
    `raw=True` yields the decoded `av.VideoFrame`s instead (same selection, `size` ignored), so a caller
    that needs only some frames skips the RGB conversion of the others.
    """
    if backend() == "opencv":
        if raw:
            raise InputError("raw frames need PyAV (pip install av)")
        yield from _cv2_frames(Path(path), fps, size, max_seconds)
        return
    with _open(path) as c:
        if not c.streams.video:
            raise InputError(f"{path}: has no video stream")
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        src_step = float(1 / (stream.average_rate or stream.guessed_rate or 25))
        w, h = size if size else (None, None)
        limit = math.inf if max_seconds is None else max_seconds

        rot: int | None = None  # display rotation, from the first frame

        def conv(frame):
            up = frame if rot == 0 else UprightFrame(frame, rot)
            return up if raw else up.to_ndarray(format="rgb24", width=w, height=h)

        k = 0  # next output frame index
        prev = None  # (time, frame) of the last decoded source frame
        t0 = None
        try:
            for frame in c.decode(stream):
                if rot is None:
                    rot = _rotation_of(frame)
                t = float(frame.pts * frame.time_base) if frame.pts is not None else (prev[0] + src_step if prev else 0.0)
                if t0 is None:
                    t0 = t
                t -= t0  # streams may start at a non-zero timestamp
                if t >= limit:
                    break
                if fps is None:
                    yield conv(frame)
                    continue
                if prev is not None:
                    while k / fps < t - 1e-6 and k / fps < limit:
                        yield conv(prev[1])
                        k += 1
                prev = (t, frame)
            if fps is not None and prev is not None:
                end = min(prev[0] + src_step, limit)
                while k / fps < end - 1e-6:
                    yield conv(prev[1])
                    k += 1
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"{path}: decoding failed ({type(e).__name__}: {e})") from None


def load_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None,
               warn: Callable[[str], None] | None = None) -> np.ndarray:
    """Decode the first audio stream of any media file to float32 mono at `sample_rate`. With
    `max_seconds`, decoding stops once that much audio is out (a long file is never decoded whole). `warn`
    gets one line when much less audio decodes than the file declares (a truncated file)."""
    if backend() == "opencv":
        _check_input(Path(path))
        with open(path, "rb") as f:  # by content, not by name (an upload is saved under a server-chosen name)
            head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise InputError(f"{path}: without PyAV only 16-bit mono WAV audio can be read (pip install av)")
        wav = read_wav(path)
        if sample_rate != 16000:
            raise InputError("without PyAV audio is read at 16 kHz only")
        return wav if max_seconds is None else wav[: int(round(max_seconds * sample_rate))]
    import av

    limit = None if max_seconds is None else int(round(max_seconds * sample_rate))
    with _open(path) as c:
        if not c.streams.audio:
            raise InputError(f"{path}: has no audio track")
        declared = _declared_seconds(c, c.streams.audio[0])
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        n = 0
        try:
            for frame in c.decode(c.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    n += len(chunks[-1])
                if limit is not None and n >= limit:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
        except Exception as e:
            raise InputError(f"{path}: audio decoding failed ({type(e).__name__})") from None
    wav = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    got = len(wav) / sample_rate
    want = declared if max_seconds is None or declared is None else min(declared, max_seconds)
    if warn is not None and want is not None and want - got > max(0.1, 0.05 * want):
        warn(f"{path}: the file declares {want:.2f} s of audio but only {got:.2f} s could be decoded "
             f"(a truncated or damaged file?); using the {got:.2f} s there are")
    if limit is not None:
        wav = wav[:limit]
    return wav


def stream_starts(path: str | Path) -> tuple[float, float]:
    """Start times (s) of the first video and the first audio stream (0 where a stream is missing or its
    start is unknown, and always 0 without PyAV)."""
    if backend() == "opencv":
        return 0.0, 0.0
    with _open(path) as c:
        def start(s) -> float:
            return float(s.start_time * s.time_base) if s is not None and s.start_time is not None else 0.0
        return start(c.streams.video[0] if c.streams.video else None), \
            start(c.streams.audio[0] if c.streams.audio else None)


def load_video_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None,
                     warn: Callable[[str], None] | None = None) -> np.ndarray:
    """The audio of a video with sample 0 at the first video frame (`read_frames` starts there). Containers
    may start the streams at different times (a video stream that starts 80 ms after its audio is common):
    audio before the first frame is dropped, a late audio start is padded with silence. `max_seconds`
    counts from the first frame. Files without a video stream read as `load_audio`."""
    v0, a0 = stream_starts(path)
    k = int(round((v0 - a0) * sample_rate))  # > 0: audio starts k samples before the first frame
    more = None if max_seconds is None else max_seconds + max(0, k) / sample_rate
    wav = load_audio(path, sample_rate, more, warn)
    if k > 0:
        wav = wav[k:]
    elif k < 0:
        wav = np.concatenate([np.zeros(-k, np.float32), wav])
    if max_seconds is not None:
        wav = wav[: int(round(max_seconds * sample_rate))]
    return wav


def _wav_header_seconds(path: str | Path) -> float | None:
    """Duration a RIFF/WAVE header declares (data chunk size / byte rate); None for other files and for
    streamed WAVs whose header leaves the size open (0 or 0xFFFFFFFF). FFmpeg caps the size at the file's
    end, so a truncated WAV would otherwise look whole."""
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            byte_rate = None
            for _ in range(64):  # chunks before "data" (fmt, LIST, fact, ...)
                ch = f.read(8)
                if len(ch) < 8:
                    return None
                cid, size = ch[:4], struct.unpack("<I", ch[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    if len(fmt) >= 12:
                        byte_rate = struct.unpack("<I", fmt[8:12])[0]
                    continue
                if cid == b"data":
                    if not byte_rate or size in (0, 0xFFFFFFFF):
                        return None
                    return size / byte_rate
                f.seek(size + (size & 1), 1)
    except OSError:
        return None
    return None


def _declared_seconds(container, stream) -> float | None:
    """The duration the file's headers give for an audio stream (None when they give none)."""
    wav = _wav_header_seconds(container.name)
    if wav is not None:
        return wav
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    return None


def write_wav(path: str | Path, wav: np.ndarray, sample_rate: int = 16000) -> None:
    """Write mono float audio as 16-bit PCM WAV (atomically)."""
    import wave

    pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2")
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm.tobytes())


def read_wav(path: str | Path) -> np.ndarray:
    """16-bit mono WAV (as `write_wav` writes: the dataset's audio.wav) -> float32 (L,), without PyAV
    (the GPU image has none). The exact inverse of `write_wav`'s scaling."""
    import wave

    try:
        with wave.open(str(path), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise InputError(f"{path}: expected 16-bit mono WAV")
            return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32767.0
    except (wave.Error, EOFError) as e:
        raise InputError(f"{path}: not a readable WAV file ({e})") from None


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 25,
                audio: np.ndarray | None = None, sample_rate: int = 16000, crf: int = 18,
                pix_fmt: str = "yuv420p", codec: str = "libx264", preset: str = "medium") -> int:
    """Encode RGB uint8 frames to MP4 (H.264, browser-playable with yuv420p), muxing mono float `audio`
    as AAC when given. `crf` and `preset` are libx264's. Returns the number of frames written. Atomic:
    temp file then rename."""
    if backend() == "opencv":
        return _cv2_write(Path(path), frames, fps, audio, sample_rate)
    import av

    path = Path(path)
    n = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4" if path.suffix.lower() in (".mp4", ".m4v", ".mov") else None) as c:
            vs = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            vs.pix_fmt = pix_fmt
            if codec == "libx264":
                vs.options = {"crf": str(crf), "preset": preset}
            a_s = None
            if audio is not None:
                a_s = c.add_stream("aac", rate=sample_rate)
                a_s.layout = "mono"
            for img in frames:
                if n == 0:
                    vs.height, vs.width = img.shape[:2]
                    if pix_fmt == "yuv420p" and (vs.width % 2 or vs.height % 2):
                        raise ValueError("yuv420p needs even frame sizes")
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[..., :3]), format="rgb24")
                for pkt in vs.encode(vf):
                    c.mux(pkt)
                n += 1
            if n == 0:
                raise ValueError("no frames to write")
            for pkt in vs.encode():
                c.mux(pkt)
            if a_s is not None and audio is not None and len(audio):
                a = np.clip(np.asarray(audio, np.float32), -1, 1)
                step = 1024
                for i in range(0, len(a), step):
                    chunk = a[i:i + step]
                    af = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
                    af.sample_rate = sample_rate
                    af.pts = i
                    for pkt in a_s.encode(af):
                        c.mux(pkt)
                for pkt in a_s.encode():
                    c.mux(pkt)
    return n


def frames_for_audio(num_samples: int, sample_rate: int = 16000, fps: float = 25) -> int:
    """Number of video frames covering an audio clip exactly (rounded up)."""
    return int(math.ceil(num_samples * fps / sample_rate - 1e-9))


# -- the OpenCV backend (no PyAV) ------------------------------------------------------------------------
def _cv2_capture(path: Path):
    import cv2

    _check_input(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{path}: not a readable video (OpenCV)")
    return cap


def _cv2_probe(path: Path) -> VideoInfo:
    import cv2

    cap = _cv2_capture(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 25.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    side = path.with_suffix(".wav")
    return VideoInfo(str(path), w, h, fps, n / fps if fps else 0.0, n, side.is_file(), 16000 if side.is_file() else None,
                     1 if side.is_file() else None, "unknown (OpenCV)")


def _cv2_frames(path: Path, fps: float | None, size: tuple[int, int] | None, max_seconds: float | None):
    import cv2

    cap = _cv2_capture(path)
    src = float(cap.get(cv2.CAP_PROP_FPS) or 25.0)
    if fps is not None and abs(src - fps) > 1e-3:
        cap.release()
        raise InputError(f"{path}: {src:g} fps; resampling to {fps:g} fps needs PyAV (pip install av)")
    limit = math.inf if max_seconds is None else max_seconds * src
    i = 0
    try:
        while i < limit:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = bgr[..., ::-1] if bgr.ndim == 3 else np.repeat(bgr[..., None], 3, -1)
            if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
                rgb = cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_AREA)
            yield np.ascontiguousarray(rgb)
            i += 1
    finally:
        cap.release()


def _cv2_write(path: Path, frames: Iterable[np.ndarray], fps: float, audio: np.ndarray | None,
               sample_rate: int) -> int:
    import sys

    import cv2

    n, vw = 0, None
    with atomic_path(path) as tmp:
        for img in frames:
            if vw is None:
                vw = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (img.shape[1], img.shape[0]))
            vw.write(np.ascontiguousarray(img[..., 2::-1]))
            n += 1
        if vw is not None:
            vw.release()
        if n == 0:
            raise ValueError("no frames to write")
    if audio is not None:
        write_wav(path.with_suffix(".wav"), audio, sample_rate)
        print(f"note: no PyAV here: {path} has no audio track; the audio is in {path.with_suffix('.wav')} "
              f"(mux it with `python -m emogs.io.media mux {path}` where PyAV is installed)", file=sys.stderr)
    return n


def mux(video: str | Path) -> Path:
    """Re-encode VIDEO (written by the OpenCV backend) with VIDEO.wav muxed in as its audio track."""
    video = Path(video)
    frames = list(read_frames(video))
    write_video(video, iter(frames), fps=probe(video).fps, audio=load_audio(video.with_suffix(".wav")))
    return video


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "mux":
        sys.exit("usage: python -m emogs.io.media mux VIDEO.mp4")
    print(mux(sys.argv[2]))
