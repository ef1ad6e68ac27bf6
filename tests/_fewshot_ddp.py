"""Run by tests/test_fewshot_train.py under torchrun (2 processes, gloo on CPU): a few pretraining steps, then
each rank writes its summary (with the sha256 of its weights) to OUT/rank<r>.json."""
import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
from emogs.train.config import build_config  # noqa: E402
from emogs.train.fewshot import pretrain  # noqa: E402

base, out, over = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
datasets = sys.argv[4:]
cfg = build_config("cpu", int(over.pop("iters")), None, over)
s = pretrain(datasets, base, cfg, log=lambda m: None)
(out / f"rank{s['rank']}.json").write_text(json.dumps(s))
