"""DEMO/index.html: one self-contained page (relative links only) showing what the demo made.

Sections: note on what this is, videos (HTML5 <video>), AU control check, metrics, training, dataset,
timings, the equivalent commands. Everything is read from the files the stages wrote, so the page says
what is on disk and nothing else.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from emogs.io.atomic import atomic_path, read_json, write_text

CSS = """
body{font-family:system-ui,sans-serif;max-width:1180px;margin:24px auto;padding:0 16px;color:#222;line-height:1.45}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:34px}
.note{background:#fff6dc;border:1px solid #e8cf7a;padding:10px 14px;border-radius:6px}
.grid{display:flex;flex-wrap:wrap;gap:18px} figure{margin:0;max-width:100%}
figcaption{font-size:13px;color:#444;max-width:560px}
video{background:#000;image-rendering:pixelated;max-width:100%}
table{border-collapse:collapse;font-size:14px} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums} img{max-width:100%;border:1px solid #eee}
code,pre{background:#f4f4f4;border-radius:4px} pre{padding:8px;overflow-x:auto;font-size:13px}
.small{font-size:13px;color:#555}
"""
VIDEO_HEIGHT = 256  # px on the page: small renders are shown enlarged (pixelated, not smoothed)


def esc(x: Any) -> str:
    return html.escape(str(x))


def fmt(v: Any, digits: int = 3) -> str:
    """Numbers for tables: None/NaN -> n/a."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.0f}"
    return esc(v)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table; numeric cells right-aligned."""
    th = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = ""
    for r in rows:
        cells = "".join(f'<td class="num">{fmt(c)}</td>' if isinstance(c, (int, float)) or c is None
                        else f"<td>{c}</td>" for c in r)
        body += f"<tr>{cells}</tr>"
    return f"<table><tr>{th}</tr>{body}</table>"


def video_info(path: Path) -> dict[str, Any]:
    """Size, duration and audio presence of a video (for captions)."""
    from emogs.io.media import probe

    i = probe(path)
    return dict(width=i.width, height=i.height, duration=i.duration, has_audio=i.has_audio)


def poster(out: Path, rel: str) -> str | None:
    """posters/<name>.jpg: the middle frame of the video (shown before it plays); its relative path."""
    import cv2

    from emogs.io.media import read_frames

    frames = list(read_frames(out / rel))
    if not frames:
        return None
    dst = out / "posters" / (rel.replace("/", "_").rsplit(".", 1)[0] + ".jpg")
    dst.parent.mkdir(exist_ok=True)
    ok, buf = cv2.imencode(".jpg", frames[len(frames) // 2][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        return None
    with atomic_path(dst) as tmp:
        tmp.write_bytes(buf.tobytes())
    return dst.relative_to(out).as_posix()


def video(out: Path, rel: str, caption: str) -> str:
    """<figure> with an HTML5 video (relative src, a poster frame) and its caption, or a note if missing."""
    p = out / rel
    if not p.is_file():
        return f"<figure><figcaption><b>missing:</b> {esc(rel)}</figcaption></figure>"
    i = video_info(p)
    post = poster(out, rel)
    post_attr = f" poster='{esc(post)}'" if post else ""
    h = max(VIDEO_HEIGHT, i["height"]) if i["height"] < VIDEO_HEIGHT else i["height"]
    w = round(i["width"] * h / max(i["height"], 1))
    cap = (f"{esc(caption)}<br><span class='small'><a href='{esc(rel)}'>{esc(rel)}</a>: {i['width']}x{i['height']}, "
           f"{i['duration']:.2f} s, {'with audio' if i['has_audio'] else 'NO AUDIO'}</span>")
    return (f"<figure><video controls preload='metadata' width='{w}' height='{h}'{post_attr} src='{esc(rel)}'>"
            "</video>"
            f"<figcaption>{cap}</figcaption></figure>")


def image(out: Path, rel: str, caption: str = "", width: int | None = None) -> str:
    if not (out / rel).is_file():
        return ""
    wa = f" width='{width}'" if width else ""
    return f"<figure><img src='{esc(rel)}'{wa} alt='{esc(caption or rel)}'><figcaption>{esc(caption)}</figcaption></figure>"


def _json(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


# --- sections ---------------------------------------------------------------------------------------
EFFECT_VISIBLE = 0.05  # AU units: below this the check calls a control "no clear effect"


def control_verdict(check: dict[str, Any]) -> str:
    """One honest sentence on whether the AU edit and the emotion preset moved the measured AUs."""
    if not check:
        return "The AU control check did not run."
    e = check["au_edit"]["effect"]
    emo = check["emotion"]["aus"]
    d = max((v["delta"] for v in emo.values() if v["delta"] is not None), default=None)
    part = []
    for what, x in ((f"the AU edit ({check['au_edit']['au']})", e), (f"the emotion preset", d)):
        if x is None:
            part.append(f"{what} could not be measured")
        elif x >= EFFECT_VISIBLE:
            part.append(f"{what} moved the measured AU by {x:+.2f}")
        else:
            part.append(f"{what} had no clear effect ({x:+.2f})")
    return "In this run, " + " and ".join(part) + " (details in the AU control check below)."


def section_intro(s: dict[str, Any], timings: dict[str, Any], check: dict[str, Any]) -> str:
    kind = "quick (CI-sized)" if s["quick"] else ("GPU" if s["device"] == "cuda" else "CPU")
    subject = f"your video <code>{esc(s['video'])}</code>" if s["video"] else "a synthetic talking person (emogs synth)"
    total = sum(v.get("seconds", 0) for v in timings.get("stages", {}).values())
    lines = [f"<p>Configuration: <b>{kind}</b> on <b>{esc(s['device'])}</b>. Subject: {subject}. "
             f"Dataset crop {s['prepare_size']} px; training {s['train_iters']} iterations at "
             f"{s['train_resolution']} px ({esc(s['train_preset'])}_config"
             f"{', with a smaller head: ' + esc(s['model_overrides']) if s['model_overrides'] else ''}). "
             f"Stage time this run: {total:.0f} s.</p>"]
    if s["device"] == "cpu" or s["quick"]:
        lines.append("<p class='note'><b>This is a demo of the pipeline, not a quality claim.</b> On a CPU "
                     f"the head is trained for only {s['train_iters']} iterations at {s['train_resolution']} px "
                     "with a few thousand Gaussians, so the renders are small and blurry, the mouth follows the "
                     "speech only roughly, and the metrics below are far from what the method reaches with "
                     "<code>gpu_config()</code> (512 px, 10 k iterations) on a GPU. What it does show: every stage "
                     "runs end to end on your machine and the outputs have the right length and audio. "
                     f"{esc(control_verdict(check))} A head this briefly trained may not have learned yet to "
                     "follow AU controls; it learns them from the expressions it sees in training.</p>")
    else:
        lines.append(f"<p>{esc(control_verdict(check))}</p>")
    return "\n".join(lines)


def section_videos(out: Path, s: dict[str, Any]) -> str:
    from emogs.demo.pipeline import VIDEOS

    speech = (out / "speech.txt").read_text().strip() if (out / "speech.txt").is_file() else s["speech_text"]
    figs = []
    if not s["video"]:
        figs.append(video(out, "subject.mp4", "Input: the synthetic subject with espeak-ng speech and scripted "
                                              "brow raise / frown / smile (exact ground truth in subject.gt.csv)"))
    figs.append(video(out, "run/test_render.mp4", "Held-out test frames: render (left) | ground truth (right), "
                                                  "with the test audio"))
    for name, (fname, cap) in VIDEOS.items():
        figs.append(video(out, f"videos/{fname}", cap.format(au=s["au_edit"], emotion=s["emotion"])))
    return (f"<h2>Videos</h2><p>New speech (never heard in training): <i>&ldquo;{esc(speech)}&rdquo;</i></p>"
            f"<div class='grid'>{''.join(figs)}</div>")


def section_au_check(out: Path) -> str:
    c = _json(out / "au_check.json")
    if not c:
        return "<h2>AU control check</h2><p>not run</p>"
    e = c["au_edit"]
    rows = [["requested", e["requested_in"], e["requested_out"], _diff(e["requested_in"], e["requested_out"])],
            ["measured on the edited render", e["edit_in"], e["edit_out"], e["edit_delta"]],
            ["measured on the plain render (control)", e["plain_in"], e["plain_out"], e["plain_delta"]]]
    t1 = table([f"{e['au']}", f"in window ({e['frames_in']} frames)", f"outside ({e['frames_out']} frames)",
                "in - out"], rows)
    emo = c["emotion"]
    t2 = table(["AU", f"measured, {emo['emotion']}", "measured, plain", "difference"],
               [[a, v["emotion"], v["plain"], v["delta"]] for a, v in emo["aus"].items()])
    tracked = ", ".join(f"{k} {100 * v:.0f}%" for k, v in c["tracked"].items())
    verdict = (f"<p>Effect of <code>--au {esc(c['au_spec'])}</code>: <b>{fmt(e['effect'])}</b> AU units "
               "(edited render's in-minus-out change minus the plain render's).</p>")
    return (f"<h2>AU control check</h2><p class='small'>{esc(c['method'])} Frames with a detected face: "
            f"{esc(tracked)}.</p>{verdict}{t1}<h3>Emotion preset</h3>{t2}"
            f"{image(out, 'au_check.png', 'requested (thick) vs measured AU tracks')}")


def _diff(a: Any, b: Any) -> Any:
    return None if a is None or b is None else a - b


def section_metrics(out: Path) -> str:
    from emogs.eval.report import DEFINITIONS

    m = _json(out / "eval" / "metrics.json")
    if not m:
        return "<h2>Metrics</h2><p>eval not run</p>"
    arrow = {"up": "higher", "down": "lower", "ref": "reference", "0": "near 0"}
    rows = [[f"<code>{k}</code>", m[k], arrow[d], esc(text)] for k, (d, text) in DEFINITIONS.items() if k in m]
    notes = "".join(f"<li>{esc(n)}</li>" for n in m.get("meta", {}).get("notes", []))
    plots = "".join(image(out, f"eval/{p}", p) for p in m.get("meta", {}).get("plots", []))
    tm = _json(out / "run" / "metrics.json")
    train_line = ""
    if tm:
        f, fc = tm.get("full", {}), tm.get("face", {})
        train_line = (f"<p class='small'>The trainer's own test metrics ({tm.get('num_frames')} frames at "
                      f"{tm.get('resolution')} px, run/metrics.json): PSNR {fmt(f.get('psnr'), 2)}, SSIM "
                      f"{fmt(f.get('ssim'))}, LPIPS {fmt(f.get('lpips'))}; face box PSNR {fmt(fc.get('psnr'), 2)}.</p>")
    return (f"<h2>Metrics on the held-out test split</h2><p class='small'><code>emogs eval run</code> "
            f"({m.get('num_frames')} frames, {m.get('width')}x{m.get('height')}); full report: "
            f"<a href='eval/report.md'>eval/report.md</a>, <a href='eval/metrics.json'>eval/metrics.json</a>.</p>"
            f"{table(['metric', 'value', 'better', 'what it measures'], rows)}"
            f"{'<ul class=small>' + notes + '</ul>' if notes else ''}{train_line}"
            f"<details><summary>eval plots (AU tracks, sync, per-frame metrics)</summary>"
            f"<div class='grid'>{plots}</div></details>")


def training_curve(out: Path) -> str | None:
    """run/train_log.jsonl -> train_curve.png (loss and PSNR per logged iteration); its name or None."""
    log = out / "run" / "train_log.jsonl"
    if not log.is_file():
        return None
    recs = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    if not recs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [r["iteration"] for r in recs]
    fig, ax = plt.subplots(1, 2, figsize=(10, 2.8), dpi=100)
    ax[0].plot(it, [r["loss"] for r in recs])
    ax[0].set_title("training loss", fontsize=9)
    ax[1].plot(it, [r["psnr"] for r in recs], color="C1")
    ax[1].set_title("training-batch PSNR (dB)", fontsize=9)
    for a in ax:
        a.set_xlabel("iteration")
    fig.tight_layout()
    with atomic_path(out / "train_curve.png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return "train_curve.png"


def section_training(out: Path) -> str:
    curve = training_curve(out)
    prev = sorted((out / "run" / "previews").glob("*.png")) if (out / "run" / "previews").is_dir() else []
    parts = [image(out, curve, "loss and PSNR during training") if curve else ""]
    if prev:
        rel = prev[-1].relative_to(out).as_posix()
        parts.append(image(out, rel, f"last preview ({prev[-1].stem}): render | ground truth | alpha",
                           width=3 * 256))
    return f"<h2>Training</h2><div class='grid'>{''.join(parts)}</div>"


def section_dataset(out: Path) -> str:
    figs = [image(out, "dataset/report/contact_sheet.png", "prepare: contact sheet", width=540),
            image(out, "dataset/report/au_tracks.png", "prepare: tracked AUs of the input", width=540)]
    return f"<h2>Dataset (emogs prepare)</h2><div class='grid'>{''.join(figs)}</div>"


def section_timings(timings: dict[str, Any]) -> str:
    st = timings.get("stages", {})
    rows = [[k, v.get("seconds"), esc(v.get("status", "")), v.get("earlier_seconds")] for k, v in st.items()]
    rows.append(["<b>total</b>", sum(v.get("seconds", 0) for v in st.values()), "", None])
    return ("<h2>Timings (seconds)</h2>" + table(["stage", "this run", "status", "when it ran earlier"], rows)
            + "<p class='small'>Also in timings.json. Re-running <code>emogs demo</code> reuses finished stages.</p>")


def section_commands(s: dict[str, Any]) -> str:
    src = s["video"] or "demo_out/subject.mp4"
    cmds = []
    if not s["video"]:
        cmds.append(f"emogs synth -o demo_out/subject.mp4 --size {s['synth_size']}"
                    + (f" --text '{s['synth_text']}'" if s["synth_text"] else "")
                    + (f" --events {s['synth_events']}" if s["synth_events"] != "default" else ""))
    cmds += [f"emogs prepare {src} -o demo_out/dataset --size {s['prepare_size']} --no-whisper "
             f"--test-fraction {s['test_fraction']}",
             "emogs train demo_out/dataset -o demo_out/run   # the demo uses a smaller config, see demo.json",
             "emogs render demo_out/run --audio demo_out/speech.wav -o speech.mp4",
             f"emogs render demo_out/run --audio demo_out/speech.wav -o au_edit.mp4 --au {s['au_edit']} --side-by-side",
             f"emogs render demo_out/run --audio demo_out/speech.wav -o emotion.mp4 --emotion {s['emotion']}",
             "emogs eval demo_out/run"]
    return ("<h2>The same by hand</h2><pre>" + esc("\n".join(cmds)) + "</pre>"
            "<p class='small'>Python: <code>from emogs import Avatar; Avatar.load('demo_out/run').render("
            f"'demo_out/speech.wav', 'out.mp4', au={{'AU01': (1.0, 1.0, 2.5)}}, emotion='{esc(s['emotion'])}')</code></p>")


def write_index(out: Path, settings: dict[str, Any]) -> Path:
    """Write DEMO/index.html from the files in `out`; returns its path."""
    timings = _json(out / "timings.json")
    body = ["<h1>emogs demo</h1>", section_intro(settings, timings, _json(out / "au_check.json")),
            section_videos(out, settings),
            section_au_check(out), section_metrics(out), section_training(out), section_dataset(out),
            section_timings(timings), section_commands(settings)]
    doc = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>emogs demo</title>"
           f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    path = out / "index.html"
    write_text(path, doc)
    return path
