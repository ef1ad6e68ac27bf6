"""The studio's web server (aiohttp): the page, one WebSocket for controls and frames, uploads, exports.

Sync: the browser plays the speech itself (an <audio> element fed with the 16 kHz WAV this server decoded
the upload to, so both sides hold the same samples) and asks, over the WebSocket, for the frame of its
playback clock plus the measured request-to-display time; the server renders that one frame (the newest
controls, the take recorded up to the reported audio time) and sends it back as a JPEG. One request is in
flight at a time, so a slow renderer lowers the frame rate, never the sync.

Safety: every WebSocket message is size-limited JSON with checked fields (`Controls.from_message` and the
checks below); uploads need the active session's token, stream into a private temporary folder (mode 0700)
under a server-chosen name, stop at the size limit and are decoded by PyAV with a length limit; nothing
the browser sends is used as a path. One page holds the studio at a time: another tab is told so and may
take it over, and a closed or misbehaving tab never takes the server down.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import secrets
import shutil
import signal
import struct
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emogs.errors import InputError
from emogs.studio.controls import Controls
from emogs.studio.stream import FPS, SAMPLE_RATE, LiveStream, Speech, analyse_speech

STATIC = Path(__file__).parent / "static"
PAGES = {"": ("index.html", "text/html"), "studio.js": ("studio.js", "text/javascript"),
         "studio.css": ("studio.css", "text/css")}
MAX_WS_MESSAGE = 64 * 1024
KEEP_EXPORTS = 3  # MP4 exports kept for download at once
DRAIN_LIMIT = 256 * 2 ** 20  # bytes of a too-large upload read and dropped before answering
CPU_MAX_SIZE = 256  # default render size on a CPU
IDLE_SECONDS = 20.0  # the silent clip the head idles on before any speech is loaded
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_EXPORT_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


@dataclass
class StudioConfig:
    host: str = "127.0.0.1"
    port: int = 7860  # 0: any free port (printed)
    device: str = "auto"
    size: int | None = None  # render size; default: the run's resolution on CUDA, at most 256 px on a CPU
    max_upload_mb: float = 50.0
    max_audio_seconds: float = 600.0
    jpeg_quality: int = 85
    measure_interval_s: float = 0.25  # at most one MediaPipe measurement per this many seconds


def display_name(raw: str) -> str:
    """A file name from the browser, only ever shown: printable, no folders, at most 80 characters."""
    name = urllib.parse.unquote(raw or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:80].strip()
    return name or "upload"


def _number(m: dict, key: str, lo: float, hi: float) -> float:
    v = m.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise InputError(f"{key}: expected a number in {lo:g}-{hi:g}")
    return float(v)


def _int(m: dict, key: str, lo: int = 0, hi: int = 2 ** 31) -> int:
    v = m.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InputError(f"{key}: expected an integer in {lo}-{hi}")
    return v


def _bool(m: dict, key: str) -> bool:
    v = m.get(key)
    if not isinstance(v, bool):
        raise InputError(f"{key}: expected true or false")
    return v


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def wav_bytes(wav: np.ndarray) -> bytes:
    """16 kHz mono float -> 16-bit PCM WAV bytes (the page plays these)."""
    import io
    import wave

    pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2")
    b = io.BytesIO()
    with wave.open(b, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return b.getvalue()


class Studio:
    """The server's state: the Avatar, the live stream of the current speech, the active page."""

    def __init__(self, avatar: Any, cfg: StudioConfig, log: Callable[[str], None] | None = None,
                 run_name: str = "") -> None:
        self.av, self.cfg, self.run_name = avatar, cfg, run_name
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self.tmp = Path(tempfile.mkdtemp(prefix="emogs-studio-"))  # private: mode 0700
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="studio-render")  # every touch of the stream
        self.meter_pool = ThreadPoolExecutor(1, thread_name_prefix="studio-measure")
        self.meter = None
        self.active: Any = None  # the WebSocketResponse of the page that holds the studio
        self.token: str | None = None
        self.client_v = 0  # the page's controls version the stream holds
        self.speech_version = 0
        self.exports: dict[str, Path] = {}
        self.exporting = False
        self.stopping = False  # set on shutdown: a running export stops at its next chunk
        self.measuring = False
        self._measure_busy = False
        self._measure_last = 0.0
        self.frames_sent = 0
        self.stream = LiveStream(avatar, analyse_speech(avatar, np.zeros(int(IDLE_SECONDS * SAMPLE_RATE), np.float32),
                                                        ""))
        self.render_ms = self._benchmark()

    # -- facts for the page ------------------------------------------------------------------------------
    def _benchmark(self, n: int = 5) -> float:
        """Median ms of one live frame (render + JPEG) on this machine, after a warm-up frame."""
        ts = []
        for i in range(n + 1):
            t = time.perf_counter()
            fr, _ = self.stream.render(i)
            encode_jpeg(fr, self.cfg.jpeg_quality)
            ts.append(time.perf_counter() - t)
        return float(np.median(ts[1:]) * 1000)

    def info(self) -> dict:
        from emogs.control.emotions import EMOTIONS, PRESERVED_AUS
        from emogs.control.names import AU_NAMES
        from emogs.face.aus import AU_TABLE

        av = self.av
        lo, hi = av.training_range()
        facs = {s.au: s.name for s in AU_TABLE}
        speech = set() if av.speech is None else {AU_NAMES[int(k)] for k in av.speech.au_index}
        cuda = av.device.type == "cuda"
        fps = min(FPS, 1000.0 / max(self.render_ms, 1e-3))
        note = (f"GPU: {av.size} px" if cuda else
                f"CPU: rendering at {av.size} px (the run's resolution is {av.cfg.resolution} px) and about "
                f"{fps:.0f} frames/s (measured {self.render_ms:.0f} ms a frame at start); on a GPU the same page "
                f"runs at the full size and 25 frames/s")
        return {
            "run": self.run_name, "size": av.size, "resolution": int(av.cfg.resolution), "device": av.device.type,
            "fps": FPS, "render_ms": round(self.render_ms, 1), "expected_fps": round(fps, 1), "note": note,
            "aus": [{"name": n, "facs": facs.get(n, ""), "min": float(lo[i]), "max": float(hi[i]),
                     "default": float(av.default_au[i]), "speech": n in speech} for i, n in enumerate(AU_NAMES)],
            "emotions": [{"name": e.name, "facs": e.facs, "aus": e.aus} for e in EMOTIONS.values()],
            "preserved_aus": list(PRESERVED_AUS),
            "limits": {"upload_mb": self.cfg.max_upload_mb, "audio_seconds": self.cfg.max_audio_seconds},
            "au_window": int(av.model.cfg.au_window), "clamp_margin": 0.1,
        }

    def speech_info(self) -> dict:
        sp = self.stream.speech
        return {"name": sp.name, "duration": sp.duration, "frames": sp.num_frames, "version": self.speech_version,
                "silent": float(np.abs(sp.wav).max(initial=0.0)) < 1e-3}

    def status(self) -> dict:
        return {"speech": self.speech_info(), "played_frames": self.stream.take.played_frames,
                "frames_sent": self.frames_sent, "active": self.active is not None, "exporting": self.exporting,
                "controls": self.stream.arrays.controls.to_message(), "controls_version": self.client_v}

    # -- work in the render thread -----------------------------------------------------------------------
    async def in_worker(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    def _frame(self, t: float, t_audio: float, playing: bool, segment: int) -> tuple[bytes, dict, np.ndarray]:
        s = self.stream
        s.advance(t_audio, playing, segment)
        i = s.frame_at(t)
        t0 = time.perf_counter()
        fr, au = s.render(i)
        t1 = time.perf_counter()
        jpg = encode_jpeg(fr, self.cfg.jpeg_quality)
        hdr = {"frame": i, "t": t, "v": self.client_v, "speech": self.speech_version,
               "render_ms": round((t1 - t0) * 1000, 2), "encode_ms": round((time.perf_counter() - t1) * 1000, 2),
               "au": [round(float(x), 4) for x in au]}
        return jpg, hdr, fr

    def _load_speech(self, path: Path, name: str) -> Speech:
        from emogs.io.media import load_audio

        lim = self.cfg.max_audio_seconds
        try:
            wav = load_audio(path, SAMPLE_RATE, max_seconds=lim + 1.0 / FPS)
        except InputError as e:  # the message names the private temp file: name the upload instead
            raise InputError(str(e).replace(str(path), name)) from None
        if len(wav) > lim * SAMPLE_RATE:
            raise InputError(f"{name}: longer than the limit of {lim:g} s of audio")
        if len(wav) < SAMPLE_RATE // 25:
            raise InputError(f"{name}: shorter than one frame (40 ms) of audio")
        return analyse_speech(self.av, wav, name)

    def _set_speech(self, speech: Speech) -> None:
        self.stream = LiveStream(self.av, speech, self.stream.arrays.controls)
        self.speech_version += 1

    # -- HTTP --------------------------------------------------------------------------------------------
    def app(self):
        from aiohttp import web

        @web.middleware
        async def guard(request, handler):
            why = self.refusal(request)
            return self._error(403, why) if why is not None else await handler(request)

        app = web.Application(client_max_size=MAX_WS_MESSAGE, middlewares=[guard])
        app.router.add_get("/", self.page)
        app.router.add_get("/static/{name}", self.page)
        app.router.add_get("/favicon.ico", self.no_icon)
        app.router.add_get("/api/info", self.http_info)
        app.router.add_get("/api/status", self.http_status)
        app.router.add_get("/api/audio", self.http_audio)
        app.router.add_post("/api/upload", self.http_upload)
        app.router.add_get("/api/timeline.{fmt}", self.http_timeline)
        app.router.add_get("/api/export/{token}", self.http_export)
        app.router.add_get("/ws", self.websocket)
        app.on_shutdown.append(self._on_shutdown)
        return app

    def refusal(self, request) -> str | None:
        """Why a request must be refused: a Host that is not this machine's loopback name while serving on
        loopback (DNS rebinding), or a browser Origin other than the page's own (another site's script
        driving the studio through the user's browser)."""
        if self.cfg.host in LOOPBACK:
            host = urllib.parse.urlsplit("//" + (request.host or "")).hostname or ""
            if host not in ("127.0.0.1", "localhost", "::1"):
                return f"unexpected Host {request.host[:60]!r}: open the studio as http://127.0.0.1:PORT/"
        origin = request.headers.get("Origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc != request.host:
            return "requests from other sites are refused"
        return None

    async def page(self, request):
        from aiohttp import web

        name = request.match_info.get("name", "")
        if name not in PAGES:
            raise web.HTTPNotFound(text="no such page")
        file, ctype = PAGES[name]
        return web.Response(body=(STATIC / file).read_bytes(), content_type=ctype, charset="utf-8",
                            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    async def no_icon(self, request):
        from aiohttp import web

        return web.Response(status=204)

    @staticmethod
    def _error(status: int, message: str):
        from aiohttp import web

        return web.json_response({"error": message}, status=status)

    async def http_info(self, request):
        from aiohttp import web

        return web.json_response(self.info())

    async def http_status(self, request):
        from aiohttp import web

        return web.json_response(self.status())

    async def http_audio(self, request):
        from aiohttp import web

        data = await self.in_worker(lambda: wav_bytes(self.stream.speech.wav))
        return web.Response(body=data, content_type="audio/wav", headers={"Cache-Control": "no-store"})

    async def http_upload(self, request):
        """Body: the file's bytes (any format FFmpeg reads); header X-Studio-Session: the page's token;
        X-Filename: its name (shown only)."""
        from aiohttp import web

        if self.token is None or not secrets.compare_digest(request.headers.get("X-Studio-Session", ""), self.token):
            return self._error(403, "this page does not hold the studio (another tab does, or it was closed): "
                                    "reload it to take over")
        if self.exporting:
            return self._error(409, "an export is running: upload when it is done")
        name = display_name(request.headers.get("X-Filename", ""))
        limit = int(self.cfg.max_upload_mb * 1e6)
        too_big = f"{name}: larger than the upload limit of {self.cfg.max_upload_mb:g} MB"
        if request.content_length is not None and request.content_length > limit:
            return self._error(413, too_big)
        path = self.tmp / f"upload-{secrets.token_hex(8)}"
        try:
            n = 0
            with open(path, "wb") as f:
                async for chunk in request.content.iter_chunked(1 << 16):
                    n += len(chunk)
                    if n > limit:
                        break
                    f.write(chunk)
            if n > limit:  # read on (bounded) so that the browser gets the answer, not a reset connection
                path.unlink(missing_ok=True)
                drained = 0
                async for chunk in request.content.iter_chunked(1 << 16):
                    drained += len(chunk)
                    if drained > DRAIN_LIMIT:
                        break
                return self._error(413, too_big)
            if n == 0:
                return self._error(400, f"{name}: the file is empty (0 bytes)")
            try:
                speech = await self.in_worker(self._load_speech, path, name)
            except InputError as e:
                return self._error(400, str(e))
            await self.in_worker(self._set_speech, speech)
        finally:
            path.unlink(missing_ok=True)
        info = self.speech_info()
        self.log(f"studio: loaded speech {name!r} ({info['duration']:.2f} s)")
        if self.active is not None:
            await self._send(self.active, {"type": "speech", "speech": info})
        return web.json_response({"ok": True, "speech": info})

    async def http_timeline(self, request):
        from aiohttp import web

        fmt = request.match_info["fmt"]
        if fmt not in ("csv", "json"):
            raise web.HTTPNotFound(text="timeline.csv or timeline.json")
        all_aus = request.query.get("all", "0") == "1"
        s = self.stream
        text = await self.in_worker(s.timeline_csv if fmt == "csv" else s.timeline_json, all_aus)
        return web.Response(text=text, content_type="text/csv" if fmt == "csv" else "application/json",
                            headers={"Content-Disposition": f'attachment; filename="timeline.{fmt}"',
                                     "Cache-Control": "no-store"})

    async def http_export(self, request):
        from aiohttp import web

        token = request.match_info["token"]
        path = self.exports.get(token) if _EXPORT_RE.match(token) else None
        if path is None or not path.is_file():
            raise web.HTTPNotFound(text="no such export (exports live until the studio stops)")
        return web.FileResponse(path, headers={"Content-Disposition": 'attachment; filename="studio_take.mp4"',
                                               "Content-Type": "video/mp4"})

    # -- WebSocket ---------------------------------------------------------------------------------------
    @staticmethod
    async def _send(ws, obj: dict) -> None:
        if ws is not None and not ws.closed:
            try:
                await ws.send_str(json.dumps(obj))
            except (ConnectionError, RuntimeError):
                pass

    async def websocket(self, request):
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(max_msg_size=MAX_WS_MESSAGE, heartbeat=30)
        await ws.prepare(request)
        try:
            first = await ws.receive(timeout=15)
        except asyncio.TimeoutError:
            await ws.close()
            return ws
        try:
            hello = json.loads(first.data) if first.type == WSMsgType.TEXT else None
        except json.JSONDecodeError:
            hello = None
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await self._send(ws, {"type": "error", "message": "expected a hello message first"})
            await ws.close()
            return ws
        old = self.active
        if old is not None and not old.closed and hello.get("take_over") is not True:
            await self._send(ws, {"type": "busy", "message": "another tab holds the studio (one session at a time)"})
            await ws.close()
            return ws
        if old is not None and not old.closed:
            await self._send(old, {"type": "taken_over", "message": "another tab took over the studio"})
            await old.close()
        self.active, self.token = ws, secrets.token_urlsafe(24)
        self.log("studio: a page connected")
        await self._send(ws, {"type": "welcome", "session": self.token, "speech": self.speech_info(),
                              "controls": self.stream.arrays.controls.to_message(), "info": self.info()})
        try:
            async for msg in ws:
                if self.active is not ws:
                    break
                if msg.type != WSMsgType.TEXT:
                    await self._send(ws, {"type": "error", "message": "only JSON text messages are accepted"})
                    continue
                try:
                    m = json.loads(msg.data)
                    if not isinstance(m, dict):
                        raise InputError("expected a JSON object")
                    await self._dispatch(ws, m)
                except json.JSONDecodeError:
                    await self._send(ws, {"type": "error", "message": "not JSON"})
                except InputError as e:
                    await self._send(ws, {"type": "error", "message": str(e)})
        finally:
            if self.active is ws:
                self.active, self.token = None, None
                self.log("studio: the page disconnected")
        return ws

    async def _dispatch(self, ws, m: dict) -> None:
        kind = m.get("type")
        if kind == "frame":
            seq = _int(m, "seq")
            t, ta = _number(m, "t", 0, 1e6), _number(m, "t_audio", 0, 1e6)
            playing, segment = _bool(m, "playing"), _int(m, "segment")
            if self.exporting:
                await self._send(ws, {"type": "skipped", "seq": seq, "reason": "export running"})
                return
            jpg, hdr, fr = await self.in_worker(self._frame, t, ta, playing, segment)
            hdr["seq"] = seq
            h = json.dumps(hdr).encode()
            if not ws.closed:
                try:
                    await ws.send_bytes(struct.pack(">I", len(h)) + h + jpg)
                    self.frames_sent += 1
                except (ConnectionError, RuntimeError):
                    return
            self._maybe_measure(ws, fr, hdr["frame"])
        elif kind == "controls":
            c = Controls.from_message(m.get("controls"))
            v = _int(m, "v")
            ta, playing, segment = _number(m, "t_audio", 0, 1e6), _bool(m, "playing"), _int(m, "segment")

            def apply() -> None:
                self.stream.set_controls(c, ta, playing, segment)
                self.client_v = v
            await self.in_worker(apply)
            await self._send(ws, {"type": "controls_ok", "v": v})
        elif kind == "position":
            ta, playing, segment = _number(m, "t_audio", 0, 1e6), _bool(m, "playing"), _int(m, "segment")
            await self.in_worker(self.stream.advance, ta, playing, segment)
        elif kind == "measure":
            self.measuring = _bool(m, "on")
        elif kind == "export":
            if self.exporting:
                raise InputError("an export is already running")
            asyncio.get_running_loop().create_task(self._export(ws))
        elif kind == "ping":
            await self._send(ws, {"type": "pong", "t": m.get("t") if isinstance(m.get("t"), (int, float)) else None})
        else:
            raise InputError(f"unknown message type {str(kind)[:20]!r}")

    def _maybe_measure(self, ws, frame: np.ndarray, index: int) -> None:
        now = time.monotonic()
        if not self.measuring or self._measure_busy or now - self._measure_last < self.cfg.measure_interval_s:
            return
        self._measure_busy, self._measure_last = True, now
        loop = asyncio.get_running_loop()

        def job() -> tuple[Any, float]:
            from emogs.studio.measure import RenderAUMeter

            if self.meter is None:
                self.meter = RenderAUMeter()
            t = time.perf_counter()
            return self.meter(frame), (time.perf_counter() - t) * 1000

        async def run() -> None:
            try:
                au, ms = await loop.run_in_executor(self.meter_pool, job)
                await self._send(ws, {"type": "measured", "frame": index, "ms": round(ms, 1),
                                      "au": None if au is None else [round(float(x), 4) for x in au]})
            except Exception as e:  # noqa: BLE001 - measuring is an extra: report it, keep serving
                await self._send(ws, {"type": "error", "message": f"AU measurement failed ({type(e).__name__})"})
                self.measuring = False
            finally:
                self._measure_busy = False
        loop.create_task(run())

    async def _export(self, ws) -> None:
        """Render the whole take to an MP4 with the speech; progress and the download link on the socket."""
        from emogs.io.media import write_video

        self.exporting = True
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if self.stopping:
                raise InterruptedError("the studio is stopping")
            if time.monotonic() - last[0] > 0.3 or done == total:
                last[0] = time.monotonic()
                asyncio.run_coroutine_threadsafe(
                    self._send(ws, {"type": "export_progress", "done": done, "total": total}), loop)

        def job() -> tuple[Path, int]:
            s = self.stream
            path = self.tmp / f"export-{secrets.token_hex(8)}.mp4"
            n = write_video(path, s.export_frames(chunk=16, progress=progress), FPS, audio=s.speech.wav,
                            sample_rate=SAMPLE_RATE)
            return path, n

        try:
            await self._send(ws, {"type": "export_progress", "done": 0, "total": self.stream.num_frames})
            path, n = await self.in_worker(job)
            token = secrets.token_urlsafe(16)
            self.exports[token] = path
            for old in list(self.exports)[:-KEEP_EXPORTS]:  # the oldest exports make room
                self.exports.pop(old).unlink(missing_ok=True)
            await self._send(ws, {"type": "export_ready", "url": f"/api/export/{token}", "frames": n,
                                  "seconds": round(time.monotonic() - t0, 2)})
            self.log(f"studio: exported {n} frames in {time.monotonic() - t0:.1f} s")
        except Exception as e:  # noqa: BLE001 - tell the page, keep serving
            await self._send(ws, {"type": "error", "message": f"export failed: {e}"})
        finally:
            self.exporting = False

    async def _on_shutdown(self, app) -> None:
        if self.active is not None:
            await self.active.close()

    def close(self) -> None:
        self.worker.shutdown(wait=True, cancel_futures=True)
        self.meter_pool.shutdown(wait=True, cancel_futures=True)
        if self.meter is not None:
            self.meter.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def load_avatar(run: str | Path, cfg: StudioConfig):
    """The run as an Avatar at the studio's size (on a CPU at most CPU_MAX_SIZE unless --size says)."""
    from emogs.avatar import Avatar

    av = Avatar.load(run, device=cfg.device, size=cfg.size)
    if cfg.size is None and av.device.type != "cuda" and av.size > CPU_MAX_SIZE:
        av = Avatar.load(run, device=cfg.device, size=CPU_MAX_SIZE)
    return av


def check_config(cfg: StudioConfig) -> None:
    if not 0 <= cfg.port <= 65535:
        raise InputError(f"--port {cfg.port}: must be 0-65535")
    if not 0 < cfg.max_upload_mb <= 4096:
        raise InputError(f"--max-upload-mb {cfg.max_upload_mb:g}: must be above 0 and at most 4096")
    if not 1 <= cfg.max_audio_seconds <= 4 * 3600:
        raise InputError(f"--max-audio-seconds {cfg.max_audio_seconds:g}: must be 1-14400")
    if not 1 <= cfg.jpeg_quality <= 100:
        raise InputError(f"--jpeg-quality {cfg.jpeg_quality}: must be 1-100")


def serve(run: str | Path, cfg: StudioConfig, ready: Callable[[str], None] | None = None) -> None:
    """Load the run and serve the studio until interrupted. `ready(url)` is called once it listens."""
    from aiohttp import web

    check_config(cfg)
    if cfg.host not in LOOPBACK:
        print(f"warning: serving on {cfg.host}: anyone who can reach this machine on port {cfg.port} can use the "
              "studio and upload files to it (there is no login)", file=sys.stderr, flush=True)
    print(f"emogs studio: loading {run} ...", file=sys.stderr, flush=True)
    av = load_avatar(run, cfg)
    studio = Studio(av, cfg, run_name=Path(run).resolve().name)
    from emogs.render import choose_backend
    raster = choose_backend(av.device, getattr(av.cfg, "backend", "auto"))
    print(f"emogs studio: {av.device.type}, {raster} rasteriser, {av.size} px, {studio.render_ms:.0f} ms a frame",
          file=sys.stderr, flush=True)

    async def main() -> None:
        runner = web.AppRunner(studio.app(), access_log=None, shutdown_timeout=3.0)
        await runner.setup()
        site = web.TCPSite(runner, cfg.host, cfg.port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise InputError(f"cannot listen on {cfg.host}:{cfg.port} ({e.strerror or e})") from None
        port = runner.addresses[0][1]
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        url = f"http://{host}:{port}/"
        print(f"emogs studio: serving {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        if ready:
            ready(url)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            studio.stopping = True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(runner.cleanup(), 10)

    try:
        asyncio.run(main())
    finally:
        studio.close()
    print("emogs studio: stopped", file=sys.stderr, flush=True)
