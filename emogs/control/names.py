"""The 17 AU names for the control room (from `emogs.face.aus`), and name normalisation with suggestions."""
from __future__ import annotations

import difflib
import re

from emogs.errors import InputError
from emogs.face import aus as _aus

AU_NAMES: tuple[str, ...] = tuple(_aus.AU_NAMES)
UPPER_AUS: tuple[str, ...] = tuple(_aus.UPPER_AUS)
LOWER_AUS: tuple[str, ...] = tuple(_aus.LOWER_AUS)
NUM_AUS = len(AU_NAMES)
AU_INDEX: dict[str, int] = {n: i for i, n in enumerate(AU_NAMES)}

# FACS AUs a user may know that the 17-AU (OpenFace) set does not contain.
_FACS_NOT_MODELLED = {11: "nasolabial deepener", 13: "cheek puffer", 16: "lower lip depressor",
                      18: "lip pucker", 22: "lip funneler", 24: "lip pressor", 27: "mouth stretch",
                      28: "lip suck", 43: "eyes closed (use AU45)", 46: "wink"}

_AU_RE = re.compile(r"^au\s*0*(\d{1,2})(?:_r)?$", re.IGNORECASE)


def normalize_au(name: str) -> str:
    """'au12', 'AU12_r', 'AU1' -> canonical 'AU12' / 'AU01'; InputError (with a suggestion) otherwise."""
    raw = name.strip()
    m = _AU_RE.match(raw)
    if m:
        canon = f"AU{int(m.group(1)):02d}"
        if canon in AU_INDEX:
            return canon
        num = int(m.group(1))
        if num in _FACS_NOT_MODELLED:
            raise InputError(f"{canon} ({_FACS_NOT_MODELLED[num]}) is not one of the 17 AUs the model knows: "
                             f"{' '.join(AU_NAMES)}")
        close = [min(AU_NAMES, key=lambda n: abs(int(n[2:]) - num))]  # numerically nearest
    else:
        close = difflib.get_close_matches(raw.upper(), AU_NAMES, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise InputError(f"unknown AU '{raw}'{hint}; valid: {' '.join(AU_NAMES)}")


def is_au_like(name: str) -> bool:
    """True for column names that look like an AU intensity ('AU12', 'AU12_r'), known or not."""
    return _AU_RE.match(name.strip()) is not None
