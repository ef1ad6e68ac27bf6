"""Compare an `emogs analyze` result with the synthetic ground truth: per-AU Pearson correlation and,
for the scripted events, the mean AU inside vs outside each event window."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emogs.face.aus import AU_NAMES


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; NaN when either side is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def event_windows(events_json: str | Path | dict, times: np.ndarray) -> dict[str, np.ndarray]:
    """Per event kind: (N,) bool frames whose time lies inside one of its windows."""
    meta = events_json if isinstance(events_json, dict) else json.loads(Path(events_json).read_text())
    out: dict[str, np.ndarray] = {}
    for e in meta["events"]:
        m = (times >= e["start"]) & (times <= e["end"])
        out[e["kind"]] = out.get(e["kind"], np.zeros(len(times), bool)) | m
    return out


def compare(gt: dict[str, np.ndarray], an: dict[str, np.ndarray], events_json: str | Path | dict) -> dict:
    """gt / an: `read_analysis_csv` dicts. Returns {"detected": fraction of frames with a face,
    "au": {AU: {"r": r, "gt_std": .., "an_std": ..}}, "events": [{kind, au, in, out, gt_in, gt_out}]}."""
    n = min(len(gt["aus"]), len(an["aus"]))
    ok = an["success"][:n]
    g, a = gt["aus"][:n][ok], an["aus"][:n][ok]
    res: dict = {"detected": float(ok.mean()) if n else 0.0, "frames": n, "au": {}, "events": []}
    for j, au in enumerate(AU_NAMES):
        res["au"][au] = {"r": pearson(g[:, j], a[:, j]), "gt_std": float(g[:, j].std()), "an_std": float(a[:, j].std())}
    res["pose"] = {}
    for k, name in enumerate(["Rx", "Ry", "Rz"]):
        gp, ap = gt["pose_R"][:n][ok, k], an["pose_R"][:n][ok, k]
        res["pose"][name] = {"r": pearson(gp, ap), "mae_deg": float(np.degrees(np.abs(gp - ap).mean()))}
    meta = events_json if isinstance(events_json, dict) else json.loads(Path(events_json).read_text())
    times = (np.arange(n) + 0.5) / float(meta["fps"])
    wins = event_windows(meta, times)
    done = set()
    for e in meta["events"]:
        if e["kind"] in done:
            continue
        done.add(e["kind"])
        inside = wins[e["kind"]][ok]
        # "out" excludes every event window, so another event does not count as baseline
        anywin = np.zeros(len(times), bool)
        for m in wins.values():
            anywin |= m
        outside = ~anywin[ok]
        for au in e["aus"]:
            j = AU_NAMES.index(au)
            res["events"].append({"kind": e["kind"], "au": au,
                                  "an_in": float(a[inside, j].mean()), "an_out": float(a[outside, j].mean()),
                                  "gt_in": float(g[inside, j].mean()), "gt_out": float(g[outside, j].mean())})
    return res


def markdown_table(res: dict) -> str:
    lines = ["| AU | Pearson r (GT vs analyze) | GT std | analyze std |", "|---|---|---|---|"]
    for au, d in res["au"].items():
        r = "n/a (constant)" if np.isnan(d["r"]) else f"{d['r']:.2f}"
        lines.append(f"| {au} | {r} | {d['gt_std']:.3f} | {d['an_std']:.3f} |")
    lines += ["", "| event | AU | analyze in window | analyze outside events | GT in | GT out |", "|---|---|---|---|---|---|"]
    for e in res["events"]:
        lines.append(f"| {e['kind']} | {e['au']} | {e['an_in']:.3f} | {e['an_out']:.3f} | {e['gt_in']:.3f} | {e['gt_out']:.3f} |")
    return "\n".join(lines)
