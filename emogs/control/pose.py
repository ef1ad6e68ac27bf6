"""Head-pose tracks for rendering: replay the training poses (mirror loop), a static pose, or another
video's head motion applied on top of the training median pose.

Poses are `world_to_cam` (4, 4) OpenCV matrices (world = the still head's canonical frame, cm), as in
the dataset's tracks.npz. Another video's motion is taken relative to that video's median pose, in the
head's own frame: D_i = inv(W'_med) @ W'_i, then W_i = W_train_med @ D_i (so a 10 degree head turn
in the source is a 10 degree turn here, whatever the source camera's viewpoint or distance).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emogs.control.timeline import mirror_indices
from emogs.errors import InputError

POSE_MODES = ("training", "static", "video")
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


@dataclass
class PoseRequest:
    """What the user asked for; resolved against the training poses by `resolve_pose`."""
    mode: str = "training"                  # "training" | "static" | "video"
    source: str = ""                        # the --pose-from video
    motion: np.ndarray | None = None        # (F, 4, 4) head-frame motion relative to the source's median

    def describe(self) -> str:
        if self.mode == "training":
            return "training poses, mirror-looped (ping-pong, no jump at the loop point)"
        if self.mode == "static":
            return "static: the median training pose"
        return f"head motion of {self.source} relative to its median pose, on the median training pose"


@dataclass
class PoseTrack:
    world_to_cam: np.ndarray  # (F, 4, 4) float32 OpenCV

    @property
    def rotvec(self) -> np.ndarray:
        """(F, 3) rotation vectors (axis * angle, rad) of world_to_cam's rotation."""
        from scipy.spatial.transform import Rotation

        return Rotation.from_matrix(self.world_to_cam[:, :3, :3].astype(np.float64)).as_rotvec().astype(np.float32)

    @property
    def translation(self) -> np.ndarray:
        """(F, 3) world_to_cam translation (cm)."""
        return self.world_to_cam[:, :3, 3].copy()


def make_world_to_cam(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations + (..., 3) translations -> (..., 4, 4)."""
    out = np.zeros(rot.shape[:-2] + (4, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = trans
    out[..., 3, 3] = 1.0
    return out


def invert_rigid(m: np.ndarray) -> np.ndarray:
    """Inverse of rigid (..., 4, 4) transforms."""
    rt = np.swapaxes(m[..., :3, :3], -1, -2)
    return make_world_to_cam(rt, -(rt @ m[..., :3, 3:4])[..., 0])


def world_to_cam_from_head_pose(pose_R: np.ndarray, pose_T: np.ndarray) -> np.ndarray:
    """`emogs analyze` head pose (pose_R (K, 3) Euler rad, R = Rx @ Ry @ Rz; pose_T (K, 3) cm, the
    convention of emogs.face.camera.head_pose) -> world_to_cam (K, 4, 4) = diag(1,-1,-1,1) @ transform."""
    from emogs.face.camera import euler_to_matrix

    return make_world_to_cam(euler_to_matrix(pose_R) @ _FLIP_YZ, np.asarray(pose_T, np.float64))


def _check_poses(w2c: np.ndarray, what: str) -> np.ndarray:
    w2c = np.asarray(w2c, np.float64)
    if w2c.ndim != 3 or w2c.shape[1:] != (4, 4) or len(w2c) == 0:
        raise InputError(f"{what}: expected (N, 4, 4) world_to_cam matrices, got shape {w2c.shape}")
    if not np.isfinite(w2c).all():
        raise InputError(f"{what}: poses contain NaN or inf")
    return w2c


def median_pose(w2c: np.ndarray) -> np.ndarray:
    """(N, 4, 4) -> (4, 4): per-component median of the rotations (as rotation vectors about their chordal
    mean) and of the translations. Robust to a few badly tracked frames; a valid rigid transform."""
    from scipy.spatial.transform import Rotation

    w2c = _check_poses(w2c, "poses")
    rots = Rotation.from_matrix(w2c[:, :3, :3])
    mean = rots.mean()
    rel = (mean.inv() * rots).as_rotvec()
    r_med = mean * Rotation.from_rotvec(np.median(rel, axis=0))
    return make_world_to_cam(r_med.as_matrix(), np.median(w2c[:, :3, 3], axis=0))


def relative_motion(w2c: np.ndarray) -> np.ndarray:
    """(K, 4, 4) source poses -> (K, 4, 4) head-frame motion relative to their median pose."""
    return invert_rigid(median_pose(w2c))[None] @ _check_poses(w2c, "source poses")


def resolve_pose(request: PoseRequest, training_world_to_cam: np.ndarray, num_frames: int) -> PoseTrack:
    """The per-frame cameras: (F, 4, 4) float32. `training_world_to_cam` (N, 4, 4): the poses the model
    was trained on (tracks.npz `world_to_cam`, train split)."""
    train = _check_poses(training_world_to_cam, "training poses")
    if request.mode == "training":
        out = train[mirror_indices(len(train), num_frames)]
    elif request.mode == "static":
        out = np.broadcast_to(median_pose(train), (num_frames, 4, 4))
    elif request.mode == "video":
        if request.motion is None or len(request.motion) != num_frames:
            raise ValueError("pose request from video has no motion track of the right length")
        out = median_pose(train)[None] @ request.motion
    else:
        raise InputError(f"unknown pose mode '{request.mode}'; choose from {', '.join(POSE_MODES)}")
    return PoseTrack(np.ascontiguousarray(out, dtype=np.float32))
