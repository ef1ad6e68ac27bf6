"""Standard 3DGS `.ply` files (as written by the INRIA code and read by common viewers).

Per vertex, float32: x y z, nx ny nz (zeros), f_dc_0..2, f_rest_0..(3(K-1)-1) (channel-major: all red coefficients,
then green, then blue), opacity (logit), scale_0..2 (log), rot_0..3 (quaternion wxyz, stored unnormalised is
allowed). In memory we use linear opacities in [0, 1], linear scales and SH (N, K, 3).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from emogs.errors import InputError
from emogs.io.atomic import atomic_path

_PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
              "float": "f4", "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
              "int32": "i4", "uint32": "u4", "float32": "f4", "float64": "f8"}


def _np(x: Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).numpy()


def save_ply(path: str | os.PathLike, means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
             sh: Tensor) -> None:
    """Write Gaussians: means (N,3), quats (N,4) wxyz, scales (N,3) linear, opacities (N,) in (0,1),
    sh (N,K,3) with K a square (1, 4, 9, 16, 25); sh[:, 0] is the DC term (rgb = 0.5 + C0 * f_dc)."""
    n = means.shape[0]
    if sh.dim() != 3 or sh.shape[0] != n or sh.shape[2] != 3:
        raise ValueError(f"sh must be (N, K, 3), got {tuple(sh.shape)}")
    k = sh.shape[1]
    if int(round(k ** 0.5)) ** 2 != k:
        raise ValueError(f"number of SH coefficients must be a square, got {k}")
    op = np.clip(_np(opacities).reshape(n), 1e-6, 1 - 1e-6)
    rest = _np(sh[:, 1:]).transpose(0, 2, 1).reshape(n, 3 * (k - 1))  # channel-major like 3DGS
    cols = [_np(means), np.zeros((n, 3), np.float32), _np(sh[:, 0]), rest,
            np.log(op / (1 - op))[:, None], np.log(np.maximum(_np(scales), 1e-30)), _np(quats)]
    data = np.ascontiguousarray(np.concatenate(cols, axis=1), dtype="<f4")
    names = (["x", "y", "z", "nx", "ny", "nz"] + [f"f_dc_{i}" for i in range(3)] +
             [f"f_rest_{i}" for i in range(3 * (k - 1))] + ["opacity"] + [f"scale_{i}" for i in range(3)] +
             [f"rot_{i}" for i in range(4)])
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {n}\n" + \
        "".join(f"property float {p}\n" for p in names) + "end_header\n"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(data.tobytes())


def _read_header(f) -> tuple[str, int, list[tuple[str, str]], list[tuple[str, int, list]]]:
    """-> (format, vertex count, vertex properties [(name, numpy type)], other elements before/after)."""
    if f.readline().strip() != b"ply":
        raise InputError("not a PLY file")
    fmt, elements, cur = None, [], None
    while True:
        line = f.readline()
        if not line:
            raise InputError("PLY header has no end_header")
        parts = line.decode("ascii", "replace").split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "end_header":
            break
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            cur = (parts[1], int(parts[2]), [])
            elements.append(cur)
        elif parts[0] == "property":
            if cur is None or parts[1] == "list":
                raise InputError("unsupported PLY property layout (list properties are not Gaussian splats)")
            if parts[1] not in _PLY_TYPES:
                raise InputError(f"unknown PLY property type {parts[1]}")
            cur[2].append((parts[2], _PLY_TYPES[parts[1]]))
    if not elements or elements[0][0] != "vertex":
        raise InputError("PLY file has no leading vertex element")
    return fmt or "", elements[0][1], elements[0][2], elements


def load_ply(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a 3DGS PLY -> dict of float32 tensors: means (N,3), quats (N,4) wxyz normalised, scales (N,3) linear,
    opacities (N,) in (0,1), sh (N,K,3)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such PLY file: {path}")
    with open(path, "rb") as f:
        fmt, n, props, _ = _read_header(f)
        if fmt not in ("binary_little_endian", "binary_big_endian"):
            raise InputError(f"PLY format {fmt!r} not supported (binary only)")
        end = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, end + t) for name, t in props])
        raw = np.fromfile(f, dtype=dtype, count=n)
    if raw.shape[0] != n:
        raise InputError(f"PLY file truncated: {raw.shape[0]} of {n} vertices")
    names = set(dtype.names)
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [p for p in need if p not in names]
    if missing:
        raise InputError(f"not a 3DGS PLY (missing {', '.join(missing)})")
    col = lambda *ps: np.stack([raw[p].astype(np.float32) for p in ps], axis=1)  # noqa: E731
    n_rest = sum(1 for p in names if p.startswith("f_rest_"))
    if n_rest % 3:
        raise InputError(f"f_rest count {n_rest} is not a multiple of 3")
    dc = col("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :]  # (N, 1, 3)
    if n_rest:
        rest = col(*[f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, n_rest // 3).transpose(0, 2, 1)
        sh = np.concatenate([dc, rest], axis=1)
    else:
        sh = dc
    quats = torch.from_numpy(col("rot_0", "rot_1", "rot_2", "rot_3"))
    return {
        "means": torch.from_numpy(col("x", "y", "z")),
        "quats": torch.nn.functional.normalize(quats, dim=-1),
        "scales": torch.from_numpy(np.exp(col("scale_0", "scale_1", "scale_2"))),
        "opacities": torch.sigmoid(torch.from_numpy(raw["opacity"].astype(np.float32))),
        "sh": torch.from_numpy(np.ascontiguousarray(sh)),
    }
