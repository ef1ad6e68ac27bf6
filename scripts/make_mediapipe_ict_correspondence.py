"""Compute the MediaPipe 478 -> ICT-FaceKit surface correspondence and write emogs/mesh/data/mediapipe_to_ict.npz.

    python scripts/make_mediapipe_ict_correspondence.py [--refine-clips /work/prep/andrew_ng_25s ...]
        [--rounds 2] [--png docs/mesh/correspondence.png] [--out emogs/mesh/data/mediapipe_to_ict.npz]

1. Register MediaPipe's canonical face mesh (468 vertices, `emogs.face.camera.canonical_face_mesh`) to
   the ICT model: a similarity from anchor landmarks whose meaning is the same in both (eye corners, lip
   corners and midpoints, nose tip, chin; ICT's iBUG-68 vertices), then a non-rigid fit of ICT identity and
   expression coefficients (and the similarity) alternating with closest surface points, ICP-style, with
   the anchors kept as extra constraints. Closest points are searched only where a landmark belongs:
   upper-lip landmarks on triangles that do not follow jawOpen, lower-lip ones on those that do, upper
   eyelids on triangles that follow eyeBlink, lower eyelids on those that do not, the face outline on the
   face and head/neck regions (a wide face's outline lies beyond ICT's face region), the rest on the face region.
   Iris landmarks (no canonical vertex) go on the eyeballs: the centre at the cornea's front, the four rim
   points at the iris radius (5.85 mm) to the image right / up / left / down.
2. Optionally refine on real tracked clips (prepared datasets; use clips you do not evaluate on): fit the
   clips with `emogs.mesh.fit`, and move each landmark's surface point by its median residual (in 3D, in
   the plane of the image, taken back to the surface), which removes the systematic difference between
   where MediaPipe puts a landmark and where the canonical registration put it. Repeated `--rounds` times.
3. Write the table and a PNG (the ICT mesh with the corresponding points in red and the registered
   canonical vertices in blue) and print the residuals.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emogs.face.camera import canonical_face_mesh  # noqa: E402
from emogs.mesh import correspondence as C  # noqa: E402
from emogs.mesh.ict import FaceModel, load_ict, surface_points  # noqa: E402

VERSION = 1
IRIS_RADIUS = 0.585  # cm, human iris diameter ~11.7 mm (the value MediaPipe's iris model assumes)
# (MediaPipe landmark, iBUG-68 index) pairs with the same anatomical meaning
ANCHORS = [(33, 36), (133, 39), (362, 42), (263, 45), (61, 48), (291, 54), (0, 51), (17, 57), (13, 62), (14, 66),
           (78, 60), (308, 64), (1, 30), (2, 33), (152, 8), (70, 17), (105, 19), (107, 21), (336, 22), (334, 24),
           (300, 26), (168, 27)]
GROUPS = ("face", "upper_lip", "lower_lip", "upper_lid", "lower_lid", "iris", "oval")


def umeyama(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Similarity (4, 4) with dst ~ s R src + t (weighted least squares)."""
    w = np.ones(len(src)) if w is None else np.asarray(w, np.float64)
    w = w / w.sum()
    ms, md = (w[:, None] * src).sum(0), (w[:, None] * dst).sum(0)
    a, b = src - ms, dst - md
    H = (w[:, None] * b).T @ a
    U, S, Vt = np.linalg.svd(H)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / (w * (a ** 2).sum(1)).sum()
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = s * R, md - s * R @ ms
    return T


def apply(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ T[:3, :3].T + T[:3, 3]


def groups(model: FaceModel) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per landmark its group (478,), and per group the ICT triangles it may land on."""
    g = np.zeros(C.NUM_LANDMARKS, np.int64)
    for name, idx in (("upper_lip", C.LIPS_UPPER_OUTER[1:-1] + C.LIPS_UPPER_INNER[1:-1]),
                      ("lower_lip", C.LIPS_LOWER_OUTER + C.LIPS_LOWER_INNER),
                      ("upper_lid", C.RIGHT_UPPER_LID + C.LEFT_UPPER_LID),
                      ("lower_lid", C.RIGHT_LOWER_LID + C.LEFT_LOWER_LID),
                      ("iris", C.RIGHT_IRIS + C.LEFT_IRIS),
                      ("oval", C.FACE_OVAL)):
        g[idx] = GROUPS.index(name)
    face_t = model.region_triangles(["face"])
    tri = model.triangles[face_t]
    jaw = np.linalg.norm(model.expression_basis[model.expression_index("jawOpen")], axis=-1)[tri].mean(1)
    blink = np.maximum(np.linalg.norm(model.expression_basis[model.expression_index("eyeBlink_L")], axis=-1),
                       np.linalg.norm(model.expression_basis[model.expression_index("eyeBlink_R")], axis=-1))[tri].mean(1)
    allowed = {"face": face_t, "upper_lip": face_t[jaw < 1.0], "lower_lip": face_t[jaw >= 1.0],
               "upper_lid": face_t[blink >= 0.45], "lower_lid": face_t[blink < 0.45],
               "iris": model.region_triangles(["eyeball_left", "eyeball_right"]),
               "oval": model.region_triangles(["face", "head_neck"])}  # the outline may reach past the face region
    return g, allowed


def iris_points(model: FaceModel, verts: np.ndarray) -> dict[int, np.ndarray]:
    """3D target of each iris landmark on the eyeballs of mesh `verts` (ICT frame, looking along +z)."""
    out = {}
    for region, ids in (("eyeball_right", C.RIGHT_IRIS), ("eyeball_left", C.LEFT_IRIS)):
        r = model.regions[region]
        ev = verts[r.v0:r.v1]
        centre = 0.5 * (ev.min(0) + ev.max(0))
        radius = 0.5 * float(np.ptp(ev[:, 0]))
        theta = np.arcsin(min(0.95, IRIS_RADIUS / radius))
        dirs = [np.array([0, 0, 1.0])]
        for d in ([1, 0], [0, 1], [-1, 0], [0, -1]):  # image +x, up (world +y), -x, down
            dirs.append(np.array([np.sin(theta) * d[0], np.sin(theta) * d[1], np.cos(theta)]))
        for i, d in zip(ids, dirs):
            out[i] = centre + 2.0 * radius * d  # outside the cornea: its closest point is on the front
    return out


def register_canonical(model: FaceModel, iters: int = 12, verbose: bool = True):
    """Step 1. -> (tri (478,), bary (478, 3), mp_to_ict (4, 4), identity, expression, stats)."""
    from scipy.optimize import lsq_linear

    mp, _, _ = canonical_face_mesh()
    mp = mp.astype(np.float64)
    grp, allowed = groups(model)
    a_mp = np.array([a for a, _ in ANCHORS])
    a_ict = model.landmark68[[b for _, b in ANCHORS]]
    T = umeyama(mp[a_mp], model.neutral[a_ict].astype(np.float64))
    ident = np.zeros(len(model.identity_basis))
    expr = np.zeros(len(model.expression_basis))
    ib = model.identity_basis.reshape(len(ident), -1).astype(np.float64)
    eb = model.expression_basis.reshape(len(expr), -1).astype(np.float64)
    tri = np.zeros(C.NUM_LANDMARKS, np.int64)
    bary = np.zeros((C.NUM_LANDMARKS, 3), np.float32)
    lam_id, lam_e, w_anchor = 2e-3, 1e-2, 1.0
    for it in range(iters):
        verts = model.neutral + (ident @ ib + expr @ eb).reshape(-1, 3)
        target = apply(T, mp)  # canonical vertices in the ICT frame
        for gi, gname in enumerate(GROUPS):
            idx = np.flatnonzero(grp[:468] == gi)
            if gname == "iris" or not len(idx):
                continue
            tri[idx], bary[idx], _ = C.closest_points(target[idx], verts, model.triangles, allowed[gname])
        # linear least squares: surface points (and anchor vertices) onto the mapped canonical vertices
        rows_n, rows_i, rows_e, rows_t, wts = [], [], [], [], []
        idx = model.triangles[tri[:468]]
        b = bary[:468].astype(np.float64)[..., None]
        rows_n.append((model.neutral[idx] * b).sum(1).reshape(-1))
        rows_i.append((model.identity_basis[:, idx] * b).sum(2).reshape(len(ident), -1))
        rows_e.append((model.expression_basis[:, idx] * b).sum(2).reshape(len(expr), -1))
        rows_t.append(target.reshape(-1))
        wts.append(np.ones(468 * 3))
        rows_n.append(model.neutral[a_ict].reshape(-1))
        rows_i.append(model.identity_basis[:, a_ict].reshape(len(ident), -1))
        rows_e.append(model.expression_basis[:, a_ict].reshape(len(expr), -1))
        rows_t.append(target[a_mp].reshape(-1))
        wts.append(np.full(len(a_mp) * 3, w_anchor))
        n0, Bi, Be, y, w = (np.concatenate(rows_n), np.concatenate(rows_i, 1), np.concatenate(rows_e, 1),
                            np.concatenate(rows_t), np.sqrt(np.concatenate(wts)))
        A = np.concatenate([Bi.T, Be.T], 1) * w[:, None]
        rhs = (y - n0) * w
        reg = np.diag(np.r_[np.full(len(ident), np.sqrt(lam_id * len(y))), np.full(len(expr), np.sqrt(lam_e * len(y)))])
        A2 = np.concatenate([A, reg])
        rhs2 = np.concatenate([rhs, np.zeros(len(ident) + len(expr))])
        lo = np.r_[np.full(len(ident), -np.inf), np.zeros(len(expr))]
        hi = np.r_[np.full(len(ident), np.inf), np.ones(len(expr))]
        sol = lsq_linear(A2, rhs2, bounds=(lo, hi), method="bvls")
        ident, expr = sol.x[:len(ident)], sol.x[len(ident):]
        # re-fit the similarity to the surface points (and anchors) of the new shape
        verts = model.neutral + (ident @ ib + expr @ eb).reshape(-1, 3)
        pts = surface_points(verts, model.triangles, tri[:468], bary[:468])
        src = np.concatenate([mp, mp[a_mp]])
        dst = np.concatenate([pts, verts[a_ict]])
        T = umeyama(src, dst, np.r_[np.ones(468), np.full(len(a_mp), w_anchor)])
        res = np.linalg.norm(apply(T, mp) - pts, axis=1)
        anc = np.linalg.norm(apply(T, mp[a_mp]) - verts[a_ict], axis=1)
        if verbose:
            print(f"  register {it}: surface residual mean {res.mean():.3f} cm, max {res.max():.3f}; anchors mean "
                  f"{anc.mean():.3f} cm; |identity| {np.linalg.norm(ident):.2f}; expression > 0.05: "
                  + ", ".join(f"{model.expression_names[j]} {expr[j]:.2f}" for j in np.flatnonzero(expr > 0.05)),
                  file=sys.stderr)
    verts = model.neutral + (ident @ ib + expr @ eb).reshape(-1, 3)
    for i, p in iris_points(model, verts).items():
        tri[i:i + 1], bary[i:i + 1], _ = C.closest_points(p[None], verts, model.triangles, allowed["iris"])
    stats = {"surface_residual_mean_cm": float(res.mean()), "surface_residual_max_cm": float(res.max()),
             "anchor_residual_mean_cm": float(anc.mean()), "scale": float(np.cbrt(np.linalg.det(T[:3, :3])))}
    return tri, bary, T, ident, expr, grp, stats


def load_clip(path: Path, max_frames: int = 150) -> dict:
    """A prepared dataset's tracks (every k-th frame so at most `max_frames`) and image size."""
    t = np.load(path / "tracks.npz")
    size = json.loads((path / "manifest.json").read_text())["size"]
    n = len(t["tracked"])
    step = max(1, int(np.ceil(n / max_frames)))
    sel = slice(0, n, step)
    return {"name": path.name, "landmarks": t["landmarks"][sel, :, :2], "blendshapes": t["blendshapes"][sel],
            "tracked": t["tracked"][sel], "K": t["K"], "size": size}


def refine(model: FaceModel, tri, bary, T, grp, weight, clips: list[dict], rounds: int, inner: int = 4,
           robust_px: float = 3.0, max_step_cm: float = 0.3, verbose: bool = True):
    """Step 2: move each landmark over the ICT surface to where it fits tracked frames best.

    Per round: fit every clip with the current table (`emogs.mesh.fit.fit_landmarks`); move every landmark
    by the mean effect of the clips' resting expressions (each coefficient's 5th percentile in a clip: what
    every clip needs even at rest is a difference in where the landmark sits, not expression); fit again;
    then `inner` times: per landmark, one damped Gauss-Newton step (at most `max_step_cm`) on its two
    barycentric coordinates (extended over the triangle's plane) using all frames of all clips (each clip
    weighted by 1/frames, Geman-McClure weights), applied on the neutral mesh and projected back onto the
    landmark's allowed surface."""
    from emogs.mesh.correspondence import Correspondence
    from emogs.mesh.fit import fit_landmarks

    _, allowed = groups(model)
    history = []

    def fit_all():
        corr = Correspondence(tri, bary, weight, T, VERSION, grp, GROUPS)
        return [fit_landmarks(model, corr, c["landmarks"], c["size"], c["blendshapes"], c["tracked"], c["K"])
                for c in clips]

    def reproject(Xn):
        for gi, gname in enumerate(GROUPS):
            idx = np.flatnonzero(grp == gi)
            if len(idx):
                tri[idx], bary[idx], _ = C.closest_points(Xn[idx], model.neutral, model.triangles, allowed[gname])

    for rd in range(rounds):
        fits = fit_all()
        # rest transfer: a clip's resting expression (5th percentile of each coefficient) that every clip
        # needs is a landmark-definition difference, not expression: move the landmarks by its mean effect
        rest = np.stack([np.percentile(ft.expression, 5, axis=0) for ft in fits])  # (clips, E)
        vid = model.triangles[tri]
        Be = (model.expression_basis[:, vid] * bary[None, :, :, None]).sum(2)  # (E, P, 3)
        shift = np.einsum("ce,epk->pk", rest, Be) / len(fits)
        Xn = (model.neutral[vid] * bary[..., None]).sum(1) + shift
        reproject(Xn)
        history.append({"round": rd, "rest_transfer_mean_mm": float(np.linalg.norm(shift, axis=1).mean() * 10),
                        "mean_rest": {model.expression_names[j]: round(float(rest[:, j].mean()), 3)
                                      for j in np.argsort(-rest.mean(0))[:8]}})
        if verbose:
            print(f"  refine round {rd}: rest transfer moved landmarks {np.linalg.norm(shift, axis=1).mean() * 10:.2f} mm "
                  f"on average; largest mean rests: {history[-1]['mean_rest']}", file=sys.stderr)
        fits = fit_all()
        for it in range(inner):
            H = np.zeros((C.NUM_LANDMARKS, 2, 2))
            g = np.zeros((C.NUM_LANDMARKS, 2))
            errs = []
            for c, ft in zip(clips, fits):
                vid = model.triangles[tri]  # (P, 3) vertex ids
                v = (model.neutral[vid] + np.einsum("i,ipkd->pkd", ft.identity, model.identity_basis[:, vid])
                     )[None] + np.einsum("nj,jpkd->npkd", ft.expression, model.expression_basis[:, vid])  # (N, P, 3, 3)
                X = (bary[None, :, :, None] * v).sum(2)  # (N, P, 3)
                Y = np.einsum("nij,npj->npi", ft.rotation, X) + ft.translation[:, None]
                f = ft.K[0, 0]
                z = Y[..., 2]
                u = f * Y[..., :2] / z[..., None] + ft.K[:2, 2]
                r = u - c["landmarks"]  # (N, P, 2) px
                sc = 512.0 / c["size"]
                r2 = (r ** 2).sum(-1) * sc * sc
                w = (robust_px ** 2 / (robust_px ** 2 + r2)) ** 2 * np.where(c["tracked"], 1.0, 0.3)[:, None]
                A = np.zeros(Y.shape[:2] + (2, 3))
                A[..., 0, 0] = A[..., 1, 1] = f / z
                A[..., 0, 2] = -f * Y[..., 0] / z ** 2
                A[..., 1, 2] = -f * Y[..., 1] / z ** 2
                Tb = np.stack([v[:, :, 1] - v[:, :, 0], v[:, :, 2] - v[:, :, 0]], -1)  # (N, P, 3, 2) dX/d(b1, b2)
                J = A @ np.einsum("nij,npjk->npik", ft.rotation, Tb) * sc  # (N, P, 2, 2) in 512-px units
                rs = r * sc
                H += np.einsum("np,npai,npaj->pij", w, J, J) / len(r)
                g += np.einsum("np,npai,npa->pi", w, J, rs) / len(r)
                errs.append(np.sqrt(r2) / sc)
            # damped (the view direction is nearly unobservable at the face's sides) and capped steps
            lam = 1e-2 * np.trace(H, axis1=1, axis2=2)[:, None, None] * np.eye(2) + 1e-9 * np.eye(2)
            db = -np.linalg.solve(H + lam, g[..., None])[..., 0]  # (P, 2)
            vn = model.neutral[model.triangles[tri]].astype(np.float64)  # (P, 3, 3)
            step = db[:, :1] * (vn[:, 1] - vn[:, 0]) + db[:, 1:] * (vn[:, 2] - vn[:, 0])
            moved = np.linalg.norm(step, axis=1)
            step *= np.minimum(1.0, max_step_cm / np.maximum(moved, 1e-9))[:, None]
            moved = np.minimum(moved, max_step_cm)
            reproject((bary[..., None] * vn).sum(1) + step)
            e = np.concatenate([x.reshape(-1) for x in errs])
            history.append({"round": rd, "inner": it, "median_px_before": float(np.median(e)),
                            "mean_move_cm": float(moved.mean()), "max_move_cm": float(moved.max())})
            if verbose:
                print(f"  refine round {rd} step {it}: median error before the step {np.median(e):.3f} px "
                      f"(p95 {np.percentile(e, 95):.2f}); moved mean {moved.mean() * 10:.2f} mm, max "
                      f"{moved.max() * 10:.2f} mm", file=sys.stderr)
    return tri, bary, history


def fitting_weights(grp: np.ndarray) -> np.ndarray:
    w = np.ones(C.NUM_LANDMARKS, np.float32)
    w[grp == GROUPS.index("iris")] = 0.5
    return w


def save(path: Path, tri, bary, weight, T, grp, meta: dict) -> None:
    from emogs.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, tri=tri.astype(np.int32), bary=bary.astype(np.float32), weight=weight.astype(np.float32),
                            mp_to_ict=T, version=np.int64(VERSION), group=grp.astype(np.int8),
                            group_names=np.array(GROUPS), meta=np.array(json.dumps(meta)))


def picture(path: Path, model: FaceModel, tri, bary, T, ident, expr) -> None:
    """The ICT face at the registration's identity and expression with the correspondence (red) and the
    registered canonical vertices (blue): frontal, 40 degrees to either side (points on triangles facing away
    hidden), and the eye and mouth regions enlarged."""
    import cv2

    from emogs.io.atomic import atomic_path
    from emogs.mesh.draw import draw_points, render_mesh
    from emogs.mesh.ict import HEAD_REGIONS

    sub = model.submesh(list(HEAD_REGIONS))
    vs = sub.vertices(ident, expr)
    verts_full = model.vertices(ident, expr)
    pts = surface_points(verts_full, model.triangles, tri, bary)
    tv = verts_full[model.triangles[tri]]
    nrm = np.cross(tv[:, 1] - tv[:, 0], tv[:, 2] - tv[:, 0])
    mp, _, _ = canonical_face_mesh()
    mpt = apply(T, mp.astype(np.float64))

    def view(yaw: float, size: int, f: float, centre, dist: float = 90.0) -> np.ndarray:
        a = np.radians(yaw)
        R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        w2c = np.diag([1.0, -1.0, -1.0, 1.0])
        w2c[:3, :3] = w2c[:3, :3] @ R
        w2c[:3, 3] = -w2c[:3, :3] @ np.asarray(centre) + np.array([0, 0, dist])
        K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
        img, _ = render_mesh(vs, sub.triangles, K, w2c, size, size)
        im = (img * 255).astype(np.uint8)
        cam = lambda p: p @ w2c[:3, :3].T + w2c[:3, 3]  # noqa: E731
        uv = lambda p: (cam(p) @ K.T)[:, :2] / (cam(p) @ K.T)[:, 2:3]  # noqa: E731
        towards = -cam(pts)  # from the point to the camera, camera frame
        vis = ((nrm @ w2c[:3, :3].T) * towards).sum(1) > 0
        im = draw_points(im, uv(mpt[vis[:468]]), (40, 90, 255), 2)
        return draw_points(im, uv(pts[vis]), (255, 40, 40), 2)

    face_c = np.array([0.0, 0.5, 6.0])
    top = np.hstack([view(-40, 600, 1500, face_c), view(0, 600, 1500, face_c), view(40, 600, 1500, face_c)])
    eyes = view(0, 600, 4200, pts[[33, 263]].mean(0), 90)[150:450]
    mouth = view(0, 600, 4200, pts[[61, 291]].mean(0), 90)[150:450]
    bottom = np.hstack([eyes, mouth, np.zeros((300, 600, 3), np.uint8)])
    sheet = np.vstack([top, bottom])
    for k, txt in enumerate(["red: MediaPipe landmarks on ICT (this table)", "blue: MediaPipe's canonical face, registered",
                             "(points on faces turned away are hidden)"]):
        cv2.putText(sheet, txt, (1210, 640 + 30 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), sheet[..., ::-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=C.DATA_FILE)
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "mesh" / "correspondence.png")
    ap.add_argument("--refine-clips", nargs="*", type=Path, default=[])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ict", default=None, help="ICT-FaceKit path (default: found as emogs finds it)")
    ap.add_argument("--picture-only", action="store_true", help="only draw the PNG of the table at --out")
    a = ap.parse_args()
    model = load_ict(a.ict)
    t0 = time.perf_counter()
    tri, bary, T, ident, expr, grp, stats = register_canonical(model, verbose=not a.picture_only)
    if a.picture_only:
        c = C.load_correspondence(a.out)
        picture(a.png, model, c.tri, c.bary, c.mp_to_ict, ident, expr)
        return
    print(f"registration: {json.dumps(stats)} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    weight = fitting_weights(grp)
    meta = {"registration": stats, "refine_clips": [p.name for p in a.refine_clips]}
    if a.refine_clips:
        clips = [load_clip(p) for p in a.refine_clips]
        tri, bary, hist = refine(model, tri, bary, T, grp, weight, clips, a.rounds)
        meta["refine"] = hist
    save(a.out, tri, bary, weight, T, grp, meta)
    picture(a.png, model, tri, bary, T, ident, expr)
    print(f"wrote {a.out} and {a.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
