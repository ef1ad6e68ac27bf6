"""emogs: audio-driven 3D Gaussian Splatting talking heads with explicit Action Unit control."""
from __future__ import annotations

__version__ = "0.1.0"
DATASET_FORMAT_VERSION = 1
RUN_FORMAT_VERSION = 2  # emogs.run reads 1 and 2

__all__ = ["__version__", "DATASET_FORMAT_VERSION", "RUN_FORMAT_VERSION", "Avatar"]


def __getattr__(name: str):  # lazy: `import emogs` stays light
    if name == "Avatar":
        from emogs.avatar import Avatar

        return Avatar
    raise AttributeError(name)
