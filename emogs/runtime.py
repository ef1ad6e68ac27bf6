"""Where computation runs: the torch device a command asked for (`resolve_device`), and CPU threads for the
whole process: one decision, made by every `emogs` command and by `Avatar.load` (`configure_threads`).

PyTorch's OpenMP workers wait for each other at the end of every parallel operation. Training and
rasterisation are many small operations, so when another process holds one of the cores, the thread
that is descheduled stalls the others and a run gets tens of times slower than with fewer threads
(docs/errors.md has the measurements). The rule:

    threads = cores this process may use (CPU affinity and cgroup quota)
              - cores other processes keep busy (measured from /proc/stat over `probe_s`), at least 1

`EMOGS_THREADS=N` sets the number outright, and so does `OMP_NUM_THREADS=N` (the usual variable, which
PyTorch reads too). The choice is applied to PyTorch and OpenCV; it is remembered for `REUSE_S` seconds
so a process that loads several things does not measure again.
"""
from __future__ import annotations

import math
import os
import time

REUSE_S = 30.0
_last: dict[str, float] = {}  # "threads", "time"


def usable_cores() -> int:
    """Cores this process may run on: the CPU affinity mask, capped by a cgroup v2 / v1 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, int(math.ceil(quota - 1e-6))))
    return max(1, n)


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup (cpu.max or cfs_quota/period), None when unlimited or unknown."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            q, p = f.read().split()[:2]
            return None if q == "max" else int(q) / int(p)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            q = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            p = int(f.read())
        return None if q <= 0 else q / p
    except (OSError, ValueError):
        return None


def _cpu_ticks() -> tuple[int, int]:
    """(busy ticks of the whole machine, ticks of this process and its threads) from /proc."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    with open("/proc/self/stat") as f:
        st = f.read().rsplit(")", 1)[1].split()
    return sum(v) - idle, int(st[11]) + int(st[12])


def busy_other_cores(probe_s: float = 0.3) -> float | None:
    """Cores kept busy by other processes over the next `probe_s` seconds (None where /proc is missing)."""
    try:
        b0, s0 = _cpu_ticks()
        time.sleep(probe_s)
        b1, s1 = _cpu_ticks()
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, ((b1 - b0) - (s1 - s0)) / hz / probe_s)


def _env_threads() -> int | None:
    for var in ("EMOGS_THREADS", "OMP_NUM_THREADS"):
        if var == "OMP_NUM_THREADS" and _last.get("env_set"):
            continue  # set by apply_threads, not by the user
        v = os.environ.get(var, "").strip()
        if v:
            try:
                return max(1, int(v))
            except ValueError:
                pass
    return None


def pick_threads(probe_s: float = 0.3) -> int:
    """The thread count for this process now (see the module doc)."""
    env = _env_threads()
    if env is not None:
        return env
    n = usable_cores()
    if n == 1:
        return 1
    others = busy_other_cores(probe_s)
    if others is None:
        return n
    return max(1, min(n, int(round(n - others))))


def configure_threads(fresh: bool = False, probe_s: float = 0.3) -> int:
    """Pick the thread count (`pick_threads`) and apply it to PyTorch and OpenCV; returns it. A choice
    made less than REUSE_S seconds ago is reused unless `fresh`."""
    now = time.monotonic()
    if not fresh and "threads" in _last and now - _last["time"] < REUSE_S:
        k = int(_last["threads"])
    else:
        k = pick_threads(probe_s)
        _last.update(threads=k, time=now)
    apply_threads(k)
    return k


def current_threads() -> int:
    """The last choice of `configure_threads` (the usable cores when none was made)."""
    return int(_last.get("threads", 0)) or usable_cores()


def apply_threads(k: int) -> None:
    """Use `k` threads in PyTorch and OpenCV. PyTorch is not imported for this (a second of start-up):
    when it is not loaded yet, OMP_NUM_THREADS is set instead (read when it loads), unless the user set
    that variable."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.get_num_threads() != k:
            torch.set_num_threads(k)
    elif "OMP_NUM_THREADS" not in os.environ or _last.get("env_set"):
        os.environ["OMP_NUM_THREADS"] = str(k)
        _last["env_set"] = 1
    try:
        import cv2

        cv2.setNumThreads(k)
    except ImportError:
        pass


def forget_env() -> None:
    """Drop the OMP_NUM_THREADS that `apply_threads` set (when a command ends; PyTorch, once loaded,
    keeps its thread count), so child processes started later decide for themselves."""
    if _last.pop("env_set", None):
        os.environ.pop("OMP_NUM_THREADS", None)


def resolve_device(name: str = "auto"):
    """'auto' | 'cpu' | 'cuda' (| 'cuda:N') -> torch.device; InputError when CUDA is asked for and absent."""
    import torch

    from emogs.errors import InputError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or name.split(":")[0] not in ("cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name} asked for but no CUDA device is available")
    return torch.device(name)
