"""`emogs eval-table` on fake run folders: grouping by speaker and configuration over seeds, mean and sample
sd, both PSNR protocols, the eval and eval-controls numbers when present, n/a when not."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emogs.cli import main
from emogs.eval.table import read_run


def fake_run(root: Path, name: str, speaker: str, variant: str, seed: int, psnr: float, sync: float = 0.0,
             eval_metrics: dict | None = None, controls: dict | None = None) -> Path:
    r = root / name
    r.mkdir(parents=True)
    (r / "config.json").write_text(json.dumps({"seed": seed, "model": {"variant": variant, "kind": "mesh"},
                                               "loss": {"sync": sync, "au": 0.05 if sync else 0.0}}))
    (r / "dataset.json").write_text(json.dumps({"root": f".gpu/ds_{speaker}"}))
    (r / "metrics.json").write_text(json.dumps({"full": {"psnr": psnr, "lpips": 0.05 + seed / 100},
                                                "face": {"psnr": psnr + 3}, "field": {"psnr": psnr + 5}}))
    if eval_metrics is not None:
        (r / "eval_test").mkdir()
        (r / "eval_test" / "metrics.json").write_text(json.dumps(eval_metrics))
    if controls is not None:
        (r / "eval_controls").mkdir()
        (r / "eval_controls" / "results.json").write_text(json.dumps({"conditions": controls}))
    return r


def test_table_groups_seeds_and_computes_mean_and_sd(tmp_path, capsys):
    ev = lambda s: {"lipsync_score": 0.3 + s / 10, "lipsync_conf": 0.2, "lipsync_conf_gt": 0.5, "aue_upper": 0.04,
                    "aue_lower": 0.02, "au_jerk": 0.03, "au_jerk_gt": 0.028}
    runs = [fake_run(tmp_path, f"macron_s{s}", "macron", "full", s, 28.0 + s, sync=0.1, eval_metrics=ev(s),
                     controls={"AU01": {"kind": "au", "effect": 0.1 * s}, "AU02": {"kind": "au", "effect": 0.2},
                               "AU04": {"kind": "au", "effect": 0.3}, "AU06": {"kind": "au", "effect": None},
                               "AU09": {"kind": "au", "effect": 0.4},
                               "au_noise_0.1": {"kind": "noise", "au_jerk": 0.05, "au_jerk_plain": 0.03,
                                                "au_jerk_received": 0.08}})
            for s in (0, 1, 2)]
    runs += [fake_run(tmp_path, "macron_audio", "macron", "audio", 0, 27.0),
             fake_run(tmp_path, "acosta_s0", "acosta", "full", 0, 25.0, sync=0.1)]
    out = tmp_path / "t" / "table.md"
    assert main(["eval-table", *map(str, runs), "-o", str(out)]) == 0
    md = out.read_text()
    data = json.loads(out.with_suffix(".json").read_text())
    g = {(x["speaker"], x["configuration"]): x for x in data["groups"]}
    assert set(g) == {("macron", "full (mesh +L_sync +L_AU)"), ("macron", "audio (mesh)"),
                      ("acosta", "full (mesh +L_sync +L_AU)")}
    full = g[("macron", "full (mesh +L_sync +L_AU)")]
    assert full["seeds"] == [0, 1, 2] and full["psnr"]["n"] == 3
    assert full["psnr"]["mean"] == pytest.approx(29.0) and full["psnr"]["sd"] == pytest.approx(1.0)
    assert full["psnr_field"]["mean"] == pytest.approx(34.0)
    assert full["lipsync_score"]["mean"] == pytest.approx(0.4) and full["lipsync_conf_gt"]["mean"] == pytest.approx(0.5)
    assert full["rise_AU01"]["sd"] == pytest.approx(np.std([0, 0.1, 0.2], ddof=1))
    assert full["rise_AU06"]["n"] == 0 and full["noise_jerk"]["mean"] == pytest.approx(0.05)
    assert "29.00 +- 1.00" in md and "34.00 +- 1.00" in md
    audio = g[("macron", "audio (mesh)")]
    assert audio["lipsync_score"]["n"] == 0 and audio["psnr"]["sd"] is None  # no eval report, one seed
    row = next(x for x in md.splitlines() if x.startswith("| macron | audio"))
    assert "n/a" in row and "| 27.00 |" in row
    assert "Stress test 1" in md and "Stress test 2" in md and "33.96" in md


def test_table_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "notarun").mkdir()
    assert main(["eval-table", str(tmp_path / "notarun"), "-o", str(tmp_path / "t.md")]) == 2
    assert "no config.json" in capsys.readouterr().err
    r = fake_run(tmp_path, "r", "m", "full", 0, 20.0)
    assert main(["eval-table", str(r), "-o", str(tmp_path / "t.json")]) == 2
    assert read_run(r).speaker == "m" and np.isnan(read_run(r).values["aue_upper"])
