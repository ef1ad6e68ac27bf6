"""`emogs demo`: synth -> prepare -> train -> render (new speech, AU edit, emotion) -> check -> eval -> index.html.

See `emogs.demo.pipeline` for the stages and docs/demo.md for the output folder."""
from emogs.demo.pipeline import DemoSettings, make_settings, run_demo, train_config

__all__ = ["DemoSettings", "make_settings", "run_demo", "train_config"]
