#!/usr/bin/env python
"""Measure `emogs studio` in a real headless browser and take the docs' screenshots:

    python scripts/studio_measure.py RUN SPEECH -o OUT_DIR [--device cpu] [--size N] [--threads N] [--moves 20]
                                     [--client browser|python]

Starts `emogs studio RUN --port 0`, opens the page in Debian's Chromium (Playwright) and measures
  - slider-to-frame latency: the page's own figure (slider input event -> the first frame rendered with the
    new value drawn on the canvas), for `--moves` AU12 moves while paused and while the speech plays;
  - A/V offset while playing: for every frame drawn, (the frame's centre time - the <audio> clock then);
  - the frame rate the page reaches while playing, and the server's render / JPEG times per frame.
Writes OUT_DIR/measure.json (with the command, machine and load average) and the screenshots
OUT_DIR/page.png (speech loaded, `happy` preset, AU12 set, playing), OUT_DIR/busy.png (a second tab).

`--client python` (for a machine without Chromium, e.g. a GPU host) replaces the browser by an aiohttp
WebSocket client that runs the page's protocol and clock (the wall clock stands in for the <audio> element;
no JPEG decoding or drawing): the same three figures without the browser's share, no screenshots.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def start(run: Path, extra: list[str]) -> tuple[subprocess.Popen, str, list[str]]:
    # keep the caller's PYTHONPATH: on the GPU host gsplat lives there (/tmp/site); dropping it sent session 6's
    # measurement through the PyTorch rasteriser (115 ms a frame instead of 8)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "emogs.cli", "studio", str(run), "--port", "0", *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: list[str] = []
    url: list[str] = []

    def drain() -> None:
        for ln in proc.stderr:
            lines.append(ln.rstrip())
            if "serving http" in ln:
                url.append(ln.split("serving ")[1].split()[0].rstrip("/"))
    threading.Thread(target=drain, daemon=True).start()
    while not url:
        if proc.poll() is not None:
            raise SystemExit("the studio did not start:\n" + "\n".join(lines))
        time.sleep(0.2)
    return proc, url[0], lines


def stats(xs: list[float]) -> dict:
    a = np.asarray(xs, np.float64)
    if not len(a):
        return {"n": 0}
    return {"n": int(len(a)), "mean": round(float(a.mean()), 1), "median": round(float(np.median(a)), 1),
            "p95": round(float(np.percentile(a, 95)), 1), "min": round(float(a.min()), 1),
            "max": round(float(a.max()), 1)}


async def python_client(url: str, speech: Path, moves: int) -> dict:
    """The page's protocol from Python: latency of `moves` AU12 moves while paused, then the speech played on
    the wall clock with a move every 0.5 s, frames requested for (clock + measured round trip)."""
    import json as js
    import struct

    import aiohttp

    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url + "/ws", max_msg_size=0)
        await ws.send_json({"type": "hello", "take_over": True})
        w = await ws.receive_json()
        info = w["info"]
        info.pop("aus", None)
        info.pop("emotions", None)
        v, seq = 0, 0

        async def frame(t: float, ta: float, playing: bool) -> dict:
            nonlocal seq
            seq += 1
            await ws.send_json({"type": "frame", "seq": seq, "t": t, "t_audio": ta, "playing": playing, "segment": 1})
            while True:
                m = await ws.receive()
                if m.type == aiohttp.WSMsgType.BINARY:
                    n = struct.unpack(">I", m.data[:4])[0]
                    return js.loads(m.data[4:4 + n])

        async def move(value: float, ta: float, playing: bool) -> None:
            nonlocal v
            v += 1
            await ws.send_json({"type": "controls", "v": v, "controls": {"au": {"AU12": value}, "emotion": "happy"},
                                "t_audio": ta, "playing": playing, "segment": 1})

        paused = []
        for k in range(moves):
            t0 = time.perf_counter()
            await move(0.9 if k % 2 == 0 else 0.1, 0.0, False)
            while (await frame(0.0, 0.0, False))["v"] < v:
                pass
            paused.append((time.perf_counter() - t0) * 1000)
        r = await session.post(url + "/api/upload", data=speech.read_bytes(),
                               headers={"X-Studio-Session": w["session"], "X-Filename": speech.name})
        sp = (await r.json())["speech"]
        dur, lead, drifts, playing_lat, frames = sp["duration"], 0.05, [], [], 0
        pending: tuple[int, float] | None = None
        t0 = time.perf_counter()
        next_move = 0.5
        while (clock := time.perf_counter() - t0) < dur:
            if clock >= next_move:
                await move(0.9 if int(next_move * 2) % 2 else 0.2, clock, True)
                pending, next_move = (v, time.perf_counter()), next_move + 0.5
            sent = time.perf_counter()
            hdr = await frame(min(dur, clock + lead), clock, True)
            now = time.perf_counter()
            lead = 0.8 * lead + 0.2 * (now - sent)
            drifts.append(((hdr["frame"] + 0.5) / 25 - (now - t0)) * 1000)
            frames += 1
            if pending and hdr["v"] >= pending[0]:
                playing_lat.append((now - pending[1]) * 1000)
                pending = None
        wall = time.perf_counter() - t0
        await ws.close()
    return {"info": info, "latency_paused_ms": stats(paused), "latency_playing_ms": stats(playing_lat),
            "av_offset_ms": stats(drifts), "av_offset_abs_ms": stats([abs(x) for x in drifts]),
            "frames_in_own_slot": round(float(np.mean([abs(x) <= 20 for x in drifts])), 3),
            "playback": {"speech_s": round(dur, 2), "wall_s": round(wall, 2), "frames_drawn": frames,
                         "fps": round(frames / wall, 2)},
            "last_frame_render_ms": hdr["render_ms"], "last_frame_encode_ms": hdr["encode_ms"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("speech", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--moves", type=int, default=20)
    ap.add_argument("--client", choices=("browser", "python"), default="browser")
    a = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    extra = ["--device", a.device] + (["--size", str(a.size)] if a.size else []) + \
        (["--threads", str(a.threads)] if a.threads else [])
    a.out.mkdir(parents=True, exist_ok=True)
    proc, url, lines = start(a.run, extra)
    res: dict = {"command": " ".join(["python scripts/studio_measure.py", str(a.run), str(a.speech), "-o", str(a.out),
                                      *extra, "--moves", str(a.moves), "--client", a.client]),
                 "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                 "load_average_start": os.getloadavg()}
    try:
        if a.client == "python":
            import asyncio

            res.update(asyncio.run(python_client(url, a.speech, a.moves)))
            return 0
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium,
                                  args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
            page = b.new_context(viewport={"width": 1180, "height": 1040}).new_page()
            page.goto(url + "/")
            page.wait_for_function("window.studio && window.studio.framesReceived > 0", timeout=120_000)
            res["info"] = page.evaluate("window.studio.info")
            res["info"].pop("aus", None)
            res["info"].pop("emotions", None)

            def settle() -> None:
                page.wait_for_function("window.studio.last.v === window.studio.cv && !window.studio.inflight",
                                       timeout=120_000)

            # latency while paused
            for k in range(a.moves):
                page.locator("#au-AU12").fill(f"{(0.9 if k % 2 == 0 else 0.1):.2f}")
                settle()
                time.sleep(0.1)
            paused = page.evaluate("window.studio.latencies.map(x => x.ms)")
            # upload the speech, play it with slider moves
            n = page.evaluate("window.studio.uploadsDone")
            page.set_input_files("#file", str(a.speech))
            page.wait_for_function(f"window.studio.uploadsDone > {n}", timeout=300_000)
            dur = page.evaluate("window.studio.speech.duration")
            page.select_option("#emotion", "happy")
            settle()
            n_lat = len(page.evaluate("window.studio.latencies"))
            f0 = page.evaluate("window.studio.framesReceived")
            page.evaluate("window.studio.drifts.length = 0")
            page.click("#play")
            t0 = time.monotonic()
            k = 0
            while page.evaluate("window.studio.ended") == 0 and time.monotonic() - t0 < dur + 60:
                page.locator("#au-AU12").fill(f"{(0.9 if k % 2 == 0 else 0.2):.2f}")
                k += 1
                time.sleep(0.5)
            wall = time.monotonic() - t0
            playing = page.evaluate("window.studio.latencies.map(x => x.ms)")[n_lat:]
            drifts = page.evaluate("window.studio.drifts")
            frames = page.evaluate("window.studio.framesReceived") - f0
            hdr = page.evaluate("window.studio.lastHeader")
            # a second, shorter pass with the AU measurement on, for the screenshot
            page.check("#measure")
            page.locator("#au-AU12").fill("0.90")
            page.evaluate("document.getElementById('audio').currentTime = 0")
            settle()
            page.click("#play")
            time.sleep(min(6.0, dur * 0.7))
            page.screenshot(path=str(a.out / "page.png"))
            page.click("#play")
            measured = page.evaluate("Array.from(window.studio.measured.values()).filter(x => x).length")
            measured_all = page.evaluate("window.studio.measured.size")
            res.update({
                "latency_paused_ms": stats(paused), "latency_playing_ms": stats(playing),
                "av_offset_ms": stats(drifts), "av_offset_abs_ms": stats([abs(x) for x in drifts]),
                "frames_in_own_slot": round(float(np.mean([abs(x) <= 20 for x in drifts])), 3) if drifts else None,
                "playback": {"speech_s": round(dur, 2), "wall_s": round(wall, 2), "frames_drawn": frames,
                             "fps": round(frames / max(wall, 1e-9), 2)},
                "last_frame_render_ms": hdr["render_ms"], "last_frame_encode_ms": hdr["encode_ms"],
                "au_measurements": {"attempted": measured_all, "face_found": measured}})
            second = b.new_context(viewport={"width": 1180, "height": 700}).new_page()
            second.goto(url + "/")
            second.wait_for_selector("#busy", state="visible", timeout=60_000)
            second.screenshot(path=str(a.out / "busy.png"))
            b.close()
    finally:
        res["load_average_end"] = os.getloadavg()
        res["server_log"] = lines[-8:]
        (a.out / "measure.json").write_text(json.dumps(res, indent=1) + "\n")
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            print("the studio did not stop within 60 s of SIGINT: killed", file=sys.stderr)
            proc.kill()
    print(json.dumps({k: v for k, v in res.items() if k != "server_log"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
