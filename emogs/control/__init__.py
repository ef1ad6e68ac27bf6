"""emogs.control: user expression and pose requests -> per-frame tracks for `emogs render`.

    from emogs.control import build_plan
    plan = build_plan(num_frames, au=["AU01=1.0@2-4"], emotion="happy:0.6", default_au=mean_aus)
    plan.au (F, 17), plan.mask (F, 17), plan.resolve_pose(train_world_to_cam).world_to_cam (F, 4, 4)

Imports are lazy so `emogs --help` (which builds the render parser through cli_args) stays instant.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ControlPlan", "build_plan"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from emogs.control import plan

        return getattr(plan, name)
    raise AttributeError(f"module 'emogs.control' has no attribute {name!r}")
