"""A small synthetic talking-head dataset (in memory) with the TalkingHeadDataset item dict, for model and
training tests that must not wait on `emogs prepare`: the MediaPipe canonical face mesh painted from
slightly moving cameras, a mouth that opens with the "audio" signal, label maps from the same polygons."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from emogs.face.camera import GL_TO_CV, canonical_face_mesh, intrinsics, project

OUTER_LIPS = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
LEFT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
RIGHT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]


def _rot(ax: float, ay: float) -> np.ndarray:
    cx, sx, cy, sy = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return rx @ ry


class SynthHeadDataset:
    """`n` frames of size `size`; `openness[i]` in [0, 1] drives the mouth, the audio rows and AU25/26."""

    def __init__(self, n: int = 36, size: int = 96, seed: int = 0, start: int = 0, audio_window: int = 8,
                 au_window: int = 9, audio_dim: int = 20) -> None:
        rng = np.random.default_rng(seed)
        self.n, self.size, self.start = n, size, start
        t = np.arange(start, start + n)
        self.openness = np.clip(0.5 + 0.5 * np.sin(t * 0.7) * np.cos(t * 0.23), 0, 1)
        self.verts, self.faces, _ = canonical_face_mesh()
        self.K = intrinsics(size, size)
        self.w2c = []
        for i in t:
            m = np.eye(4)
            m[:3, :3] = _rot(0.05 * math.sin(i * 0.3), 0.08 * math.sin(i * 0.17))
            m[:3, 3] = [0.3 * math.sin(i * 0.2), 0.0, -42.0]
            self.w2c.append(GL_TO_CV @ m)
        rows = np.repeat(self.openness, 4)  # 100 Hz rows: frame i <-> rows [4i, 4i+4)
        basis = rng.normal(size=audio_dim)
        self.audio_rows = (rows[:, None] * basis[None] + 0.05 * rng.normal(size=(len(rows), audio_dim))).astype(np.float32)
        self.audio_window, self.au_window = audio_window, au_window
        aus = 0.3 + 0.2 * np.sin(t[:, None] * rng.uniform(0.1, 0.5, 17) + rng.uniform(0, 6, 17))
        aus[:, 14] = aus[:, 15] = self.openness  # AU25, AU26
        self.aus = np.clip(aus, 0, 1).astype(np.float32)
        # the lip-sync expert's audio rows (50 Hz x 512, like audio_whisper.npy) for clip frames 0 .. start + n
        wrows = np.repeat(np.clip(0.5 + 0.5 * np.sin(np.arange(start + n) * 0.7) * np.cos(np.arange(start + n) * 0.23), 0, 1), 2)
        self.expert_audio_rows = (wrows[:, None] * rng.normal(size=512)[None]
                                  + 0.1 * rng.normal(size=(len(wrows), 512))).astype(np.float32)
        bg = np.full((size, size, 3), 0.55, np.float32)
        bg[int(0.82 * size):, int(0.15 * size):int(0.85 * size)] = (0.2, 0.25, 0.5)  # torso
        self.background = bg

    def __len__(self) -> int:
        return self.n

    def landmarks(self, i: int) -> np.ndarray:
        """(478, 3) MediaPipe-indexed landmarks in pixels: the painted mesh's projected vertices (iris 0)."""
        lm = np.zeros((478, 3), np.float32)
        lm[:468, :2] = project(self.verts.astype(np.float64), self.K, self.w2c[i])
        return lm

    def _draw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.size
        uv = project(self.verts.astype(np.float64), self.K, self.w2c[i])  # (468, 2)
        img = self.background.copy()
        lab = np.zeros((s, s), np.uint8)
        lab[int(0.82 * s):, int(0.15 * s):int(0.85 * s)] = 1
        pts = lambda ids: np.round(uv[ids] * 4).astype(np.int32)  # 2-bit subpixel for cv2 shift=2
        hull = cv2.convexHull(np.round(uv * 4).astype(np.int32))
        c = uv.mean(0)
        cv2.ellipse(img, (int(c[0] * 4), int(c[1] * 4 - 30)), (int(s * 0.3 * 4), int(s * 0.36 * 4)), 0, 0, 360,
                    (0.25, 0.15, 0.1), -1, shift=2)  # hair
        cv2.ellipse(lab, (int(c[0] * 4), int(c[1] * 4 - 30)), (int(s * 0.3 * 4), int(s * 0.36 * 4)), 0, 0, 360, 2, -1,
                    shift=2)
        cv2.fillPoly(img, [hull], (0.85, 0.65, 0.55), shift=2)
        cv2.fillPoly(lab, [hull], 3, shift=2)
        nose_y = uv[1, 1]
        up = (lab == 3) & (np.arange(s)[:, None] < nose_y)
        lab[up] = 4
        for eye in (LEFT_EYE, RIGHT_EYE):
            cv2.fillPoly(img, [pts(eye)], (0.15, 0.1, 0.1), shift=2)
        cv2.fillPoly(img, [pts(OUTER_LIPS)], (0.75, 0.3, 0.3), shift=2)
        cv2.fillPoly(lab, [pts(OUTER_LIPS)], 5, shift=2)
        mc = 0.5 * (uv[13] + uv[14])
        w = np.linalg.norm(uv[78] - uv[308])
        h = max(0.5, self.openness[i] * 0.3 * w)
        axes = (int(w * 0.4 * 4), int(h * 4))
        cv2.ellipse(img, (int(mc[0] * 4), int(mc[1] * 4)), axes, 0, 0, 360, (0.1, 0.02, 0.02), -1, shift=2)
        cv2.ellipse(lab, (int(mc[0] * 4), int(mc[1] * 4)), axes, 0, 0, 360, 6, -1, shift=2)
        return img, lab

    def __getitem__(self, i: int) -> dict:
        img, lab = self._draw(i)
        r0 = 4 * i + 2 - self.audio_window  # centred on the frame's 4 rows
        ridx = np.clip(np.arange(r0, r0 + 2 * self.audio_window), 0, len(self.audio_rows) - 1)
        aidx = np.clip(np.arange(i - self.au_window // 2, i + self.au_window // 2 + 1), 0, self.n - 1)
        return dict(index=np.int64(self.start + i), image=img, labels=lab, world_to_cam=self.w2c[i].astype(np.float32),
                    K=self.K.astype(np.float32), audio=self.audio_rows[ridx], au=self.aus[i],
                    au_window=self.aus[aidx], blendshapes=np.zeros(52, np.float32),
                    landmarks=self.landmarks(i))


def synth_splits(n_train: int = 36, n_test: int = 6, size: int = 96):
    return SynthHeadDataset(n_train, size), SynthHeadDataset(n_test, size, start=n_train)


def test_synth_dataset_is_consistent():
    ds = SynthHeadDataset(4, 64)
    it = ds[0]
    assert it["image"].shape == (64, 64, 3) and it["labels"].shape == (64, 64)
    assert it["audio"].shape == (16, 20) and it["au_window"].shape == (9, 17)
    assert set(np.unique(it["labels"])) >= {0, 1, 2, 3, 4, 5}
