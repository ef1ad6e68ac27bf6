"""`emogs studio` end to end in a real headless browser (Debian's Chromium driven by Playwright) against a
tiny CPU-trained head served by the `emogs studio` command: the page loads and shows frames, the AU12 slider
moves the rendered mouth and the exported timeline, an uploaded speech plays to the end and exports to an
MP4 with audio, bad uploads get a clear message, a recorded microphone clip is used, a second tab is told
the studio is taken and the server keeps serving."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from emogs.io import media

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright (pip install playwright) not installed")
LIMIT_MB, LIMIT_S = 1, 5


@pytest.fixture(scope="module")
def server(tiny_run):
    """`emogs studio RUN --port 0` in a subprocess -> (base URL, process, its stderr lines)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "emogs.cli", "studio", str(tiny_run), "--port", "0", "--device", "cpu",
           "--threads", "1", "--max-upload-mb", str(LIMIT_MB), "--max-audio-seconds", str(LIMIT_S)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    lines: list[str] = []
    url: list[str] = []

    def drain() -> None:
        for ln in proc.stderr:
            lines.append(ln.rstrip())
            if "serving http" in ln:
                url.append(ln.split("serving ")[1].split()[0])
    threading.Thread(target=drain, daemon=True).start()
    t0 = time.monotonic()
    while not url and proc.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.2)
    assert url, f"the studio did not start: {lines}"
    yield url[0].rstrip("/"), proc, lines
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--autoplay-policy=no-user-gesture-required",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("uploads")
    speech = media.load_audio(shared_data / "audio" / "emotalk_happy.wav", 16000)
    media.write_wav(d / "speech.wav", speech[:32000])  # 2 s: 50 frames
    media.write_wav(d / "long.wav", np.tile(speech, 3)[:16000 * 6])  # 6 s, over the 5 s limit
    (d / "notes.txt").write_text("this is not audio\n" * 40)
    (d / "empty.wav").write_bytes(b"")
    (d / "huge.wav").write_bytes(b"\0" * int(1.5e6))
    return d


def open_page(browser, url: str):
    """A new tab on the studio that holds it (taking it over if another tab still does), a frame shown."""
    page = browser.new_context(viewport={"width": 1200, "height": 1000}).new_page()
    page.goto(url + "/")
    page.wait_for_function("window.studio && (window.studio.framesReceived > 0"
                           " || !document.getElementById('busy').hidden)", timeout=60_000)
    if page.is_visible("#busy"):
        page.click("#take-over")
    page.wait_for_function("window.studio.framesReceived > 0", timeout=60_000)
    return page


def settled(page, timeout: float = 60_000) -> dict:
    """Wait until the frame on screen is the one of the audio position, rendered with the page's latest
    controls; -> its header."""
    page.wait_for_function("window.studio.last.v === window.studio.cv && !window.studio.inflight"
                           " && !window.studio.dirty && window.studio.last.speech === window.studio.speechVersion"
                           " && window.studio.last.frame === frameAt(document.getElementById('audio').currentTime)",
                           timeout=timeout)
    return page.evaluate("window.studio.lastHeader")


def canvas(page) -> np.ndarray:
    data = page.evaluate("""() => { const c = document.getElementById('frame');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""")
    n = int(round((len(data) // 4) ** 0.5))
    return np.array(data, np.int32).reshape(n, n, 4)[..., :3]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def status(url: str) -> dict:
    return json.loads(fetch(url + "/api/status"))


def upload(page, path: Path) -> None:
    n = page.evaluate("window.studio.uploadsDone")
    page.set_input_files("#file", str(path))
    page.wait_for_function(f"window.studio.uploadsDone > {n}", timeout=120_000)


def test_the_page_loads_and_the_au12_slider_moves_the_mouth_and_the_timeline(server, browser):
    url, proc, _ = server
    page = open_page(browser, url)
    assert "CPU: rendering at 64 px" in page.inner_text("#device-note")
    assert page.locator("#aus tr").count() == 17 and "lip corner puller" in page.inner_text("#aus")
    page.evaluate("document.getElementById('audio').currentTime = 0")
    h0 = settled(page)
    before = canvas(page)
    page.click("#play")
    page.wait_for_function("document.getElementById('audio').currentTime > 1.0", timeout=30_000)
    box = page.locator("#au-AU12").bounding_box()
    page.mouse.click(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)  # the slider's far end
    page.wait_for_function("window.studio.latencies.length > 0", timeout=30_000)
    page.wait_for_function("document.getElementById('audio').currentTime > 2.2", timeout=30_000)
    page.click("#play")  # pause
    page.evaluate("document.getElementById('audio').currentTime = 0")
    h1 = settled(page)
    after = canvas(page)
    assert page.is_checked("#aus tr:nth-child(9) .pin")
    assert h1["au"][8] > h0["au"][8] + 0.1 and h1["frame"] == h0["frame"] == 0
    d = np.abs(after - before).mean(-1)
    S = d.shape[0]
    mouth, top = d[int(.55 * S):int(.85 * S), int(.3 * S):int(.7 * S)].mean(), d[:int(.3 * S)].mean()
    assert mouth > 0 and mouth > 1.5 * top, (mouth, top)
    lat = page.evaluate("window.studio.latencies.map(x => x.ms)")
    assert 0 < lat[0] < 10_000
    rows = [r.split(",") for r in fetch(url + "/api/timeline.csv").decode().strip().splitlines()]
    col = rows[0].index("AU12")
    a12 = np.array([float(r[col]) for r in rows[1:]])
    assert a12[5] < a12[40] - 0.1 and a12[20] < a12[40] - 0.1  # low before the move (~1 s), high after it
    page.context.close()
    assert proc.poll() is None


def test_an_uploaded_speech_plays_to_the_end_and_exports_an_mp4_with_audio(server, browser, files, tmp_path):
    url, proc, _ = server
    page = open_page(browser, url)
    upload(page, files / "speech.wav")
    assert "loaded speech.wav: 2.00 s" in page.inner_text("#message")
    page.wait_for_function("window.studio.speech.frames === 50 && document.getElementById('audio').duration > 1.9")
    settled(page)
    n0 = page.evaluate("window.studio.framesReceived")
    page.click("#play")
    page.wait_for_function("window.studio.ended > 0", timeout=60_000)
    assert page.evaluate("window.studio.framesReceived") - n0 >= 4
    assert page.evaluate("window.studio.drifts.length") >= 3
    t0 = time.monotonic()
    while status(url)["played_frames"] < 50 and time.monotonic() - t0 < 10:
        time.sleep(0.2)
    assert status(url)["played_frames"] == 50  # the take covers the clip: it played to the end
    page.click("#export-mp4")
    page.wait_for_function("window.studio.exportUrl !== null", timeout=300_000)
    assert page.is_visible("#dl-mp4")
    out = tmp_path / "take.mp4"
    out.write_bytes(fetch(url + page.evaluate("window.studio.exportUrl")))
    info = media.probe(out)
    assert info.has_audio and info.num_frames == 50 and info.duration == pytest.approx(2.0, abs=0.05)
    assert abs(len(media.load_audio(out)) - 32000) < 1100
    page.context.close()


def test_bad_uploads_get_a_clear_message_and_the_server_keeps_serving(server, browser, files):
    url, proc, _ = server
    page = open_page(browser, url)
    for name, needle in (("notes.txt", "notes.txt: not a readable media file"),
                         ("empty.wav", "empty.wav: the file is empty (0 bytes)"),
                         ("huge.wav", f"huge.wav: larger than the upload limit of {LIMIT_MB} MB"),
                         ("long.wav", f"long.wav: longer than the limit of {LIMIT_S} s of audio")):
        upload(page, files / name)
        assert page.get_attribute("#message", "class") == "error", (name, page.inner_text("#message"))
        assert needle in page.inner_text("#message"), page.inner_text("#message")
        n = page.evaluate("window.studio.framesReceived")
        page.locator("#au-AU04").fill(f"{0.1 + 0.15 * len(name) % 0.8:.2f}")
        page.wait_for_function(f"window.studio.framesReceived > {n}", timeout=60_000)  # still rendering
    assert json.loads(fetch(url + "/api/info"))["size"] == 64 and proc.poll() is None
    page.context.close()


def test_a_microphone_recording_becomes_the_speech(server, browser):
    url, proc, _ = server
    page = open_page(browser, url)
    page.click("#record")
    page.wait_for_function("window.studio.recorder !== null", timeout=10_000)
    time.sleep(1.5)
    n = page.evaluate("window.studio.uploadsDone")
    page.click("#record")
    page.wait_for_function(f"window.studio.uploadsDone > {n}", timeout=120_000)
    assert "loaded microphone.webm" in page.inner_text("#message"), page.inner_text("#message")
    assert 0.8 < page.evaluate("window.studio.speech.duration") < 3.0
    page.context.close()


def test_a_second_tab_is_told_and_does_not_crash_the_server(server, browser):
    url, proc, lines = server
    first = open_page(browser, url)
    second = browser.new_context().new_page()
    second.goto(url + "/")
    second.wait_for_selector("#busy", state="visible", timeout=60_000)
    assert "another tab holds the studio" in second.inner_text("#busy-text")
    n = first.evaluate("window.studio.framesReceived")
    first.locator("#au-AU01").fill("0.6")
    first.wait_for_function(f"window.studio.framesReceived > {n}", timeout=60_000)  # the first tab still works
    second.click("#take-over")
    second.wait_for_function("window.studio.framesReceived > 0", timeout=60_000)
    first.wait_for_selector("#busy", state="visible", timeout=30_000)
    assert "took over" in first.inner_text("#busy-text")
    assert proc.poll() is None and json.loads(fetch(url + "/api/status"))["active"]
    assert not [ln for ln in lines if "Traceback" in ln], lines
    first.context.close()
    second.context.close()
