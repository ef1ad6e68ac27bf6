"""Label-map videos: per-frame uint8 (H, W) maps stored losslessly as FFV1 gray8 in Matroska."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from emogs.io.atomic import atomic_path


class LabelWriter:
    """Streaming FFV1 writer; atomic (temp file renamed on `close(ok=True)`). Use as a context manager."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float = 25) -> None:
        import av

        self._ctx = atomic_path(Path(path))
        tmp = self._ctx.__enter__()
        self._c = av.open(str(tmp), mode="w", format="matroska")
        self._s = self._c.add_stream("ffv1", rate=Fraction(fps).limit_denominator(1001))
        self._s.width, self._s.height, self._s.pix_fmt = width, height, "gray"
        self._s.options = {"level": "3", "g": "1", "coder": "1", "context": "1", "slices": "4"}
        self.count = 0

    def write(self, labels: np.ndarray) -> None:
        """labels (H, W) uint8."""
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(labels, np.uint8), format="gray")
        for pkt in self._s.encode(frame):
            self._c.mux(pkt)
        self.count += 1

    def close(self, ok: bool = True) -> None:
        if ok:
            for pkt in self._s.encode():
                self._c.mux(pkt)
        self._c.close()
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            err = RuntimeError("label writing aborted")
            try:
                self._ctx.__exit__(type(err), err, None)
            except RuntimeError:
                pass

    def __enter__(self) -> "LabelWriter":
        return self

    def __exit__(self, et, ev, tb) -> None:
        self.close(ok=et is None)


def read_labels(path: str | Path) -> Iterator[np.ndarray]:
    """Yield (H, W) uint8 label maps in order (through OpenCV where PyAV is missing: `emogs.io.media`)."""
    from emogs.io.media import backend

    if backend() == "opencv":
        import cv2

        cap = cv2.VideoCapture(str(path))
        cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)
        try:
            while True:
                ok, f = cap.read()
                if not ok:
                    return
                yield np.ascontiguousarray(f if f.ndim == 2 else f[..., 0])
        finally:
            cap.release()
    import av

    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            yield frame.to_ndarray(format="gray")
