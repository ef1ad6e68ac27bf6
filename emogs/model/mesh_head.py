"""MeshHead: the EmoZone-Talker head on a parametric face mesh (ICT-FaceKit), Gaussians bound to its triangles.

Per frame the person's mesh is posed by its expression coefficients, `v(e) = v_neutral + sum_j e_j B_j` (the
identity is baked into `v_neutral`; the head's rigid motion is the camera), each Gaussian rides its parent
triangle (`emogs.model.binding`), and the EmoZone-Talker deformation (SZ-PAB over audio and CIT-AE AU tokens,
the AU basis) adds person-specific residuals in the triangle's local frame: position, rotation, scale (local
units, so they scale with the triangle), colour and opacity. Everything the mesh does is geometry that holds
for any expression, seen in training or not; the residual is what the clip taught.

Inputs per frame: audio feature window (B, R, D), AU window (B, T, 17), expression (B, E) (absolute ICT
coefficients; None = the training mean, the default face). Pure: arrays and modules, no files.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from emogs.model.binding import quat_conj, quat_mul, rotmat_to_quat, to_local, to_world, triangle_frames
from emogs.model.config import ModelConfig
from emogs.model.gaussians import GaussianSet
from emogs.model.head import TalkingHead


class MeshHead(TalkingHead):
    def __init__(self, cfg: ModelConfig, gaussians: GaussianSet, neutral: torch.Tensor, basis: torch.Tensor,
                 triangles: torch.Tensor, expr_mean: torch.Tensor | None = None,
                 box_lo: torch.Tensor | None = None, box_hi: torch.Tensor | None = None) -> None:
        if not gaussians.bound:
            raise ValueError("a MeshHead needs Gaussians bound to triangles (GaussianSet(bound=True))")
        E = basis.shape[0]
        em = torch.zeros(E) if expr_mean is None else torch.as_tensor(expr_mean, dtype=torch.float32)
        if box_lo is None or box_hi is None:
            m = self._canonical(gaussians, neutral, basis, triangles, em).detach()
            pad = 0.15 * (m.max(0).values - m.min(0).values)
            box_lo, box_hi = m.min(0).values - pad, m.max(0).values + pad
        super().__init__(cfg, gaussians, box_lo, box_hi)
        self.register_buffer("mesh_neutral", torch.as_tensor(neutral, dtype=torch.float32))  # (V, 3) cm
        # (E, V, 3) expression deltas, stored in float16 (halves the run's size; < 1e-3 cm error on deltas of a
        # few cm), computed in float32
        self.register_buffer("mesh_basis", torch.as_tensor(basis).to(torch.float16))
        self.register_buffer("mesh_triangles", torch.as_tensor(triangles, dtype=torch.long))  # (T, 3)
        self.register_buffer("expr_mean", em)  # (E,) the training clip's mean expression (the default face)

    @staticmethod
    def _canonical(g: GaussianSet, neutral, basis, tris, expr) -> torch.Tensor:
        v = neutral + torch.einsum("e,evc->vc", expr, basis.to(expr.dtype))
        c, R, k = triangle_frames(v, tris)
        return to_world(g.means, g.parent, c, R, k)

    @classmethod
    def from_state_dict(cls, cfg: ModelConfig, state: dict[str, torch.Tensor]) -> "MeshHead":
        g = GaussianSet(state["gaussians.means"].shape[0], bound=True)
        model = cls(cfg, g, state["mesh_neutral"], state["mesh_basis"], state["mesh_triangles"],
                    state["expr_mean"], state["encoding.lo"], state["encoding.hi"])
        model.load_state_dict(state)
        return model

    @property
    def num_expressions(self) -> int:
        return int(self.mesh_basis.shape[0])

    def mesh_vertices(self, expression: torch.Tensor) -> torch.Tensor:
        """(B, E) expression coefficients -> (B, V, 3) posed vertices of the person's mesh."""
        return self.mesh_neutral + torch.einsum("be,evc->bvc", expression, self.mesh_basis.to(expression.dtype))

    def canonical_positions(self) -> torch.Tensor:
        """(N, 3) world positions at the default face: what the tri-plane encodes."""
        return self._canonical(self.gaussians, self.mesh_neutral, self.mesh_basis, self.mesh_triangles,
                               self.expr_mean)

    def canonical_gaussians(self) -> dict[str, torch.Tensor]:
        """The bound Gaussians on the mesh at the default face, without network residuals (world frame)."""
        g = self.gaussians
        v = self.mesh_vertices(self.expr_mean[None])[0]
        c, R, k = triangle_frames(v, self.mesh_triangles)
        p = g.parent
        return dict(means=to_world(g.means, p, c, R, k), quats=quat_mul(rotmat_to_quat(R[p]), F.normalize(g.quats, dim=-1)),
                    scales=k[p][:, None] * g.log_scales.exp(), opacities=torch.sigmoid(g.opacity_logit),
                    colors=torch.sigmoid(g.color_logit))

    def static_deps(self) -> list[torch.Tensor]:
        return super().static_deps() + [self.mesh_neutral, self.mesh_basis, self.expr_mean]

    def deformed(self, audio: torch.Tensor, au_window: torch.Tensor, expression: torch.Tensor | None = None) -> dict:
        """audio (B,R,D), au_window (B,T,K), expression (B,E) or None -> per-frame Gaussians in the head's
        world frame (means, quats, scales, opacities, colors) plus attn, token_type and the offsets (local
        frame; layout `emogs.model.deform.OUT_DIM`: dxyz 3, dquat 4, dlog-scale 3, dcolour 3, dopacity 1)."""
        g = self.gaussians
        off, attn, ttype = self.offsets(audio, au_window)
        B = off.shape[0]
        if expression is None:
            expression = self.expr_mean.expand(B, -1)
        c, R, k = triangle_frames(self.mesh_vertices(expression), self.mesh_triangles)  # (B, T, ...)
        p = g.parent
        Rp, kp = R[:, p], k[:, p]  # (B, N, 3, 3), (B, N)
        local = g.means + off[..., 0:3]
        means = c[:, p] + kp[..., None] * (Rp @ local[..., None])[..., 0]
        q_local = F.normalize(g.quats + off[..., 3:7], dim=-1)
        quats = quat_mul(rotmat_to_quat(Rp), q_local)
        return dict(
            means=means, quats=quats, scales=kp[..., None] * torch.exp(g.log_scales + off[..., 7:10]),
            colors=torch.sigmoid(g.color_logit + off[..., 10:13]),
            opacities=torch.sigmoid(g.opacity_logit + off[..., 13]),
            attn=attn, token_type=ttype, offsets=off)



# -- initialisation --------------------------------------------------------------------------------------
FACE_DENSITY = 3.0  # initial Gaussians per area on the face region relative to the head/neck (mostly hair-covered)

def _area_sample(verts: np.ndarray, tris: np.ndarray, candidates: np.ndarray, n: int,
                 rng: np.random.Generator, density: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n area-weighted samples on the candidate triangles (times a relative `density` per candidate) ->
    (parent triangle (n,), world point (n, 3))."""
    if n <= 0 or len(candidates) == 0:
        return np.zeros(0, np.int64), np.zeros((0, 3))
    t = verts[tris[candidates]]  # (C, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=-1)
    if density is not None:
        area = area * density
    pick = rng.choice(len(candidates), size=n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], -1)
    return candidates[pick].astype(np.int64), (t[pick] * w[:, :, None]).sum(1)


def _nearest_triangle(points: np.ndarray, centroids: np.ndarray, candidates: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Parent for free points: the candidate triangle with the nearest centroid."""
    c = torch.as_tensor(centroids[candidates], dtype=torch.float32)
    out = []
    for i in range(0, len(points), chunk):
        d = torch.cdist(torch.as_tensor(points[i:i + chunk], dtype=torch.float32), c)
        out.append(d.argmin(1).numpy())
    return candidates[np.concatenate(out)] if out else np.zeros(0, np.int64)


def init_mesh_gaussians(neutral: np.ndarray, basis: np.ndarray, triangles: np.ndarray,
                        regions: dict[str, tuple[int, int]], expr_mean: np.ndarray, init_views: list,
                        init_expr: np.ndarray, vote_views: list, vote_expr: np.ndarray, num_face: int,
                        num_shell: int, num_mouth: int, seed: int = 0, eyeball_init: str = "sphere") -> GaussianSet:
    """Bound Gaussians for a MeshHead from the person's mesh and a few frames (pure arrays in).

    - surface: area-weighted samples on the face (FACE_DENSITY times denser), head/neck and eyeball
      triangles at the default face;
    - mouth interior: samples on the mouth socket, gums/tongue and teeth triangles (zone: mouth interior);
    - shell (hair, ears beyond the mesh): head-other pixels of the init views back-projected at the head
      origin's depth (as the free head's shell), each bound to the nearest head/neck or face triangle of
      that view's posed mesh, so it keeps its offset from the scalp as the head moves;
    - zones by a majority vote of the vote views' label maps and colours from the init views, each view
      seeing the Gaussians on its own posed mesh (its tracked expression);
    - isotropic scales from the nearest-neighbour distance, in parent-triangle units;
    - `eyeball_init` "sphere": the eyeball samples over the whole eyeballs; "front" (issue 13): only on the front
      cap (within 75 degrees of the direction to the init views' cameras), and those the lids hide in the first
      init view take the colour of the visible sclera (the brighter half of the visible eyeball samples), so a
      lid raise uncovers eyeball rather than the lid's skin colour sampled through it.
    `regions` maps region name -> (first triangle, end triangle) of `triangles`; views are
    `emogs.model.gaussians.View`s with cameras in the mesh's frame, `*_expr` their expressions (n, E)."""
    from emogs.model.gaussians import _logit, nn_scale, sample_colors, shell_points, vote_zones
    from emogs.model.szpab import ZONE_MOUTH

    rng = np.random.default_rng(seed)
    tris = np.asarray(triangles, np.int64)
    tri_of = lambda names: np.concatenate([np.arange(*regions[n]) for n in names if n in regions] or [np.zeros(0, int)])
    tneutral = torch.as_tensor(neutral, dtype=torch.float32)
    tbasis = torch.as_tensor(basis, dtype=torch.float32)
    ttris = torch.as_tensor(tris)

    def frames(expr: np.ndarray):
        v = tneutral + torch.einsum("e,evc->vc", torch.as_tensor(expr, dtype=torch.float32), tbasis)
        return v.numpy(), triangle_frames(v, ttris)

    vc, (cc, Rc, kc) = frames(expr_mean)
    n_eye = int(0.03 * num_face)
    face_t, head_t = tri_of(["face"]), tri_of(["head_neck"])
    p_face, x_face = _area_sample(vc, tris, np.concatenate([face_t, head_t]), num_face - n_eye, rng,
                                  np.concatenate([np.full(len(face_t), FACE_DENSITY), np.ones(len(head_t))]))
    eye_t = tri_of(["eyeball_left", "eyeball_right"])
    if eyeball_init == "front" and len(eye_t) and init_views:
        from emogs.model.eyelid import eye_spheres

        cams = np.stack([-v.world_to_cam[:3, :3].T @ v.world_to_cam[:3, 3] for v in init_views]).mean(0)
        keep = []
        for _, ctr, _, tid in eye_spheres(vc, tris, regions):
            d, to = vc[tris[tid]].mean(1) - ctr, cams - ctr
            cosang = d @ to / np.maximum(np.linalg.norm(d, axis=1) * np.linalg.norm(to), 1e-12)
            keep.append(tid[cosang > np.cos(np.radians(75.0))])
        eye_t = np.concatenate(keep) if keep else eye_t
    elif eyeball_init not in ("sphere", "front"):
        raise ValueError(f"eyeball_init must be 'sphere' or 'front', got {eyeball_init!r}")
    p_eye, x_eye = _area_sample(vc, tris, eye_t, n_eye, rng)
    p_mouth, x_mouth = _area_sample(vc, tris, tri_of(["mouth_socket", "gums_tongue", "teeth"]), num_mouth, rng)
    parents = [p_face, p_eye, p_mouth]
    locals_ = [to_local(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(p), cc, Rc, kc)
               for p, x in ((p_face, x_face), (p_eye, x_eye), (p_mouth, x_mouth))]
    shell_cand = tri_of(["head_neck", "face"])
    per = max(1, num_shell // max(1, len(init_views)))
    for v, e in zip(init_views, init_expr):  # the shell, view by view on its own posed mesh
        pts = shell_points([v], per, rng)
        if not len(pts):
            continue
        _, (c, R, k) = frames(e)
        par = _nearest_triangle(pts, c.numpy(), shell_cand)
        parents.append(par)
        locals_.append(to_local(torch.as_tensor(pts, dtype=torch.float32), torch.as_tensor(par), c, R, k))
    parent = np.concatenate(parents)
    local = torch.cat(locals_).float()
    tparent = torch.as_tensor(parent)
    mouth = np.zeros(len(parent), bool)
    mouth[len(p_face) + len(p_eye): len(p_face) + len(p_eye) + len(p_mouth)] = True

    def world(expr):
        _, (c, R, k) = frames(expr)
        return to_world(local, tparent, c, R, k).numpy().astype(np.float64)

    zone = vote_zones([world(e) for e in vote_expr], vote_views)
    zone[mouth] = ZONE_MOUTH
    col = sample_colors([world(e) for e in init_expr], init_views)
    col[mouth] = np.array([0.35, 0.12, 0.12]) + rng.normal(0, 0.03, (int(mouth.sum()), 3))  # dark cavity first
    if eyeball_init == "front" and len(p_eye) and init_views:  # the eyeball under the lids: sclera, not skin
        from emogs.model.eyelid import eye_occluders, visible

        v0 = init_views[0]
        seen = visible(x_eye, vc, tris, eye_occluders(vc, tris, regions), v0.K, v0.world_to_cam, v0.image.shape[0])
        ce = col[len(p_face): len(p_face) + len(p_eye)]
        if seen.sum() >= 4:
            lum = ce[seen].mean(1)
            sclera = np.median(ce[seen][lum >= np.median(lum)], 0)
            ce[~seen] = sclera + rng.normal(0, 0.02, (int((~seen).sum()), 3))
            col[len(p_face): len(p_face) + len(p_eye)] = ce
    k_par = kc[tparent].numpy()
    scale = np.clip(nn_scale(world(expr_mean)), 0.02, 2.0) / k_par
    g = GaussianSet(len(parent), bound=True)
    with torch.no_grad():
        g.means.copy_(local)
        g.color_logit.copy_(_logit(np.clip(col, 0.02, 0.98)))
        g.log_scales.copy_(torch.log(torch.as_tensor(scale, dtype=torch.float32).clamp_min(1e-4))[:, None].expand(-1, 3))
        g.opacity_logit.fill_(float(_logit(np.float32(0.3))))
        g.zone.copy_(torch.as_tensor(zone, dtype=torch.long))
        g.parent.copy_(tparent)
        g.parent_scale.copy_(torch.as_tensor(k_par, dtype=torch.float32))
    return g


# -- eyelid re-binding (issue 13) -----------------------------------------------------------------------
def rebind(model: "MeshHead", idx: torch.Tensor, new_parent: torch.Tensor) -> None:
    """Move Gaussians `idx` to parent triangles `new_parent`, re-expressing their local position, rotation and
    scale in the new triangle's frame at the default face, so the head without network residuals
    (`canonical_gaussians`) is unchanged at the default face; the network's residuals (local units) are then
    read in the new frame (a small change: they are offsets of a few local units at most). In place."""
    g = model.gaussians
    if not len(idx):
        return
    with torch.no_grad():
        v = model.mesh_vertices(model.expr_mean[None])[0]
        c, R, k = triangle_frames(v, model.mesh_triangles)
        old, new = g.parent[idx], new_parent.to(g.parent)
        world = to_world(g.means[idx], old, c, R, k)
        q_old = g.quats[idx]
        norm = q_old.norm(dim=-1, keepdim=True)
        q_world = quat_mul(rotmat_to_quat(R[old]), F.normalize(q_old, dim=-1))
        q_new = quat_mul(quat_conj(rotmat_to_quat(R[new])), q_world)
        g.means[idx] = to_local(world, new, c, R, k)
        g.quats[idx] = F.normalize(q_new, dim=-1) * norm  # the same norm: an additive dquat keeps its weight
        g.log_scales[idx] = g.log_scales[idx] + (k[old] / k[new]).log()[:, None]
        g.parent[idx] = new
        g.parent_scale[idx] = k[new]


def eyelid_rebind(model: "MeshHead", regions: dict, margin: float, out_tol: float = 0.05, camera=None) -> int:
    """Re-bind the eyeball-bound Gaussians that belong to the lid (`emogs.model.eyelid.lid_margin_mask` at the
    default face: within `margin` cm of a lid triangle, or more than `out_tol` cm in front of their eyeball
    triangle) to the nearest lid triangle. With `camera` (K, world_to_cam, image size) the margin test counts only
    the Gaussians that camera sees (hidden eyeball under the lid stays, to show when the lid rises). Returns how
    many moved."""
    from emogs.model.eyelid import lid_margin_mask

    with torch.no_grad():
        g = model.gaussians
        v = model.mesh_vertices(model.expr_mean[None])[0]
        c, R, k = triangle_frames(v, model.mesh_triangles)
        world = to_world(g.means, g.parent, c, R, k).cpu().numpy().astype(np.float64)
        normal = (g.means[:, 2] * k[g.parent]).cpu().numpy()  # cm in front of the parent triangle
        vn, tn = v.cpu().numpy().astype(np.float64), model.mesh_triangles.cpu().numpy()
        seen = None
        if camera is not None:
            from emogs.model.eyelid import eye_occluders, visible

            seen = visible(world, vn, tn, eye_occluders(vn, tn, regions), *camera)
        mask, newp = lid_margin_mask(world, g.parent.cpu().numpy(), vn, tn, regions, margin, normal, out_tol,
                                     seen=seen)
        idx = np.nonzero(mask)[0]
        rebind(model, torch.as_tensor(idx, device=g.parent.device), torch.as_tensor(newp[idx], device=g.parent.device))
    return int(len(idx))
