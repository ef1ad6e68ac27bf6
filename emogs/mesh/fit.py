"""Fit ICT-FaceKit to a clip's MediaPipe landmarks: one identity and focal length per clip, per-frame
expression coefficients (in [0, 1]) and rigid head pose. Pure: arrays in, a `MeshFit` out (CPU, PyTorch).

Model of landmark i in frame t (pixels of the S x S image):

    X_ti = P0_i + I_i @ identity + E_i @ expression_t            (ICT frame, cm; `Correspondence.basis`)
    Y_ti = R_t X_ti + T_t                                        (OpenCV camera: x right, y down, z forward)
    u_ti = f * Y_ti[:2] / Y_ti[2] + (S/2, S/2)

World = the ICT model frame and the head still: `world_to_cam_t = [R_t | T_t]`.

Objective (residuals r in pixels rescaled to a 512 px image, so weights do not depend on S):
    mean_t sum_i w_i c_t rho(|u_ti - l_ti|)                                    data, Geman-McClure rho
  + w_prior  mean_t |e_t - b_t|^2    b = MediaPipe blendshape scores of the same names, minus each score's
                                     clip rest value (its `rest_percentile`, clipped at 0): MediaPipe's
                                     scores carry a per-face offset (browInnerUp ~0.5 on neutral faces)
                                     that must not become expression
  + w_l1     mean_t sum_j e_tj       (e >= 0: a sparsity prior)
  + w_smooth_expr  mean_t |e_t - e_t-1|^2   + w_smooth_rot |log(R_t R_t-1^T)|^2 (deg) + w_smooth_trans |T_t - T_t-1|^2
  + w_identity |identity|^2          (ICT identity modes are unit-variance PCA modes)
  + w_focal (log f - log f0)^2
w_i: the correspondence's landmark weights; c_t: 1 for tracked frames, `untracked_weight` for frames whose
landmarks were interpolated. Solver: per-frame Levenberg-Marquardt on (rotation, translation, expression)
with the neighbours' values held (Jacobi) for the temporal terms, an active set for the [0, 1] bounds and
robust weights re-computed each step (IRLS), alternating with joint Gauss-Newton steps on the identity and
all poses (poses eliminated by their Schur complement); the robust scale anneals from `robust_start_px` to
`robust_px`. The focal length is chosen by a search on a subset of frames (`fit_landmarks`). docs/mesh.md
has the measurements behind these choices.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from emogs.mesh.correspondence import Correspondence
from emogs.mesh.ict import FaceModel, mediapipe_name


@dataclass
class FitConfig:
    rounds: int = 4                 # alternations of (per-frame LM steps, one joint identity + pose step)
    frame_steps: int = 1            # LM steps per frame per round
    final_steps: int = 2            # extra per-frame steps at the end
    robust_px: float = 3.0          # Geman-McClure scale at the end (px at 512)
    robust_start_px: float = 12.0
    w_identity: float = 30.0
    w_prior: float = 30.0
    w_l1: float = 2.0
    w_smooth_expr: float = 20.0
    w_smooth_rot: float = 20.0      # per degree^2
    w_smooth_trans: float = 200.0   # per cm^2
    w_focal: float = 100.0
    fit_focal: bool = True          # choose the focal length (see fit_landmarks); else keep the given K
    focal_grid: tuple[float, ...] = (0.6, 0.8, 1.0, 1.25, 1.6, 2.0, 2.6, 3.4, 4.5)  # factors of the prior focal
    focal_frames: int = 48
    focal_rounds: int = 3
    rest_percentile: float = 5.0
    untracked_weight: float = 0.3
    chunk: int = 192                # frames per batch when building Jacobians (memory)


@dataclass
class MeshFit:
    """Per-clip fit. N frames."""
    identity: np.ndarray      # (I,)
    expression: np.ndarray    # (N, E) in [0, 1], ICT order (`expression_names`)
    rotation: np.ndarray      # (N, 3, 3) world (ICT frame) -> OpenCV camera
    translation: np.ndarray   # (N, 3) cm
    K: np.ndarray             # (3, 3) pixels of the S x S image
    error_px: np.ndarray      # (N,) per-frame median landmark reprojection error (pixels of the image)
    expression_names: tuple[str, ...]
    seconds: float = 0.0
    config: dict = field(default_factory=dict)
    objective: float = 0.0    # final objective per frame (robust data + priors), at robust_px
    focal_search: list = field(default_factory=list)  # [(focal px, subset objective)] tried

    @property
    def world_to_cam(self) -> np.ndarray:
        n = len(self.rotation)
        w = np.tile(np.eye(4), (n, 1, 1))
        w[:, :3, :3], w[:, :3, 3] = self.rotation, self.translation
        return w


def skew(v):
    """(..., 3) -> (..., 3, 3) cross-product matrices (also the training's pose refinement, emogs.train.refine)."""
    import torch

    z = torch.zeros_like(v[..., 0])
    return torch.stack([torch.stack([z, -v[..., 2], v[..., 1]], -1),
                        torch.stack([v[..., 2], z, -v[..., 0]], -1),
                        torch.stack([-v[..., 1], v[..., 0], z], -1)], -2)


def _so3_exp(w):
    """Rotation vectors (..., 3) -> matrices (..., 3, 3) (Rodrigues)."""
    import torch

    th = w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = skew(w / th)
    th = th[..., None]
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand(k.shape)
    return eye + torch.sin(th) * k + (1 - torch.cos(th)) * (k @ k)


def _so3_log(R):
    """Matrices (..., 3, 3) -> rotation vectors (..., 3) (angles below pi)."""
    import torch

    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    th = torch.acos(cos)
    v = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    s = torch.where(th[..., None] < 1e-6, torch.full_like(th[..., None], 0.5), th[..., None] / (2 * torch.sin(th[..., None])))
    return v * s


def prior_targets(blendshapes: np.ndarray | None, names: tuple[str, ...], n: int, rest_percentile: float,
                  tracked: np.ndarray | None = None) -> np.ndarray:
    """MediaPipe scores (N, 52) -> prior targets (N, E) for the ICT shapes of the same names, each minus its
    clip rest value (percentile over tracked frames), clipped to [0, 1]. Zeros without blendshapes."""
    from emogs.face.aus import BLENDSHAPE_NAMES

    out = np.zeros((n, len(names)), np.float32)
    if blendshapes is None:
        return out
    bs = np.asarray(blendshapes, np.float32)
    ok = np.ones(n, bool) if tracked is None or not np.any(tracked) else np.asarray(tracked, bool)
    rest = np.percentile(bs[ok], rest_percentile, axis=0)
    rel = np.clip(bs - rest, 0, 1)
    index = {m: k for k, m in enumerate(BLENDSHAPE_NAMES)}
    for j, name in enumerate(names):
        k = index.get(mediapipe_name(name))
        if k is not None:
            out[:, j] = rel[:, k]
    return out


def _affine_init(l2d: np.ndarray, X: np.ndarray, f: float, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame pose from a scaled-orthographic fit: landmarks (N, P, 2) px, model points (P, 3) ->
    R (N, 3, 3), T (N, 3). The OpenCV camera looks along +z; the face (+z in the ICT frame) faces it."""
    n = len(l2d)
    Xc = X - X.mean(0)
    A = np.concatenate([Xc, np.ones((len(X), 1))], 1)  # (P, 4)
    pinv = np.linalg.pinv(A)
    M = np.einsum("kp,npa->nak", pinv, l2d)  # (N, 2, 4): u = M[:, :, :3] X + M[:, :, 3]
    r1, r2 = M[:, 0, :3], M[:, 1, :3]
    s = 0.5 * (np.linalg.norm(r1, axis=1) + np.linalg.norm(r2, axis=1))
    r1 = r1 / np.linalg.norm(r1, axis=1, keepdims=True)
    r2 = r2 - (r2 * r1).sum(1, keepdims=True) * r1
    r2 = r2 / np.linalg.norm(r2, axis=1, keepdims=True)
    r3 = np.cross(r1, r2)
    R = np.stack([r1, r2, r3], 1)
    u, _, vt = np.linalg.svd(R)
    R = u @ vt
    z = f / s
    T = np.stack([(M[:, 0, 3] - c[0]) * z / f, (M[:, 1, 3] - c[1]) * z / f, z], 1) - np.einsum("nij,j->ni", R, X.mean(0))
    return R, T


def fit_landmarks(model: FaceModel, corr: Correspondence, landmarks: np.ndarray, size: int | tuple[int, int],
                  blendshapes: np.ndarray | None = None, tracked: np.ndarray | None = None,
                  K: np.ndarray | None = None, cfg: FitConfig | None = None, identity: np.ndarray | None = None,
                  progress=None) -> MeshFit:
    """Fit a clip: landmarks (N, 478, 2+) in pixels of an S x S image (`size` = S, or (width, height); the
    principal point is the image centre), MediaPipe blendshapes
    (N, 52) as the expression prior, `tracked` (N,) (False = interpolated landmarks, down-weighted),
    K (3, 3) the prior intrinsics (default MediaPipe's 63 degree camera). `identity` (I,): keep this
    identity fixed instead of fitting it (e.g. shared over several clips of one person). `progress(done,
    rounds)` is called after each focal candidate (done = 0) and each round; an exception it raises stops the fit.

    The focal length (`cfg.fit_focal`) is chosen first: the clip's objective (robust data term plus all
    priors, the focal prior included) is evaluated on `cfg.focal_frames` evenly spaced frames for the
    focal lengths `f0 * cfg.focal_grid` (each a full fit of that subset), refined by a parabola through the
    best three in log f; the whole clip is then fitted at that focal length. (In a joint Gauss-Newton step
    the focal length barely moves: a longer lens and a flatter, more distant face look nearly alike, and
    the expressions absorb the rest.)"""
    cfg = cfg or FitConfig()
    t0 = time.perf_counter()
    lm = np.asarray(landmarks, np.float64)[..., :2]
    n = len(lm)
    width, height = (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))
    size = (width, height)
    f0 = 0.5 * height / math.tan(math.radians(63.0) / 2) if K is None else float(np.asarray(K)[0, 0])
    f = f0
    search = []
    if cfg.fit_focal and n >= 2:
        ok = np.ones(n, bool) if tracked is None else np.asarray(tracked, bool)
        pool = np.flatnonzero(ok) if ok.sum() >= 2 else np.arange(n)
        sub = pool[np.unique(np.round(np.linspace(0, len(pool) - 1, min(len(pool), cfg.focal_frames))).astype(int))]
        scfg = replace(cfg, rounds=cfg.focal_rounds, final_steps=1, w_smooth_expr=0.0, w_smooth_rot=0.0,
                       w_smooth_trans=0.0)
        prior_sub = prior_targets(blendshapes, model.expression_names, n, cfg.rest_percentile, tracked)[sub]
        for g in cfg.focal_grid:
            r = _fit(model, corr, lm[sub], size, prior_sub, None, f0 * g, f0, scfg, identity)
            search.append((math.log(g), r.objective))
            if progress:
                progress(0, cfg.rounds)
        x = np.array([a for a, _ in search])
        y = np.array([b for _, b in search])
        k = int(np.argmin(y))
        best = x[k]
        if 0 < k < len(x) - 1:  # parabola through the best and its neighbours
            xa, xb, xc = x[k - 1:k + 2]
            ya, yb, yc = y[k - 1:k + 2]
            den = (xa - xb) * (xa - xc) * (xb - xc)
            A = (xc * (yb - ya) + xb * (ya - yc) + xa * (yc - yb)) / den
            B = (xc * xc * (ya - yb) + xb * xb * (yc - ya) + xa * xa * (yb - yc)) / den
            if A > 0:
                best = float(np.clip(-B / (2 * A), xa, xc))
        f = f0 * math.exp(best)
    prior = prior_targets(blendshapes, model.expression_names, n, cfg.rest_percentile, tracked)
    fit = _fit(model, corr, lm, size, prior, tracked, f, f0, cfg, identity, progress)
    fit.seconds = time.perf_counter() - t0
    fit.focal_search = [(round(float(f0 * math.exp(a)), 2), round(float(b), 3)) for a, b in search]
    return fit


def _fit(model, corr, lm, size, prior_np, tracked, f_init, f0, cfg, identity=None, progress=None) -> MeshFit:
    """The solver at a fixed focal length `f_init` (f0: the prior's centre, for the reported objective)."""
    import torch

    t_start = time.perf_counter()
    dt = torch.float32
    n, P = lm.shape[:2]
    if P != len(corr.tri):
        raise ValueError(f"expected (N, {len(corr.tri)}, 2) landmarks, got {lm.shape}")
    width, height = size
    scale = 512.0 / max(width, height)  # image px -> units of a 512 px image
    c = np.array([width / 2, height / 2])
    P0, Bi, Be = corr.basis(model)
    I, E = len(Bi), len(Be)
    P0t = torch.as_tensor(P0, dtype=dt)
    Bit = torch.as_tensor(Bi, dtype=dt).permute(1, 2, 0).contiguous()  # (P, 3, I)
    Bet = torch.as_tensor(Be, dtype=dt).permute(1, 2, 0).contiguous()  # (P, 3, E)
    w_lm = torch.as_tensor(corr.weight, dtype=dt)
    frame_w = np.ones(n, np.float32) if tracked is None else np.where(np.asarray(tracked, bool), 1.0,
                                                                       cfg.untracked_weight).astype(np.float32)
    frame_wt = torch.as_tensor(frame_w, dtype=dt)
    target = torch.as_tensor(lm * scale, dtype=dt)  # (N, P, 2) in 512-px units
    prior = torch.as_tensor(prior_np, dtype=dt)
    ct = torch.as_tensor(c * scale, dtype=dt)

    R0, T0 = _affine_init(lm, P0.astype(np.float64), f_init, c)
    R = torch.as_tensor(R0, dtype=dt)
    T = torch.as_tensor(T0, dtype=dt)
    e = prior.clone()
    fixed_identity = identity is not None
    alpha = torch.as_tensor(identity, dtype=dt) if fixed_identity else torch.zeros(I, dtype=dt)
    logf = torch.tensor(math.log(f_init * scale), dtype=dt)
    deg2 = (180.0 / math.pi) ** 2

    def shape(idx=None):
        """Landmarks in the model frame (n, P, 3) for frames idx."""
        ee = e if idx is None else e[idx]
        base = P0t + (Bit @ alpha)  # (P, 3)
        return base + torch.einsum("pkj,nj->npk", Bet, ee)

    def project(X, Rr, Tt, lf):
        Y = X @ Rr.transpose(-1, -2) + Tt[:, None, :]
        z = Y[..., 2:3].clamp_min(1e-3)
        return torch.exp(lf) * Y[..., :2] / z + ct, Y

    def robust_w(r2, cpx):
        c2 = cpx * cpx
        return (c2 / (c2 + r2)) ** 2  # Geman-McClure IRLS weight

    def rho(r2, cpx):
        c2 = cpx * cpx
        return c2 * r2 / (c2 + r2)

    def frame_objective(idx, Rr, Tt, ee, cpx):
        """Per-frame objective (len(idx),) with neighbours held at the current values."""
        X = P0t + (Bit @ alpha) + torch.einsum("pkj,nj->npk", Bet, ee)
        u, _ = project(X, Rr, Tt, logf)
        r2 = ((u - target[idx]) ** 2).sum(-1)
        data = (rho(r2, cpx) * w_lm).sum(-1) * frame_wt[idx]
        reg = cfg.w_prior * ((ee - prior[idx]) ** 2).sum(-1) + cfg.w_l1 * ee.sum(-1)
        sm = torch.zeros_like(data)
        for off in (-1, 1):
            j = idx + off
            ok = (j >= 0) & (j < n)
            jj = j.clamp(0, n - 1)
            de = ((ee - e[jj]) ** 2).sum(-1)
            dr = (_so3_log(Rr @ R[jj].transpose(-1, -2)) ** 2).sum(-1) * deg2
            dtr = ((Tt - T[jj]) ** 2).sum(-1)
            sm = sm + ok.to(dt) * (cfg.w_smooth_expr * de + cfg.w_smooth_rot * dr + cfg.w_smooth_trans * dtr)
        return data + reg + sm

    mu = torch.full((n,), 1e-3, dtype=dt)
    Be_flat = Bet.reshape(P * 3, E)  # (3P, E)
    Bi_flat = Bit.reshape(P * 3, I)
    eye3 = torch.eye(3, dtype=dt)

    Hee_cache = torch.zeros(n, E, E, dtype=dt)  # expression block of the Gauss-Newton matrix, refreshed lazily

    def frame_step(cpx, rigid_only=False, refresh=True):
        """One LM step per frame on (rotation, translation, expression), parameterised in the model frame:
        R <- R exp([dphi]x), T <- T + R dt, e <- clip(e + de, 0, 1). The expression block of the
        Gauss-Newton matrix (the costly part) is recomputed only when `refresh` (else the last one is reused;
        the gradient is always exact, and LM's accept / reject keeps every step a descent)."""
        nonlocal R, T, e
        D = 6 if rigid_only else 6 + E
        for s0 in range(0, n, cfg.chunk):
            idx = torch.arange(s0, min(n, s0 + cfg.chunk))
            m = len(idx)
            Rr, Tt = R[idx], T[idx]
            X, M, w, r = _linearise(idx, cpx)
            Mw = M * w[..., None, None]
            Qm = M.transpose(-1, -2) @ Mw  # (m, P, 3, 3)
            gm = (Mw.transpose(-1, -2) @ r[..., None]).squeeze(-1)  # (m, P, 3)
            S = -skew(X)  # d X / d dphi
            QS = Qm @ S
            H = torch.zeros(m, D, D, dtype=torch.float64)
            g = torch.zeros(m, D, dtype=torch.float64)
            H[:, :3, :3] = (S.transpose(-1, -2) @ QS).sum(1).double()
            H[:, :3, 3:6] = QS.sum(1).transpose(-1, -2).double()
            H[:, 3:6, :3] = QS.sum(1).double()
            H[:, 3:6, 3:6] = Qm.sum(1).double()
            g[:, :3] = (S.transpose(-1, -2) @ gm[..., None]).squeeze(-1).sum(1).double()
            g[:, 3:6] = gm.sum(1).double()
            if not rigid_only:
                # pose x expression: sum_p [S, I]^T Qm Be_p as one matrix product over (landmark, axis)
                L = torch.cat([QS, Qm], -1)  # (m, P, 3, 6) = Qm [S, I]
                Hpe = L.permute(0, 3, 1, 2).reshape(m, 6, P * 3) @ Be_flat  # (m, 6, E)
                H[:, :6, 6:] = Hpe.double()
                H[:, 6:, :6] = Hpe.transpose(1, 2).double()
                g[:, 6:] = (gm.reshape(m, P * 3) @ Be_flat).double()
                if refresh:
                    Je = M[..., 0:1] * Bet[None, :, None, 0] + M[..., 1:2] * Bet[None, :, None, 1]
                    Je = Je.add_(M[..., 2:3] * Bet[None, :, None, 2]).reshape(m, P * 2, E)  # (m, 2P, E)
                    Hee_cache[idx] = (Je * w.repeat_interleave(2, dim=1)[..., None]).transpose(1, 2) @ Je
                H[:, 6:, 6:] = Hee_cache[idx].double()
            # temporal terms (neighbours held); rotation / translation differences are camera-frame
            cnt = torch.zeros(m, dtype=torch.float64)
            drot = torch.zeros(m, 3, dtype=dt)
            dtr = torch.zeros(m, 3, dtype=dt)
            dex = torch.zeros(m, E, dtype=torch.float64)
            for off in (-1, 1):
                j = idx + off
                ok = ((j >= 0) & (j < n))
                jj = j.clamp(0, n - 1)
                cnt += ok.double()
                okf = ok.to(dt)[:, None]
                drot += okf * _so3_log(Rr @ R[jj].transpose(-1, -2))
                dtr += okf * (Tt - T[jj])
                if not rigid_only:
                    dex += ok.double()[:, None] * (e[idx] - e[jj]).double()
            RtT = Rr.transpose(-1, -2)
            eye3d = torch.eye(3, dtype=torch.float64)
            H[:, :3, :3] += cfg.w_smooth_rot * deg2 * cnt[:, None, None] * eye3d
            g[:, :3] += cfg.w_smooth_rot * deg2 * (RtT @ drot[..., None]).squeeze(-1).double()
            H[:, 3:6, 3:6] += cfg.w_smooth_trans * cnt[:, None, None] * eye3d
            g[:, 3:6] += cfg.w_smooth_trans * (RtT @ dtr[..., None]).squeeze(-1).double()
            if not rigid_only:
                ee = e[idx].double()
                diag = cfg.w_prior + cfg.w_smooth_expr * cnt
                H[:, 6:, 6:] += diag[:, None, None] * torch.eye(E, dtype=torch.float64)
                g[:, 6:] += cfg.w_prior * (ee - prior[idx].double()) + cfg.w_l1 + cfg.w_smooth_expr * dex
                # active set: coefficients at a bound whose gradient pushes outwards stay there
                act = ((ee <= 1e-6) & (g[:, 6:] > 0)) | ((ee >= 1 - 1e-6) & (g[:, 6:] < 0))
                keep = torch.cat([torch.ones(m, 6, dtype=torch.bool), ~act], 1)
                km = keep[:, :, None] & keep[:, None, :]
                H = torch.where(km, H, torch.zeros_like(H)) + torch.diag_embed((~keep).double())
                g = torch.where(keep, g, torch.zeros_like(g))
            old = frame_objective(idx, Rr, Tt, e[idx], cpx)
            dg = H.diagonal(dim1=-2, dim2=-1)
            for _ in range(3):  # LM: accept per frame, else raise the damping and retry those frames
                Hd = H + torch.diag_embed(mu[idx].double()[:, None] * dg + 1e-6)
                Lc, info = torch.linalg.cholesky_ex(Hd)
                if bool((info > 0).any()):
                    delta = -torch.linalg.solve(Hd, g[..., None]).squeeze(-1).to(dt)
                else:
                    delta = -torch.cholesky_solve(g[..., None], Lc).squeeze(-1).to(dt)
                Rn = Rr @ _so3_exp(delta[:, :3])
                Tn = Tt + (Rr @ delta[:, 3:6, None]).squeeze(-1)
                en = e[idx] if rigid_only else (e[idx] + delta[:, 6:]).clamp(0, 1)
                new = frame_objective(idx, Rn, Tn, en, cpx)
                ok = new <= old
                mu[idx] = torch.where(ok, (mu[idx] / 3).clamp_min(1e-7), mu[idx] * 4)
                okc = ok[:, None]
                R[idx] = torch.where(okc[..., None], Rn, R[idx])
                T[idx] = torch.where(okc, Tn, T[idx])
                if not rigid_only:
                    e[idx] = torch.where(okc, en, e[idx])
                if ok.all():
                    break
                Rr, Tt = R[idx], T[idx]
                old = torch.where(ok, new, old)

    def global_step(cpx):
        """One joint Gauss-Newton step on the identity and every frame's pose, the poses eliminated by their
        Schur complement (expressions held): alternating identity and pose steps would crawl along the
        valley where a face's shape and its pose trade off."""
        nonlocal alpha, R, T
        if fixed_identity:
            return
        Hgg = torch.zeros(I, I, dtype=torch.float64)
        gg = torch.zeros(I, dtype=torch.float64)
        Hpp = torch.zeros(n, 6, 6, dtype=torch.float64)
        Hgp = torch.zeros(n, I, 6, dtype=torch.float64)
        gp = torch.zeros(n, 6, dtype=torch.float64)
        for s0 in range(0, n, cfg.chunk):
            idx = torch.arange(s0, min(n, s0 + cfg.chunk))
            m = len(idx)
            X, M, w, r = _linearise(idx, cpx)
            Mw = M * w[..., None, None]
            Qm = M.transpose(-1, -2) @ Mw  # (m, P, 3, 3)
            gm = (Mw.transpose(-1, -2) @ r[..., None]).squeeze(-1)  # (m, P, 3)
            S = -skew(X)
            L = torch.cat([Qm @ S, Qm], -1)  # (m, P, 3, 6) = Qm [S, I]
            Jp = torch.cat([S, eye3.expand(m, P, 3, 3)], -1)  # (m, P, 3, 6) d X / d pose
            Hpp[idx] = (Jp.transpose(-1, -2) @ L).sum(1).double()
            gp[idx] = (Jp.transpose(-1, -2) @ gm[..., None]).squeeze(-1).sum(1).double()
            Hgg += (Bi_flat.T @ (Qm.sum(0) @ Bit).reshape(P * 3, I)).double()
            gg += (gm.sum(0).reshape(-1) @ Bi_flat).double()
            Hgp[idx] = (L.permute(0, 3, 1, 2).reshape(m, 6, P * 3) @ Bi_flat).transpose(1, 2).double()
        # the identity prior (per frame of data, hence times n) and the poses' temporal terms (as in frame_step)
        Hgg += n * cfg.w_identity * torch.eye(I, dtype=torch.float64)
        gg += n * cfg.w_identity * alpha.double()
        cnt = torch.full((n,), 2.0, dtype=torch.float64)
        cnt[0] = cnt[-1] = 1.0 if n > 1 else 0.0
        eye3d = torch.eye(3, dtype=torch.float64)
        Hpp[:, :3, :3] += cfg.w_smooth_rot * deg2 * cnt[:, None, None] * eye3d
        Hpp[:, 3:, 3:] += cfg.w_smooth_trans * cnt[:, None, None] * eye3d
        Hpp += 1e-6 * torch.eye(6, dtype=torch.float64)
        Hinv_pg = torch.linalg.solve(Hpp, Hgp.transpose(1, 2))  # (n, 6, I)
        Hinv_g = torch.linalg.solve(Hpp, gp[..., None]).squeeze(-1)  # (n, 6)
        Heff = Hgg - (Hgp @ Hinv_pg).sum(0)
        geff = gg - (Hgp @ Hinv_g[..., None]).squeeze(-1).sum(0)
        dg = -torch.linalg.solve(Heff + 1e-6 * torch.eye(I, dtype=torch.float64), geff)
        dp = (-(Hinv_g + (Hinv_pg @ dg[:, None]).squeeze(-1))).to(dt)  # (n, 6)
        dg = dg.to(dt)
        every = torch.arange(n)
        old = frame_objective(every, R, T, e, cpx).sum() + n * cfg.w_identity * float((alpha ** 2).sum())
        a0, R0_, T0_ = alpha, R, T
        for step in (1.0, 0.5, 0.25):  # backtracking on the joint step
            alpha = a0 + step * dg
            R = R0_ @ _so3_exp(step * dp[:, :3])
            T = T0_ + step * (R0_ @ dp[:, 3:, None]).squeeze(-1)
            if frame_objective(every, R, T, e, cpx).sum() + n * cfg.w_identity * float((alpha ** 2).sum()) <= old:
                return
        alpha, R, T = a0, R0_, T0_

    def _linearise(idx, cpx):
        """Model-frame landmarks X (m, P, 3), d u / d X = M (m, P, 2, 3), robust weights w (m, P), residuals r."""
        Rr, Tt = R[idx], T[idx]
        X = shape(idx)
        u, Y = project(X, Rr, Tt, logf)
        z = Y[..., 2].clamp_min(1e-3)
        r = u - target[idx]
        w = robust_w((r ** 2).sum(-1), cpx) * w_lm * frame_wt[idx, None]
        a_ = (torch.exp(logf) / z)[..., None]
        M = torch.stack([a_ * (Rr[:, None, 0] - (Y[..., 0:1] / z[..., None]) * Rr[:, None, 2]),
                         a_ * (Rr[:, None, 1] - (Y[..., 1:2] / z[..., None]) * Rr[:, None, 2])], -2)
        return X, M, w, r

    with torch.no_grad():
        for _ in range(3):
            frame_step(cfg.robust_start_px, rigid_only=True)
        total = cfg.rounds
        for k in range(total):
            cpx = math.exp(math.log(cfg.robust_start_px) + (math.log(cfg.robust_px) - math.log(cfg.robust_start_px))
                           * min(1.0, k / max(1, total - 2)))
            for k2 in range(cfg.frame_steps):
                frame_step(cpx, refresh=k2 == 0)
            global_step(cpx)
            if progress:
                progress(k + 1, total)
        for k2 in range(cfg.final_steps):
            frame_step(cfg.robust_px, refresh=k2 == 0)
        u, _ = project(shape(), R, T, logf)
        err = ((u - target) ** 2).sum(-1).sqrt() / scale  # (N, P) image px
        use = w_lm > 0
        err_med = err[:, use].median(-1).values.numpy()
        objective = float(frame_objective(torch.arange(n), R, T, e, cfg.robust_px).sum()) / n
        objective += cfg.w_identity * float((alpha ** 2).sum()) + cfg.w_focal * math.log(f_init / f0) ** 2
    Kf = np.array([[f_init, 0, width / 2], [0, f_init, height / 2], [0, 0, 1]])
    return MeshFit(alpha.numpy().astype(np.float32), e.numpy().astype(np.float32), R.numpy().astype(np.float64),
                   T.numpy().astype(np.float64), Kf, err_med.astype(np.float32), model.expression_names,
                   time.perf_counter() - t_start, asdict(cfg), objective)


def reprojection_errors(model: FaceModel, corr: Correspondence, fit: MeshFit, landmarks: np.ndarray) -> np.ndarray:
    """Per landmark and frame pixel distance (N, 478) between the fitted mesh's landmarks and `landmarks`."""
    P0, Bi, Be = corr.basis(model)
    X = P0 + np.einsum("i,ipk->pk", fit.identity, Bi) + np.einsum("nj,jpk->npk", fit.expression, Be)
    Y = np.einsum("nij,npj->npi", fit.rotation, X) + fit.translation[:, None]
    uv = Y @ fit.K.T
    uv = uv[..., :2] / uv[..., 2:3]
    return np.linalg.norm(uv - np.asarray(landmarks)[..., :2], axis=-1)
