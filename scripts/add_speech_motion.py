"""Give a finished mesh run trained before the speech stage existed its speech-motion model (the shipped prior
fine-tuned on the run's training split, as `emogs train` now does at the end of every mesh run;
emogs/train/speech.py, docs/speech_motion.md). CPU, well under a minute for a 50-70 s clip.

    python scripts/add_speech_motion.py RUN DATASET [--config-json '{"fine_tune_steps": 300}'] [--force]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from emogs.errors import InputError
    from emogs.train.speech import add_to_run

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished mesh run folder")
    ap.add_argument("dataset", type=Path, help="the DATASET the run was trained on")
    ap.add_argument("--config-json", default=None, help="speech settings (TrainConfig.speech keys) as JSON")
    ap.add_argument("--force", action="store_true", help="replace an existing speech_motion.safetensors")
    a = ap.parse_args(argv)
    try:
        over = json.loads(a.config_json) if a.config_json else None
        rep = add_to_run(a.run, a.dataset, over, force=a.force)
    except (InputError, json.JSONDecodeError) as e:
        print(f"add_speech_motion: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in rep.items() if k != "spread"} | {"spread": rep.get("spread")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
