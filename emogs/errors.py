"""User-facing errors: the CLI prints their message on one line and exits non-zero."""
from __future__ import annotations


class EmogsError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class InputError(EmogsError):
    """Bad input file or argument (not a video, no face, no audio, ...)."""


class MissingAssetError(EmogsError):
    """A model file that should come from an installed package is missing."""
