"""`emogs eval-table`: the ablation table (mean and spread over seeds, per speaker and configuration) rebuilt
from saved run folders.

Per run it reads (only files, no model):
- RUN/config.json: `model.variant`, `model.kind`, `seed`, `loss.sync`, `loss.au` (a configuration is
  the variant, the model kind and whether L_sync / L_AU were on; seeds are what varies inside one);
- RUN/dataset.json: the training dataset's folder, whose name is the speaker (a leading `ds_` dropped);
- RUN/metrics.json (written by training): PSNR on the whole frame composited over the plate (ours), PSNR
  of the field's protocol (`field`: the head pasted by its alpha onto the true frame), LPIPS;
- RUN/<eval_dir>/metrics.json (`emogs eval RUN`, optional): our lip-sync expert's `lipsync_score` (cosine
  at offset 0) and `lipsync_conf`, AUE-U, AUE-L, AU-Jerk (MediaPipe-based AUs, emogs.eval.au_metrics);
- RUN/<controls_dir>/results.json (`emogs eval-controls RUN --standard [--au-noise SD]`, optional): the
  measured rise of AU01 AU02 AU04 AU06 AU09 driven to 1.0 (stress test 1) and the AU-Jerk of the render
  under frame-level noise on the AU track, against the plain render's (stress test 2).
Cells are mean +- sample sd over the runs of a group (n in its own column); a missing value is n/a and a
group's mean is over the runs that have it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emogs.errors import InputError

# (key, header, source, path inside the source, digits)
COLUMNS = [
    ("psnr", "PSNR (ours, full frame)", "train", ("full", "psnr"), 2),
    ("psnr_field", "PSNR (field protocol)", "train", ("field", "psnr"), 2),
    ("psnr_face", "PSNR face", "train", ("face", "psnr"), 2),
    ("lpips", "LPIPS", "train", ("full", "lpips"), 4),
    ("lipsync_score", "lipsync score", "eval", ("lipsync_score",), 3),
    ("lipsync_conf", "lipsync conf (GT)", "eval", ("lipsync_conf",), 3),
    ("aue_upper", "AUE-U", "eval", ("aue_upper",), 3),
    ("aue_lower", "AUE-L", "eval", ("aue_lower",), 3),
    ("au_jerk", "AU-Jerk (GT)", "eval", ("au_jerk",), 4),
]
GT_OF = {"lipsync_conf": ("lipsync_conf_gt",), "au_jerk": ("au_jerk_gt",)}
STRESS_AUS = ("AU01", "AU02", "AU04", "AU06", "AU09")
PAPER_FULL = "EmoZone-Talker paper, full model (its own data and metric models; Sync is SyncNet's, not ours): " \
             "PSNR 33.96, LPIPS 0.034, Sync 5.71, AUE-U 0.143, AUE-L 0.231, AU-Jerk 0.095"


@dataclass
class RunRow:
    run: str
    speaker: str
    config: str
    seed: int
    values: dict[str, float] = field(default_factory=dict)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable ({type(e).__name__})") from None


def _get(d: Any, keys: tuple[str, ...]) -> float:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return float("nan")
        d = d[k]
    return float(d) if isinstance(d, (int, float)) and not isinstance(d, bool) and d is not None else float("nan")


def config_label(cfg: dict[str, Any]) -> str:
    """'full (mesh +L_sync +L_AU)': the variant, the model kind and the expert losses that were on."""
    m, lo = cfg.get("model", {}), cfg.get("loss", {})
    extra = [x for x, k in (("+L_sync", "sync"), ("+L_AU", "au")) if float(lo.get(k, 0) or 0) > 0]
    return f"{m.get('variant', '?')} ({' '.join([m.get('kind', 'free')] + extra)})"


def read_run(run: Path, eval_dir: str = "eval_test", controls_dir: str = "eval_controls") -> RunRow:
    run = Path(run)
    for f in ("config.json", "metrics.json"):
        if not (run / f).is_file():
            raise InputError(f"{run}: no {f} (not a finished emogs run)")
    cfg = _read(run / "config.json")
    ds = _read(run / "dataset.json") if (run / "dataset.json").is_file() else {}
    root = Path(str(ds.get("root") or run.name))
    speaker = root.name[3:] if root.name.startswith("ds_") else root.name
    train = _read(run / "metrics.json")
    ev = _read(run / eval_dir / "metrics.json") if (run / eval_dir / "metrics.json").is_file() else {}
    row = RunRow(str(run), speaker, config_label(cfg), int(cfg.get("seed", 0)))
    for key, _, src, path, _ in COLUMNS:
        row.values[key] = _get(train if src == "train" else ev, path)
        if key in GT_OF:
            row.values[key + "_gt"] = _get(ev, GT_OF[key])
    res = run / controls_dir / "results.json"
    if res.is_file():
        cond = _read(res).get("conditions", {})
        for au in STRESS_AUS:
            row.values[f"rise_{au}"] = _get(cond, (au, "effect"))
        noisy = [v for v in cond.values() if isinstance(v, dict) and v.get("kind") == "noise"]
        if noisy:
            row.values["noise_jerk"] = _get(noisy[0], ("au_jerk",))
            row.values["noise_jerk_plain"] = _get(noisy[0], ("au_jerk_plain",))
            row.values["noise_jerk_input"] = _get(noisy[0], ("au_jerk_received",))
    return row


def _cell(xs: list[float], digits: int) -> str:
    x = np.asarray([v for v in xs if np.isfinite(v)], np.float64)
    if not len(x):
        return "n/a"
    if len(x) == 1:
        return f"{x[0]:.{digits}f}"
    return f"{x.mean():.{digits}f} +- {x.std(ddof=1):.{digits}f}"


def _stats(xs: list[float]) -> dict[str, Any]:
    x = np.asarray([v for v in xs if np.isfinite(v)], np.float64)
    return dict(n=int(len(x)), mean=float(x.mean()) if len(x) else None,
                sd=float(x.std(ddof=1)) if len(x) > 1 else None)


def group(rows: list[RunRow]) -> dict[tuple[str, str], list[RunRow]]:
    """Runs by (speaker, configuration), in first-seen order; seeds sorted."""
    out: dict[tuple[str, str], list[RunRow]] = {}
    for r in rows:
        out.setdefault((r.speaker, r.config), []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r.seed)
    return out


def build_table(rows: list[RunRow]) -> tuple[str, dict[str, Any]]:
    """Markdown tables and their numbers (JSON-ready) for the rows of `read_run`."""
    g = group(rows)
    L = ["| speaker | configuration | seeds | " + " | ".join(h for _, h, *_ in COLUMNS) + " |",
         "|---|---|---|" + "---|" * len(COLUMNS)]
    data: dict[str, Any] = {"groups": [], "paper_full_model": PAPER_FULL}
    for (spk, conf), rs in g.items():
        cells = []
        gd: dict[str, Any] = dict(speaker=spk, configuration=conf, seeds=[r.seed for r in rs], runs=[r.run for r in rs])
        for key, _, _, _, dg in COLUMNS:
            c = _cell([r.values[key] for r in rs], dg)
            gd[key] = _stats([r.values[key] for r in rs])
            if key in GT_OF:
                gt = _cell([r.values[key + "_gt"] for r in rs], dg)
                gd[key + "_gt"] = _stats([r.values[key + "_gt"] for r in rs])
                c = f"{c} ({gt})"
            cells.append(c)
        L.append(f"| {spk} | {conf} | {len(rs)} ({', '.join(str(r.seed) for r in rs)}) | " + " | ".join(cells) + " |")
        data["groups"].append(gd)
    L += ["", PAPER_FULL + "."]
    if any(f"rise_{STRESS_AUS[0]}" in r.values for r in rows):
        L += ["", "Stress test 1: measured rise of each upper-face AU driven to 1.0 for 4 s (`emogs eval-controls "
              "--standard`: edit minus plain render, MediaPipe-based AUs)", "",
              "| speaker | configuration | seeds | " + " | ".join(STRESS_AUS) + " |", "|---|---|---|" + "---|" * len(STRESS_AUS)]
        for (spk, conf), rs in g.items():
            have = [r for r in rs if f"rise_{STRESS_AUS[0]}" in r.values]
            if have:
                L.append(f"| {spk} | {conf} | {len(have)} | " + " | ".join(
                    _cell([r.values[f"rise_{a}"] for r in have], 2) for a in STRESS_AUS) + " |")
                for gd in data["groups"]:
                    if (gd["speaker"], gd["configuration"]) == (spk, conf):
                        gd.update({f"rise_{a}": _stats([r.values[f"rise_{a}"] for r in have]) for a in STRESS_AUS})
    if any("noise_jerk" in r.values for r in rows):
        L += ["", "Stress test 2: frame-level Gaussian noise on the AU track (`emogs eval-controls --au-noise SD`): "
              "AU-Jerk of the render's measured AUs, of the plain render's, and of the noisy track the model received",
              "", "| speaker | configuration | seeds | AU-Jerk, noisy AU input | plain render | noisy track itself |",
              "|---|---|---|---|---|---|"]
        for (spk, conf), rs in g.items():
            have = [r for r in rs if "noise_jerk" in r.values]
            if have:
                L.append(f"| {spk} | {conf} | {len(have)} | " + " | ".join(
                    _cell([r.values[k] for r in have], 4) for k in ("noise_jerk", "noise_jerk_plain", "noise_jerk_input"))
                    + " |")
                for gd in data["groups"]:
                    if (gd["speaker"], gd["configuration"]) == (spk, conf):
                        gd.update({k: _stats([r.values[k] for r in have])
                                   for k in ("noise_jerk", "noise_jerk_plain", "noise_jerk_input")})
    L += ["", "Cells: mean +- sample sd over seeds (a single run: its value); n/a: not measured. PSNR (ours): the "
          "whole frame composited over the plate; field protocol: the head pasted by its rendered alpha onto the "
          "true frame (ER-NeRF / TalkingGaussian). lipsync: our own expert (docs/lipsync.md), not SyncNet; "
          "(GT): the same measure on the ground-truth video. AUE / AU-Jerk: MediaPipe-based AUs (emogs.face.aus)."]
    return "\n".join(L) + "\n", data


def eval_table(runs: list[str | Path], out: str | Path, eval_dir: str = "eval_test",
               controls_dir: str = "eval_controls") -> Path:
    """Read every run, write OUT (markdown) and OUT with .json (the numbers); returns OUT."""
    from emogs.io.atomic import write_json, write_text

    if not runs:
        raise InputError("give at least one run folder")
    rows = [read_run(Path(r), eval_dir, controls_dir) for r in runs]
    md, data = build_table(rows)
    out = Path(out)
    write_text(out, md)
    write_json(out.with_suffix(".json"), data)
    return out
