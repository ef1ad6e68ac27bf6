"""Prepare stage "tracks": one fixed square crop for the clip, temporal smoothing, crop-space cameras.

Crop policy: centre horizontally on the median face centre and vertically a bit below it (so the crop
holds hair above and shoulders below), side = `face_scale` x the median face height (landmark box,
forehead to chin), shrunk to the largest square that fits the frame and shifted inside it (never
padded), then resized to S x S. All per-frame geometry moves into crop pixels:
`u_crop = (u_src - x0) * S / side` (pixel centres at i + 0.5 on both sides, MediaPipe's convention).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from emogs.data.track import RawTracks, face_height


@dataclass(frozen=True)
class CropBox:
    x0: int
    y0: int
    side: int  # source pixels

    def scale(self, size: int) -> float:
        return size / self.side


def choose_crop(landmarks: np.ndarray, width: int, height: int, face_scale: float = 2.8,
                down_shift: float = 0.3) -> CropBox:
    """Fixed square crop (source px) from tracked landmarks (N, 478, 3) over the clip."""
    fh = float(np.median(face_height(landmarks)))
    cx = float(np.median((landmarks[:, :, 0].min(1) + landmarks[:, :, 0].max(1)) / 2))
    cy = float(np.median((landmarks[:, :, 1].min(1) + landmarks[:, :, 1].max(1)) / 2)) + down_shift * fh
    side = int(round(min(face_scale * fh, width, height)))
    x0 = int(round(np.clip(cx - side / 2, 0, width - side)))
    y0 = int(round(np.clip(cy - side / 2, 0, height - side)))
    return CropBox(x0, y0, side)


def crop_frames(video: Path, box: CropBox, size: int, num_frames: int, fps: float = 25,
                max_seconds: float | None = None, keep: Collection[int] | None = None) -> Iterator[np.ndarray | None]:
    """The dataset's frames: decode `video` at `fps`, crop `box`, resize to `size` (INTER_AREA when
    shrinking, bicubic when enlarging). Yields `num_frames` (S, S, 3) u8 RGB crops; with `keep`, frames
    whose index is not in it are decoded but neither converted nor cropped (None is yielded for them).
    Raises RuntimeError when the video ends early (the tracking pass saw `num_frames`)."""
    import cv2

    from emogs.io.media import read_frames

    interp = cv2.INTER_AREA if box.side >= size else cv2.INTER_CUBIC
    x0, y0, side = box.x0, box.y0, box.side
    i = -1
    for i, frame in enumerate(read_frames(video, fps=fps, max_seconds=max_seconds, raw=True)):
        if i >= num_frames:
            return
        if keep is not None and i not in keep:
            yield None
            continue
        rgb = frame.to_ndarray(format="rgb24")
        yield cv2.resize(rgb[y0:y0 + side, x0:x0 + side], (size, size), interpolation=interp)
    if i + 1 < num_frames:
        raise RuntimeError(f"{video}: decoded {i + 1} frames, tracking saw {num_frames}")


def landmarks_to_crop(landmarks: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """(..., 478, 3) source px -> crop px (z scaled like x)."""
    s = box.scale(size)
    return ((landmarks - np.array([box.x0, box.y0, 0.0], np.float32)) * s).astype(np.float32)


def K_to_crop(K: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """Intrinsics (3, 3) of the source frame -> intrinsics of the S x S crop."""
    s = box.scale(size)
    A = np.array([[s, 0, -box.x0 * s], [0, s, -box.y0 * s], [0, 0, 1.0]])
    return A @ K


def smooth_landmarks(lm: np.ndarray, sigma: float = 0.6) -> np.ndarray:
    """Light temporal Gaussian (sigma in frames) over (N, 478, 3): removes jitter, keeps lip motion."""
    if sigma <= 0 or len(lm) < 3:
        return lm
    return gaussian_filter1d(lm.astype(np.float32), sigma, axis=0, mode="nearest")


def smooth_transforms(tf: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Temporal Gaussian over rigid transforms (N, 4, 4): rotation vectors about the mean rotation,
    translation and scale smoothed separately, then recomposed."""
    if sigma <= 0 or len(tf) < 3:
        return tf
    lin = tf[:, :3, :3]
    scale = np.cbrt(np.abs(np.linalg.det(lin)))  # (N,)
    rot = Rotation.from_matrix(_nearest_rotation(lin / scale[:, None, None]))
    mean = rot.mean()
    rv = (mean.inv() * rot).as_rotvec()  # (N, 3), small angles
    rv = gaussian_filter1d(rv, sigma, axis=0, mode="nearest")
    out = tf.copy()
    s = gaussian_filter1d(scale, sigma, mode="nearest")
    out[:, :3, :3] = (mean * Rotation.from_rotvec(rv)).as_matrix() * s[:, None, None]
    out[:, :3, 3] = gaussian_filter1d(tf[:, :3, 3], sigma, axis=0, mode="nearest")
    return out


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, -1] *= d[..., None]
    return u @ vt


@dataclass
class CropTracks:
    """Final per-frame geometry in crop space (what tracks.npz stores)."""

    landmarks: np.ndarray     # (N, 478, 3) f32 crop px
    world_to_cam: np.ndarray  # (N, 4, 4) f32 OpenCV
    K: np.ndarray             # (3, 3) f32 crop px
    pose_R: np.ndarray        # (N, 3) rad
    pose_T: np.ndarray        # (N, 3) cm


def crop_tracks(rt: RawTracks, box: CropBox, size: int, lm_sigma: float = 0.6,
                pose_sigma: float = 1.5) -> CropTracks:
    """Smooth the (gap-filled) raw tracks and move landmarks and cameras into crop space."""
    from emogs.face.camera import camera_from_transform, head_pose

    tf = smooth_transforms(rt.transform, pose_sigma)
    K_src, _ = camera_from_transform(tf[0], rt.width, rt.height)
    w2c = np.stack([camera_from_transform(t, rt.width, rt.height)[1] for t in tf])  # (N, 4, 4)
    pose_R, pose_T = head_pose(tf)
    lm = landmarks_to_crop(smooth_landmarks(rt.landmarks, lm_sigma), box, size)
    return CropTracks(lm, w2c.astype(np.float32), K_to_crop(K_src, box, size).astype(np.float32),
                      pose_R.astype(np.float32), pose_T.astype(np.float32))
