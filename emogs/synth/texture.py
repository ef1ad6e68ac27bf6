"""Procedural textures: skin with brows, lips and lid lines painted in the face mesh's UV space, and an
eye (sclera, iris, pupil). Both live in one atlas image (float32 RGB in [0, 1]):

    rows [0, FACE_TEX)                      face texture, pixel = uv * FACE_TEX
    rows [FACE_TEX, FACE_TEX + EYE_TEX)     eye texture (front view of the eyeball), columns [0, EYE_TEX)
"""
from __future__ import annotations

import functools

import numpy as np

from emogs.synth import mesh as M

FACE_TEX = 512
EYE_TEX = 128
EYE_ORIGIN = (0, FACE_TEX)  # atlas pixel (x, y) of the eye texture's corner
SKIN = np.array([0.80, 0.59, 0.48], np.float32)


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    import cv2

    n = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return n / (n.std() + 1e-8)


def _poly(img: np.ndarray, pts: np.ndarray, value: float = 1.0) -> None:
    import cv2

    cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], value, lineType=cv2.LINE_AA, shift=4)


def _lerp(base: np.ndarray, color, alpha: np.ndarray) -> np.ndarray:
    return base * (1 - alpha[..., None]) + np.asarray(color, np.float32) * alpha[..., None]


def face_texture(seed: int = 0) -> np.ndarray:
    """(FACE_TEX, FACE_TEX, 3) skin texture in the canonical mesh's UV space."""
    import cv2

    rng = np.random.default_rng(seed + 1)
    S = FACE_TEX
    _, _, uv = M.canonical_mesh()
    p = uv * S  # (468, 2) texture pixels
    tex = np.tile(SKIN, (S, S, 1))
    tex *= (1 + 0.035 * _noise(rng, (S, S), 18))[..., None]                   # blotches
    tex *= (1 + 0.02 * _noise(rng, (S, S), 1.2))[..., None]                   # pores
    tex[..., 0] *= 1 + 0.015 * _noise(rng, (S, S), 6)                         # slight redness variation
    # cheeks and nose tip a little redder
    red = np.zeros((S, S), np.float32)
    for i, r in ((205, 40), (425, 40), (4, 18)):
        cv2.circle(red, tuple(int(c) for c in p[i]), r, 1.0, -1)
    red = cv2.GaussianBlur(red, (0, 0), 18) * 0.5
    tex = _lerp(tex, (0.82, 0.50, 0.45), red)
    # lips
    lips = np.zeros((S, S), np.float32)
    _poly(lips, p[M.LIPS_OUTER])
    lips = cv2.GaussianBlur(lips, (0, 0), 1.6)
    lip_col = np.array([0.66, 0.34, 0.33], np.float32) * (1 + 0.05 * _noise(rng, (S, S), 2))[..., None]
    tex = tex * (1 - lips[..., None]) + lip_col * lips[..., None]
    # brows: filled shape plus hair strokes
    brows = np.zeros((S, S), np.float32)
    for up, lo in ((M.RIGHT_BROW_UPPER, M.RIGHT_BROW_LOWER), (M.LEFT_BROW_UPPER, M.LEFT_BROW_LOWER)):
        _poly(brows, np.concatenate([p[up], p[lo][::-1]]))
    strokes = np.zeros((S, S), np.float32)
    ys, xs = np.nonzero(cv2.dilate(brows, np.ones((5, 5))) > 0.5)
    for k in rng.choice(len(ys), size=min(len(ys), 900), replace=False):
        x, y = xs[k], ys[k]
        side = 1 if x > S / 2 else -1
        dx, dy = side * rng.uniform(4, 8), -rng.uniform(1, 3)
        cv2.line(strokes, (int(x), int(y)), (int(x + dx), int(y + dy)), 1.0, 1, cv2.LINE_AA)
    brows = np.clip(cv2.GaussianBlur(brows, (0, 0), 2.0) * 0.8 + strokes * 0.5 * (brows > 0.1), 0, 0.95)
    tex = _lerp(tex, (0.16, 0.11, 0.08), brows)
    # upper lid: darker skin, lash line; lower lid: faint line
    lids = np.zeros((S, S), np.float32)
    lash = np.zeros((S, S), np.float32)
    for eye, up, lo in ((M.RIGHT_EYE, M.RIGHT_UPPER_LID, M.RIGHT_LOWER_LID),
                        (M.LEFT_EYE, M.LEFT_UPPER_LID, M.LEFT_LOWER_LID)):
        c = p[eye].mean(0)
        _poly(lids, c + (p[eye] - c) * np.array([1.25, 1.9]))
        pts = np.round(p[[eye[0]] + up + [eye[8]]] * 16).astype(np.int32)
        cv2.polylines(lash, [pts], False, 1.0, 5, cv2.LINE_AA, shift=4)
        pts = np.round(p[[eye[0]] + lo + [eye[8]]] * 16).astype(np.int32)
        cv2.polylines(lash, [pts], False, 0.45, 2, cv2.LINE_AA, shift=4)
    lids = cv2.GaussianBlur(lids, (0, 0), 6) * 0.35
    tex = _lerp(tex, (0.58, 0.40, 0.36), lids)
    tex = _lerp(tex, (0.10, 0.07, 0.06), cv2.GaussianBlur(lash, (0, 0), 0.8))
    # nostrils: dark under the nose wings
    nos = np.zeros((S, S), np.float32)
    for i in (98, 327):
        q = 0.55 * p[i] + 0.45 * p[2]
        cv2.ellipse(nos, (int(q[0]), int(q[1] - 2)), (7, 4), 0, 0, 360, 1.0, -1)
    tex = _lerp(tex, (0.25, 0.13, 0.11), cv2.GaussianBlur(nos, (0, 0), 2.5) * 0.8)
    return np.clip(tex, 0, 1).astype(np.float32)


def eye_texture(seed: int = 0) -> np.ndarray:
    """(EYE_TEX, EYE_TEX, 3): front view of an eyeball, unit sphere x, y -> texture (iris at the centre)."""
    rng = np.random.default_rng(seed + 2)
    n = EYE_TEX
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / n * 2 - 1  # unit-sphere x, y (y down in the texture)
    r = np.hypot(x, y)
    ang = np.arctan2(y, x)
    sclera = np.array([0.93, 0.90, 0.86], np.float32) * (1 - 0.08 * r[..., None] ** 2)
    iris_r, pupil_r = 0.46, 0.18
    streak = 1 + 0.12 * np.sin(ang * 37 + rng.uniform(0, 6)) * np.sin(ang * 11)
    iris = np.array([0.36, 0.24, 0.14], np.float32) * (streak * (0.75 + 0.5 * (r / iris_r)))[..., None]
    iris = np.where((r > iris_r - 0.05)[..., None], iris * 0.55, iris)  # limbal ring
    img = np.where((r < iris_r)[..., None], iris, sclera)
    img = np.where((r < pupil_r)[..., None], np.array([0.03, 0.02, 0.02], np.float32), img)
    hl = np.exp(-(((x + 0.17) ** 2 + (y + 0.2) ** 2) / 0.004))  # catch light
    img = img + hl[..., None] * 0.8
    return np.clip(img, 0, 1).astype(np.float32)


@functools.lru_cache(maxsize=2)
def atlas(seed: int = 0) -> np.ndarray:
    """(FACE_TEX + EYE_TEX, FACE_TEX, 3) float32 atlas."""
    a = np.zeros((FACE_TEX + EYE_TEX, FACE_TEX, 3), np.float32)
    a[:FACE_TEX] = face_texture(seed)
    a[FACE_TEX:, :EYE_TEX] = eye_texture(seed)
    return a
