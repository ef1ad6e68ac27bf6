"""emogs.control.pose / transfer: training loop continuity, static median, pose transfer from a video."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from emogs.control import build_plan
from emogs.control.names import AU_INDEX
from emogs.control.pose import PoseRequest, make_world_to_cam, median_pose, resolve_pose
from emogs.errors import InputError

from test_control_timeline import write_analysis_csv

FPS = 25.0


def training_poses(n: int = 60) -> np.ndarray:
    """(n, 4, 4) smooth head sway seen by a camera 50 cm away, ending far from where it starts."""
    t = np.arange(n) / FPS
    rv = np.stack([0.1 * np.sin(1.3 * t), 0.25 * t / t[-1], 0.05 * np.cos(0.7 * t)], 1)
    trans = np.stack([0.5 * np.sin(t), 0.2 * t, 50 + np.cos(t)], 1)
    return make_world_to_cam(Rotation.from_rotvec(rv).as_matrix() @ np.diag([1.0, -1.0, -1.0]), trans)


def steps(w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame rotation angle (rad) and translation change (cm)."""
    r = Rotation.from_matrix(w2c[:, :3, :3].astype(np.float64))
    ang = (r[:-1].inv() * r[1:]).magnitude()
    return ang, np.linalg.norm(np.diff(w2c[:, :3, 3], axis=0), axis=1)


def test_training_loop_is_continuous():
    train = training_poses(60)
    track = resolve_pose(PoseRequest("training"), train, 300)
    assert track.world_to_cam.shape == (300, 4, 4) and track.world_to_cam.dtype == np.float32
    ang, dt = steps(track.world_to_cam)
    ang0, dt0 = steps(train)
    assert ang.max() <= ang0.max() * 1.01 + 1e-5 and dt.max() <= dt0.max() * 1.01 + 1e-4
    naive = train[np.arange(300) % 60]  # a plain modulo loop jumps at the seam: the check above can fail
    assert steps(naive)[0].max() > 5 * ang0.max()
    assert np.allclose(track.world_to_cam[:60], train, atol=1e-5)
    assert track.rotvec.shape == (300, 3) and track.translation.shape == (300, 3)
    short = resolve_pose(PoseRequest("training"), train, 10)  # shorter audio: the first frames
    assert np.allclose(short.world_to_cam, train[:10], atol=1e-5)


def test_static_is_the_robust_median():
    train = training_poses(61)
    train[5, :3, 3] += 40.0  # a badly tracked frame
    train[7, :3, :3] = Rotation.from_rotvec([1.0, 0, 0]).as_matrix() @ train[7, :3, :3]
    med = median_pose(train)
    assert np.allclose(med[:3, :3] @ med[:3, :3].T, np.eye(3), atol=1e-9)
    assert np.allclose(med[:3, 3], np.median(train[:, :3, 3], axis=0))
    ang = (Rotation.from_matrix(med[:3, :3]).inv() * Rotation.from_matrix(train[30, :3, :3])).magnitude()
    assert ang < 0.15
    track = resolve_pose(PoseRequest("static"), train, 40)
    assert np.allclose(track.world_to_cam, med[None].astype(np.float32), atol=1e-6)


def test_bad_training_poses():
    with pytest.raises(InputError, match=r"expected \(N, 4, 4\)"):
        resolve_pose(PoseRequest("static"), np.zeros((5, 3, 4)), 10)
    bad = training_poses(5)
    bad[2, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        resolve_pose(PoseRequest("training"), bad, 10)


def test_head_pose_roundtrip_with_face_room():
    camera = pytest.importorskip("emogs.face.camera")
    from emogs.control.pose import world_to_cam_from_head_pose

    rng = np.random.default_rng(0)
    tf = make_world_to_cam(Rotation.from_rotvec(rng.normal(0, 0.3, (8, 3))).as_matrix(),
                           rng.normal(0, 3, (8, 3)) + [0, 0, -50])  # MediaPipe: face in front of a GL camera
    pose_R, pose_T = camera.head_pose(tf)
    assert np.allclose(world_to_cam_from_head_pose(pose_R, pose_T), camera.GL_TO_CV @ tf, atol=1e-9)


def _source_csv(tmp_path, n=75, fps=30.0):
    """A source video's analysis: the head turns (yaw) by up to 0.3 rad and drifts 2 cm, AU12 ramps."""
    pytest.importorskip("emogs.face.camera")
    t = np.arange(n) / fps
    yaw = 0.3 * np.sin(2 * np.pi * t / (n / fps))
    pose_R = np.stack([np.full(n, 0.2), yaw, np.zeros(n)], 1)  # the source camera looks from 0.2 rad below
    pose_T = np.stack([2.0 * t / t[-1], np.zeros(n), np.full(n, 70.0)], 1)
    aus = np.zeros((n, 17))
    aus[:, AU_INDEX["AU12"]] = t / t[-1]
    return write_analysis_csv(tmp_path / "src.csv", t, aus, pose_R=pose_R, pose_T=pose_T), yaw


def test_pose_from_analysis_is_relative_to_its_median(tmp_path):
    csv, yaw = _source_csv(tmp_path)
    train = training_poses(60)
    plan = build_plan(100, pose_from=csv, base="neutral")
    assert plan.pose.mode == "video" and plan.pose.motion.shape == (100, 4, 4)
    track = plan.resolve_pose(train)
    med = median_pose(train)
    # the head turns about its own vertical axis by the source's yaw minus the source's median yaw
    rel = Rotation.from_matrix(med[:3, :3].T @ track.world_to_cam[:, :3, :3].astype(np.float64))
    src_rel = yaw[np.round(np.arange(62) * 30 / 25).astype(int)] - np.median(yaw)
    assert np.abs(np.abs(rel.magnitude()[:62]) - np.abs(src_rel)).max() < 0.03
    axis = rel.as_rotvec()[np.argmax(rel.magnitude())]
    assert abs(abs(axis[1]) / np.linalg.norm(axis) - 1) < 0.02  # about the head's y axis
    ang, _ = steps(track.world_to_cam)
    assert ang.max() < 0.05                                      # smooth through the mirror loop
    dist = np.linalg.norm(track.world_to_cam[:, :3, 3] - med[:3, 3], axis=1)
    assert dist.max() < 1.5                                      # +-1 cm drift about the median, not 70 cm


def test_au_and_pose_from_video_analyse_once(tmp_path, monkeypatch):
    csv, _ = _source_csv(tmp_path)
    calls = []

    def analyze_video(video, out_csv, **kw):
        calls.append((video, kw.get("max_seconds")))
        out_csv.write_bytes(csv.read_bytes())

    fake = types.ModuleType("emogs.face.analyze")
    fake.analyze_video = analyze_video
    monkeypatch.setitem(sys.modules, "emogs.face.analyze", fake)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0")
    plan = build_plan(100, au_from=video, pose_from=video, base="neutral")
    assert calls == [(video, 5.0)]  # once, and only the 4 s needed (+ 1 s)
    a = plan.au[:, AU_INDEX["AU12"]]
    assert a[0] < 0.05 and a[61] > 0.9 and np.abs(np.diff(a)).max() < 0.05  # ramp, then mirrored back
    assert plan.mask[:, AU_INDEX["AU12"]].min() == 1
    assert "au-from: " in plan.summary() and "mirror-looped" in plan.summary()
    with pytest.raises(InputError, match="no such file"):
        build_plan(100, au_from=tmp_path / "missing.mp4")


def test_pose_from_without_pose_columns(tmp_path):
    p = tmp_path / "nopose.csv"
    p.write_text("timestamp,AU12_r\n0,0.1\n0.04,0.2\n")
    with pytest.raises(InputError, match="no head pose columns"):
        build_plan(10, pose_from=p)


@pytest.mark.slow
def test_au_and_pose_from_a_real_clip(shared_data):
    """End to end with the face room: a MEAD 'happy' clip (4 s, 25 fps) through `emogs analyze`."""
    pytest.importorskip("mediapipe")
    video = shared_data / "emotion" / "W009_front_happy_level3_001.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    plan = build_plan(50, au_from=video, pose_from=video, base="neutral")  # 2 s: analyses 3 s only
    a12 = plan.au[:, AU_INDEX["AU12"]]
    assert a12.max() > 0.5 and plan.mask.min() == 1
    assert np.abs(np.diff(plan.au, axis=0)).max() < 0.5                     # smoothed, no tracker spikes
    rel = Rotation.from_matrix(plan.pose.motion[:, :3, :3]).magnitude()
    assert rel.max() < 0.3 and np.abs(plan.pose.motion[:, :3, 3]).max() < 3.0  # a seated speaker's motion
    track = plan.resolve_pose(training_poses(60))
    assert np.isfinite(track.world_to_cam).all() and steps(track.world_to_cam)[0].max() < 0.05
