"""emogs.studio.server over real HTTP / WebSocket connections (aiohttp test server, no browser): the pages,
the session rule, frames, every kind of bad input, uploads and the MP4 export."""
from __future__ import annotations

import asyncio
import json
import struct

import numpy as np
import pytest

from emogs.face.aus import AU_NAMES
from emogs.io import media

pytest.importorskip("aiohttp")


@pytest.fixture(scope="module")
def studio(tiny_run):
    from emogs import Avatar
    from emogs.studio.server import Studio, StudioConfig

    s = Studio(Avatar.load(tiny_run, device="cpu"), StudioConfig(max_upload_mb=0.2, max_audio_seconds=3.0),
               log=lambda m: None)
    yield s
    s.close()
    assert not s.tmp.exists()  # the private upload folder goes with the server


@pytest.fixture(scope="module")
def speech_file(shared_data, tmp_path_factory):
    p = tmp_path_factory.mktemp("speech") / "speech.wav"
    media.write_wav(p, media.load_audio(shared_data / "audio" / "emotalk_happy.wav", 16000, max_seconds=1.5))
    return p


def run(studio, body):
    from aiohttp.test_utils import TestClient, TestServer

    async def main():
        async with TestClient(TestServer(studio.app())) as client:
            return await body(client)
    return asyncio.run(main())


async def hello(client, take_over=False):
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "hello", "take_over": take_over})
    return ws, await ws.receive_json(timeout=30)


async def frame(ws, seq=1, t=0.0, playing=False):
    """Ask for a frame; -> (header, RGB image), skipping JSON messages on the way."""
    import cv2

    await ws.send_json({"type": "frame", "seq": seq, "t": t, "t_audio": t, "playing": playing, "segment": 1})
    while True:
        msg = await ws.receive(timeout=60)
        if msg.type.name == "BINARY":
            n = struct.unpack(">I", msg.data[:4])[0]
            hdr = json.loads(msg.data[4:4 + n])
            img = cv2.imdecode(np.frombuffer(msg.data[4 + n:], np.uint8), cv2.IMREAD_COLOR)
            return hdr, img[..., ::-1]
        assert msg.type.name == "TEXT", msg


async def expect_error(ws, payload, needle):
    await (ws.send_str(payload) if isinstance(payload, str) else ws.send_json(payload))
    m = await ws.receive_json(timeout=30)
    assert m["type"] == "error" and needle in m["message"], m


def test_pages_info_and_no_path_reaches_the_filesystem(studio):
    async def body(c):
        r = await c.get("/")
        assert r.status == 200 and "emogs studio" in await r.text()
        assert (await c.get("/static/studio.js")).status == 200
        for bad in ("/static/server.py", "/static/..%2Fserver.py", "/static/%2E%2E/__init__.py", "/api/timeline.py",
                    "/api/export/..%2F..%2Fetc%2Fpasswd", "/api/export/AAAAAAAAAAAAAAAA", "/etc/passwd"):
            assert (await c.get(bad)).status == 404, bad
        r = await c.get("/api/info", headers={"Host": "attacker.example:7860"})  # DNS rebinding
        assert r.status == 403 and "unexpected Host" in (await r.json())["error"]
        r = await c.get("/ws", headers={"Origin": "http://attacker.example"})  # another site's script
        assert r.status == 403 and "other sites" in (await r.json())["error"]
        r = await c.post("/api/upload", data=b"x", headers={"Origin": "http://attacker.example"})
        assert r.status == 403
        assert (await c.get("/api/info", headers={"Origin": f"http://{c.host}:{c.port}"})).status == 200
        info = await (await c.get("/api/info")).json()
        assert [a["name"] for a in info["aus"]][8] == "AU12" and info["aus"][8]["facs"] == "lip corner puller"
        assert info["device"] == "cpu" and "CPU" in info["note"] and info["size"] == 64
        assert {e["name"] for e in info["emotions"]} >= {"happy", "sad", "surprised"}
        assert all(0 <= a["min"] <= a["max"] <= 1 for a in info["aus"])
    run(studio, body)


def test_frames_controls_and_bad_messages(studio):
    async def body(c):
        ws = await c.ws_connect("/ws")  # no hello first: refused, nothing else happens
        await ws.send_json({"type": "frame"})
        assert (await ws.receive_json(timeout=30))["type"] == "error"
        await ws.close()
        ws, w = await hello(c)
        assert w["type"] == "welcome" and len(w["session"]) > 20 and w["speech"]["frames"] == 500  # 20 s idle
        hdr, img = await frame(ws)
        assert img.shape == (64, 64, 3) and hdr["frame"] == 0 and len(hdr["au"]) == 17
        await expect_error(ws, "not json {", "not JSON")
        await expect_error(ws, "[1, 2]", "expected a JSON object")
        await expect_error(ws, {"type": "frame", "seq": 1}, "t: expected a number")
        await expect_error(ws, {"type": "frame", "seq": -1, "t": 0, "t_audio": 0, "playing": False, "segment": 1},
                           "seq")
        await expect_error(ws, {"type": "frame", "seq": 1, "t": "1e999", "t_audio": 0, "playing": False,
                                "segment": 1}, "t: expected a number")
        await expect_error(ws, {"type": "teleport"}, "unknown message type")
        base = {"type": "controls", "v": 1, "t_audio": 0.0, "playing": False, "segment": 1}
        await expect_error(ws, {**base, "controls": {"au": {"AU13": 1}}}, "unknown AU")
        await expect_error(ws, {**base, "controls": {"au": {"AU12": 3}}}, "outside 0-1")
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive_json(timeout=30))["type"] == "error"
        await ws.send_json({**base, "v": 7, "controls": {"au": {"AU12": 1.0}}})
        assert await ws.receive_json(timeout=30) == {"type": "controls_ok", "v": 7}
        hdr2, img2 = await frame(ws, seq=2)
        _, hi = studio.av.training_range()
        assert hdr2["v"] == 7 and hdr2["au"][8] == pytest.approx(min(1, hi[8] + 0.1), abs=1e-3)
        await ws.send_str("x" * 100_000)  # over the message size limit: the socket closes ...
        await ws.receive(timeout=30)
        assert ws.closed
        ws, w = await hello(c)  # ... and the server serves the next one
        assert w["type"] == "welcome" and w["controls"]["au"] == {"AU12": 1.0}
        await ws.send_json({**base, "v": 8, "controls": {}})
        await ws.receive_json(timeout=30)
        await ws.close()
    run(studio, body)


def test_a_second_tab_is_told_and_may_take_over(studio):
    async def body(c):
        ws1, w1 = await hello(c)
        assert w1["type"] == "welcome"
        ws2, w2 = await hello(c)
        assert w2["type"] == "busy" and "another tab" in w2["message"]
        await ws2.receive(timeout=30)
        assert ws2.closed
        assert (await frame(ws1, seq=5))[0]["seq"] == 5  # the first tab keeps its studio
        ws3, w3 = await hello(c, take_over=True)
        assert w3["type"] == "welcome" and w3["session"] != w1["session"]
        assert (await ws1.receive_json(timeout=30))["type"] == "taken_over"
        await ws1.receive(timeout=30)
        assert ws1.closed
        assert (await frame(ws3, seq=6))[0]["seq"] == 6
        r = await c.post("/api/upload", data=b"x", headers={"X-Studio-Session": w1["session"]})
        assert r.status == 403 and "another tab" in (await r.json())["error"]  # the old tab's token is void
        await ws3.close()
    run(studio, body)


def test_bad_uploads_get_a_clear_message_and_the_server_keeps_serving(studio, speech_file, tmp_path):
    long_wav = tmp_path / "long.wav"
    media.write_wav(long_wav, np.sin(np.arange(16000 * 4) / 10).astype(np.float32) * 0.3)
    no_audio = tmp_path / "video.mp4"
    media.write_video(no_audio, np.zeros((5, 32, 32, 3), np.uint8))

    async def body(c):
        ws, w = await hello(c)
        tok = {"X-Studio-Session": w["session"]}

        async def up(data, name, headers=tok):
            r = await c.post("/api/upload", data=data, headers={**headers, "X-Filename": name})
            return r.status, await r.json()

        st, b = await up(speech_file.read_bytes(), "speech.wav", headers={})
        assert st == 403
        st, b = await up(b"", "empty.wav")
        assert st == 400 and b["error"] == "empty.wav: the file is empty (0 bytes)"
        st, b = await up(b"just some text\n" * 50, "notes.txt")
        assert st == 400 and b["error"].startswith("notes.txt: not a readable media file"), b
        assert str(studio.tmp) not in b["error"]
        st, b = await up(b"\0" * 300_000, "huge.wav")
        assert st == 413 and "larger than the upload limit of 0.2 MB" in b["error"]
        st, b = await up(long_wav.read_bytes(), "long.wav")
        assert st == 400 and "longer than the limit of 3 s" in b["error"]
        st, b = await up(no_audio.read_bytes(), "../../video.mp4")
        assert st == 400 and b["error"] == "video.mp4: has no audio track"  # shown name: no folders
        assert (await frame(ws, seq=3))[1].shape == (64, 64, 3)  # still serving
        st, b = await up(speech_file.read_bytes(), "speech%20one.wav")
        assert st == 200 and b["speech"]["name"] == "speech one.wav" and b["speech"]["frames"] == 38
        m = await ws.receive_json(timeout=30)
        assert m["type"] == "speech" and m["speech"]["frames"] == 38
        audio = await (await c.get("/api/audio")).read()
        assert audio[:4] == b"RIFF" and len(audio) == 44 + 2 * 24000
        assert list(studio.tmp.iterdir()) == []  # uploads are deleted once decoded
        await ws.close()
    run(studio, body)


def test_a_played_take_exports_to_mp4_with_audio_and_timelines(studio, speech_file, tmp_path):
    async def body(c):
        ws, w = await hello(c)
        r = await c.post("/api/upload", data=speech_file.read_bytes(),
                         headers={"X-Studio-Session": w["session"], "X-Filename": "speech.wav"})
        assert r.status == 200
        await ws.receive_json(timeout=30)  # the speech message
        base = {"type": "controls", "t_audio": 0.0, "playing": False, "segment": 1}
        await ws.send_json({**base, "v": 1, "controls": {}})
        await ws.receive_json(timeout=30)
        for k, t in enumerate(np.arange(0, 1.5, 0.2)):  # "playback" with a slider move at 0.8 s
            if abs(t - 0.8) < 1e-6:
                await ws.send_json({**base, "v": 2, "t_audio": t, "playing": True,
                                    "controls": {"au": {"AU12": 1.0}, "emotion": "happy", "intensity": 0.6}})
                await ws.receive_json(timeout=30)
            await frame(ws, seq=10 + k, t=float(t), playing=True)
        await ws.send_json({"type": "position", "t_audio": 1.5, "playing": True, "segment": 1})
        await ws.send_json({"type": "ping", "t": 1})  # answered after the position is recorded
        assert await ws.receive_json(timeout=30) == {"type": "pong", "t": 1}
        status = await (await c.get("/api/status")).json()
        assert status["played_frames"] == 38
        csv = await (await c.get("/api/timeline.csv")).text()
        rows = [ln.split(",") for ln in csv.strip().splitlines()]
        col = rows[0].index("AU12")
        assert len(rows) == 39 and float(rows[5][col]) < float(rows[30][col])  # the slider move, in time
        js = json.loads(await (await c.get("/api/timeline.json?all=1")).text())
        av = studio.av
        # time + all 17 AUs, but on a mesh head with a speech-motion model the speech AUs never set by the user
        # stay audio-driven on replay (StudioStream.timeline_columns)
        free_speech = {AU_NAMES[k] for k in av.speech.au_index} if av.speech is not None and av.is_mesh and av.motion else set()
        keys = set(js["keyframes"][0])
        assert keys >= {"time", *(a for a in AU_NAMES if a not in free_speech)} and keys <= {"time", *AU_NAMES}
        assert len(keys) == 18 if not free_speech else not keys & (free_speech & {"AU25", "AU26"})  # unset by happy
        await ws.send_json({"type": "export"})
        while True:
            m = await ws.receive_json(timeout=300)
            if m["type"] == "export_ready":
                break
            assert m["type"] == "export_progress", m
        r = await c.get(m["url"])
        assert r.status == 200 and r.headers["Content-Type"] == "video/mp4"
        out = tmp_path / "take.mp4"
        out.write_bytes(await r.read())
        await ws.close()
        return out

    out = run(studio, body)
    info = media.probe(out)
    assert info.has_audio and info.num_frames == 38 and info.duration == pytest.approx(38 / 25, abs=0.05)
    assert abs(len(media.load_audio(out)) - 24000) < 1100  # AAC priming / padding only


def test_the_studio_command_checks_its_arguments(tmp_path, capsys):
    from emogs.cli import main

    assert main(["studio", str(tmp_path / "nope"), "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err
    assert main(["studio", str(tmp_path / "nope"), "--max-upload-mb", "0"]) == 2
    assert main(["studio", str(tmp_path / "nope"), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "warning: serving on 0.0.0.0" in err and "no such run folder" in err.splitlines()[-1]
