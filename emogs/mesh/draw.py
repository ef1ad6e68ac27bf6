"""Shaded pictures of a face mesh through an OpenCV camera, for reports and checks (CPU, numpy).

Uses the z-buffer triangle rasteriser of `emogs.synth.raster` (vectorised numpy, ~20-40 ms for the ICT
face region at 512 px). Pixel centres at (i + 0.5, j + 0.5), as everywhere in emogs.
"""
from __future__ import annotations

import numpy as np

LIGHT = np.array([-0.35, -0.45, -1.0])  # towards the light, camera coordinates (upper left, in front)


def render_mesh(verts: np.ndarray, triangles: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray, width: int,
                height: int, color=(0.82, 0.74, 0.68), cull: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mesh (V, 3) world cm -> (rgb (H, W, 3) float32 in [0, 1], coverage (H, W) bool), Lambert-shaded
    with a headlight-like key light. `cull`: drop back-facing triangles (outward counter-clockwise)."""
    from emogs.synth import raster

    R, t = np.asarray(world_to_cam, np.float64)[:3, :3], np.asarray(world_to_cam, np.float64)[:3, 3]
    cam = (np.asarray(verts, np.float64) @ R.T + t).astype(np.float32)
    scr = raster.project(cam, np.asarray(K, np.float32))
    tri = np.asarray(triangles, np.int64)
    frag = raster.rasterize(scr, tri, width, height, cull=np.full(len(tri), cull))
    img = np.zeros((height * width, 3), np.float32)
    cov = np.zeros(height * width, bool)
    if len(frag.pix):
        n = np.cross(cam[tri[:, 1]] - cam[tri[:, 0]], cam[tri[:, 2]] - cam[tri[:, 0]])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        d = LIGHT / np.linalg.norm(LIGHT)
        shade = 0.25 + 0.75 * np.abs(n @ d)  # two-sided
        img[frag.pix] = shade[frag.tri, None] * np.asarray(color, np.float32)
        cov[frag.pix] = True
    return img.reshape(height, width, 3), cov.reshape(height, width)


def overlay_mesh(rgb: np.ndarray, verts: np.ndarray, triangles: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray,
                 alpha: float = 0.55, color=(0.82, 0.74, 0.68)) -> np.ndarray:
    """Frame (H, W, 3) uint8 with the shaded mesh blended over it (alpha where the mesh covers)."""
    h, w = rgb.shape[:2]
    img, cov = render_mesh(verts, triangles, K, world_to_cam, w, h, color)
    out = rgb.astype(np.float32) / 255.0
    out[cov] = (1 - alpha) * out[cov] + alpha * img[cov]
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def draw_points(rgb: np.ndarray, points: np.ndarray, color=(255, 255, 0), radius: int = 1) -> np.ndarray:
    """Copy of `rgb` (H, W, 3) uint8 with dots at pixel positions `points` (P, 2) (pixel centres at i + 0.5)."""
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    for x, y in np.asarray(points, np.float64):
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(out, (int(round(x * 4 - 2)), int(round(y * 4 - 2))), radius * 4, color, -1, cv2.LINE_AA, 2)
    return out
