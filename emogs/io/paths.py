"""Checks of the paths a command reads and writes, made before any long work (rules: docs/errors.md).

    input_file(path, "--audio")                      exists, is a file (a folder is named as one), readable
    input_dir(path, "run folder")                    exists, is a folder
    output_file(path, inputs=[...], force=False)     not a folder, not an input, writable; an existing file
                                                     only with force (the "--force" rule)
    output_dir(path, inputs=[...], writes=[...])     not a file, writable, holds no input (or: none of the
                                                     files it will write is an input)

Every problem is an `InputError` with one line that names the path and says what to do.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterable

from emogs.errors import InputError

PathLike = str | os.PathLike


def _real(path: PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when `a` and `b` name the same file (after links; hard links too when both exist)."""
    if _real(a) == _real(b):
        return True
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)
    return False


def is_inside(path: PathLike, folder: PathLike) -> bool:
    """True when `path` is `folder` or lies somewhere below it (after links)."""
    p, f = _real(path), _real(folder)
    return p == f or f in p.parents


def input_file(path: PathLike, what: str = "input") -> Path:
    """An existing, readable file, else InputError ('no such file' / 'is a folder' / 'cannot be read')."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a folder; {what} must be a file")
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if not p.is_file():
        raise InputError(f"{p}: not a regular file; {what} must be a file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: cannot be read (permission denied)")
    return p


def input_dir(path: PathLike, what: str = "input folder") -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{p}: is a file; {what} must be a folder")
    if not p.is_dir():
        raise InputError(f"{p}: no such folder")
    return p


def _existing_ancestor(p: Path) -> Path:
    """The nearest existing ancestor of `p` (a folder), or InputError when a file stands in the way."""
    a = p.absolute().parent
    while not a.exists():
        a = a.parent
    if not a.is_dir():
        raise InputError(f"{p}: {a} is a file, not a folder; choose another output path")
    return a


def check_writable(folder: Path, target: Path) -> None:
    """Create and delete a probe file in `folder`: the honest test (read-only mounts, permissions, root)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".emogs-write-test.", dir=folder)
    except OSError as e:
        why = "read-only file system" if e.errno == errno.EROFS else (e.strerror or type(e).__name__).lower()
        raise InputError(f"{target}: cannot write in {folder} ({why}); choose a writable output place") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _check_not_input(path: Path, inputs: Iterable[PathLike | None], what: str) -> None:
    for src in inputs:
        if src is not None and same_file(path, src):
            raise InputError(f"{path}: is also an input of this command ({src}); writing it would destroy "
                             f"the input: choose another {what}")


def output_file(path: PathLike, inputs: Iterable[PathLike | None] = (), force: bool = False,
                what: str = "output file") -> Path:
    """Check an output file before any work: not a folder, no file in the way, not one of `inputs`,
    a writable folder, and (unless `force`) not an existing file."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a folder; the {what} must be a file name (e.g. a new file inside it)")
    _check_not_input(p, inputs, what)
    anc = _existing_ancestor(p)
    if p.exists() and not force:
        raise InputError(f"{p}: exists; pass --force to replace it, or choose another {what}")
    check_writable(anc, p)
    return p


def output_dir(path: PathLike, inputs: Iterable[PathLike | None] = (), writes: Iterable[str] | None = None,
               what: str = "output folder") -> Path:
    """Check an output folder before any work: not a file, writable, and either holding none of `inputs`
    (`writes` None: the command owns the folder) or writing none of them (`writes`: the file names it
    will write there)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{p}: exists and is a file; the {what} must be a folder")
    inputs = [i for i in inputs if i is not None]
    if writes is None:
        for src in inputs:
            if is_inside(src, p):
                raise InputError(f"{p}: holds {src}, an input of this command; choose an {what} that does "
                                 "not contain the input")
    else:
        for name in writes:
            _check_not_input(p / name, inputs, what)
    check_writable(p if p.is_dir() else _existing_ancestor(p), p)
    return p
