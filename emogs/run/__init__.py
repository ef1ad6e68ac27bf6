"""The trained-run folder (`RUN/`): its layout, format version, config, weights, cameras, plate, metrics,
benchmarks and the migration of older runs. Training writes through it; `Avatar`, `eval` and `export`
read through it; nothing else opens files in a run folder."""
from emogs import RUN_FORMAT_VERSION
from emogs.run.folder import RunFolder, open_run

__all__ = ["RUN_FORMAT_VERSION", "RunFolder", "open_run"]
