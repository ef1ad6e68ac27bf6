"""Training data in memory: every frame of a split at the training resolution, as tensors on the device.

Built from any dataset object with the `TalkingHeadDataset` item dict (`image`, `labels`, `world_to_cam`,
`K`, `audio`, `au_window`, `index`) and a `background` attribute, so tests can use small in-memory fakes.
Images are kept as uint8 (a 1750-frame 512 px clip is ~1.4 GB) and converted per batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

HEAD_LABELS = (2, 3, 4, 5, 6)  # head-other, synergy, expression, lips, mouth interior
LIP_LABELS = (5, 6)


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def resize_labels(lab: np.ndarray, size: int) -> np.ndarray:
    if lab.shape[0] == size and lab.shape[1] == size:
        return lab
    return cv2.resize(lab, (size, size), interpolation=cv2.INTER_NEAREST)


def scale_K(K: np.ndarray, s: float) -> np.ndarray:
    """Intrinsics for an image scaled by s (pixel-centre convention: continuous coords scale linearly)."""
    K = np.array(K, np.float64)
    K[:2] *= s
    return K


def _to_u8(img: np.ndarray) -> np.ndarray:
    return img if img.dtype == np.uint8 else np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


@dataclass
class FrameBank:
    images: torch.Tensor  # (F, S, S, 3) uint8
    labels: torch.Tensor  # (F, S, S) uint8
    world_to_cam: torch.Tensor  # (F, 4, 4) f32
    K: torch.Tensor  # (F, 3, 3) f32 at resolution S
    audio: torch.Tensor  # (F, R, D) f32
    au_window: torch.Tensor  # (F, T, 17) f32
    index: torch.Tensor  # (F,) dataset frame index
    background: torch.Tensor  # (S, S, 3) f32 plate
    size: int
    expression: torch.Tensor | None = None  # (F, E) fitted mesh expression (mesh-rigged heads)
    fer: torch.Tensor | None = None  # (F, 8) FER2013 scores + e per frame (EmoTaG emotion guidance; attach_fer)
    neck_freed: np.ndarray | None = None  # (S, S) bool: pixels trim_neck gave from the head to the torso in any frame

    def __len__(self) -> int:
        return self.images.shape[0]

    def spread_ids(self, n: int) -> np.ndarray:
        """Up to `n` frame ids (int64) spread evenly over the bank, first and last included."""
        return np.unique(np.linspace(0, len(self) - 1, max(1, min(n, len(self)))).round().astype(np.int64))

    @classmethod
    def from_dataset(cls, ds, size: int, device: torch.device | str = "cpu", neck_keep: float = -1.0) -> "FrameBank":
        """`neck_keep` >= 0: the head ends that many face heights below the jaw line (`trim_neck`)."""
        n = len(ds)
        imgs, labs, w2c, Ks, aud, auw, idx, expr = [], [], [], [], [], [], [], []
        freed = np.zeros((size, size), bool) if neck_keep >= 0 else None
        for i in range(n):
            it = ds[i]
            src = it["image"].shape[0]
            imgs.append(resize_image(_to_u8(it["image"]), size))
            lab = resize_labels(np.asarray(it["labels"], np.uint8), size)
            if freed is not None:
                cut = trim_neck(lab, neck_keep)
                freed |= cut != lab
                lab = cut
            labs.append(lab)
            w2c.append(it["world_to_cam"])
            Ks.append(scale_K(it["K"], size / src))
            aud.append(np.asarray(it["audio"], np.float32))
            auw.append(np.asarray(it["au_window"], np.float32))
            idx.append(int(it["index"]))
            if "expression" in it:
                expr.append(np.asarray(it["expression"], np.float32))
        bg = resize_image(_to_u8(np.asarray(ds.background)), size)
        t = lambda a, dt=torch.float32: torch.as_tensor(np.stack(a) if isinstance(a, list) else a, dtype=dt).to(device)
        return cls(t(imgs, torch.uint8), t(labs, torch.uint8), t(w2c), t(Ks), t(aud), t(auw),
                   t(idx, torch.long), t(bg) / 255.0, size, t(expr) if expr and len(expr) == n else None,
                   neck_freed=freed)

    def batch(self, ids: torch.Tensor, neck_soft_px: float = 0.0) -> dict[str, torch.Tensor]:
        """Float batch for frame ids (B,): image, labels, cameras, tokens' inputs, masks, background."""
        img = self.images[ids].float() / 255.0  # (B, S, S, 3)
        lab = self.labels[ids]  # (B, S, S)
        head = torch.isin(lab, torch.tensor(HEAD_LABELS, device=lab.device)).float()[..., None]  # (B,S,S,1)
        if neck_soft_px > 0:
            head = soften(head, neck_soft_px)
        # the compositing background: GT where the label is background/torso (the head is trained over
        # the frame's own torso, so it never learns to paint or hide it), the plate elsewhere
        bgt = torch.where((lab <= 1)[..., None], img, self.background.expand_as(img))
        return dict(image=img, labels=lab, head_mask=head, lip_mask=lip_box_mask(lab),
                    background=bgt, world_to_cam=self.world_to_cam[ids], K=self.K[ids],
                    audio=self.audio[ids], au_window=self.au_window[ids], index=self.index[ids],
                    expression=None if self.expression is None else self.expression[ids],
                    fer=None if self.fer is None else self.fer[ids])


def trim_neck(lab: np.ndarray, keep: float) -> np.ndarray:
    """Labels (S, S) u8 -> a copy whose head-other pixels more than `keep` face heights below the jaw line become
    torso: the head ends near the jaw and the lower neck belongs to the frame (training composites the head over the
    true frame's torso; the field's protocol pastes it on the true frame), as ER-NeRF-style methods leave the neck
    to their torso model. The jaw line is per column: the lowest face-zone pixel (labels >= 3) of the column, the
    face's lowest row for columns without face pixels (ears, hair); the face height is the face zones' row span.
    A frame without face pixels is returned unchanged."""
    face = lab >= 3
    rows = np.flatnonzero(face.any(1))
    if not len(rows):
        return lab.copy()
    top, chin = int(rows[0]), int(rows[-1])
    S = lab.shape[0]
    has = face.any(0)
    low = np.where(has, S - 1 - np.argmax(face[::-1], 0), chin)  # (S,) lowest face row per column
    cut = low + keep * (chin - top + 1)  # (S,) the head ends below this row
    below = np.arange(S, dtype=np.float64)[:, None] > cut[None, :]
    out = lab.copy()
    out[below & (lab == 2)] = 1
    return out


def neck_plate(bank: "FrameBank", plate: np.ndarray, frames: int = 40) -> np.ndarray:
    """The plate for a head trained with `neck_keep`: `plate` (H, W, 3) u8 (the dataset's, any size) with the neck
    that trim_neck gave to the torso filled from the training frames (per-pixel median where the trimmed head does
    not cover it, `emogs.data.masks.background_plate`, at the bank's size, upscaled into that region only).
    The dataset's plate never saw that neck (the prepared head label covered it) and holds an inpainted guess there:
    white collar patches under the jaw of every render (docs/training.md, session 7)."""
    from emogs.data.masks import background_plate

    if bank.neck_freed is None or not bank.neck_freed.any():
        return plate
    ids = torch.as_tensor(bank.spread_ids(frames), device=bank.images.device)
    imgs = bank.images[ids].cpu().numpy()
    head = (bank.labels[ids] >= 2).cpu().numpy()
    fill = background_plate(imgs, head)
    h, w = plate.shape[:2]
    region = cv2.dilate(bank.neck_freed.astype(np.uint8), np.ones((5, 5), np.uint8))
    if (h, w) != fill.shape[:2]:
        fill = cv2.resize(fill, (w, h), interpolation=cv2.INTER_LINEAR)
        region = cv2.resize(region, (w, h), interpolation=cv2.INTER_NEAREST)
    out = plate.copy()
    out[region > 0] = fill[region > 0]
    return out


def soften(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-blur a (B, H, W, 1) mask (separable, zero padding)."""
    r = max(1, int(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=mask.dtype, device=mask.device)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    m = mask.permute(0, 3, 1, 2)
    m = F.conv2d(F.pad(m, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
    return m.permute(0, 2, 3, 1)


def lip_box_mask(labels: torch.Tensor, margin: float = 0.25) -> torch.Tensor:
    """(B, H, W) labels -> (B, H, W, 1) box around the lips/mouth (labels 5, 6), grown by `margin`."""
    b, h, w = labels.shape
    out = torch.zeros(b, h, w, 1, device=labels.device)
    lips = torch.isin(labels, torch.tensor(LIP_LABELS, device=labels.device))
    for i in range(b):
        ys, xs = torch.nonzero(lips[i], as_tuple=True)
        if len(ys) == 0:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        dy, dx = int((y1 - y0) * margin) + 1, int((x1 - x0) * margin) + 1
        out[i, max(0, y0 - dy):y1 + dy, max(0, x0 - dx):x1 + dx] = 1
    return out


def face_box(labels: np.ndarray, margin: float = 0.05) -> tuple[int, int, int, int] | None:
    """(H, W) labels -> box (x0, y0, x1, y1) around the face zones (labels 3-6), for face-region metrics."""
    ys, xs = np.nonzero(np.isin(labels, (3, 4, 5, 6)))
    if len(ys) == 0:
        return None
    h, w = labels.shape
    dy, dx = int((ys.max() - ys.min()) * margin), int((xs.max() - xs.min()) * margin)
    return (max(0, xs.min() - dx), max(0, ys.min() - dy), min(w, xs.max() + 1 + dx), min(h, ys.max() + 1 + dy))
