"""emogs.control.parse / names: every --au and --emotion form, and every malformed one."""
from __future__ import annotations

import pytest

from emogs.control.emotions import EMOTION_NAMES
from emogs.control.names import AU_NAMES, normalize_au
from emogs.control.parse import AUSpec, parse_au_spec, parse_emotion
from emogs.errors import InputError


def test_au_names_match_the_contract():
    assert AU_NAMES == ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15",
                        "AU17", "AU20", "AU23", "AU25", "AU26", "AU45")


@pytest.mark.parametrize("text,canon", [("AU12", "AU12"), ("au12", "AU12"), ("AU1", "AU01"), ("AU01_r", "AU01"),
                                        (" au45 ", "AU45"), ("AU012", "AU12")])
def test_normalize(text, canon):
    assert normalize_au(text) == canon


def test_whole_clip_and_ranged_forms():
    assert parse_au_spec("AU12=0.8") == [AUSpec("AU12", 0.8, None, None, "AU12=0.8")]
    [s] = parse_au_spec("AU01=1.0@2.0-4.0")
    assert (s.au, s.value, s.start, s.end, s.ranged) == ("AU01", 1.0, 2.0, 4.0, True)
    [s] = parse_au_spec("au4=0.5@1.5-end")
    assert (s.au, s.start, s.end) == ("AU04", 1.5, None)
    specs = parse_au_spec("AU12=0.8, AU06=0.5@1-2")
    assert [(s.au, s.value, s.start) for s in specs] == [("AU12", 0.8, None), ("AU06", 0.5, 1.0)]
    assert parse_au_spec("AU12=0")[0].value == 0.0 and parse_au_spec("AU12=1")[0].value == 1.0


@pytest.mark.parametrize("spec,match", [
    ("AU03=0.5", r"unknown AU 'AU03' \(did you mean AU02\?\); valid: AU01"),
    ("AU99=0.5", r"did you mean AU45\?"),
    ("AUX12=0.5", r"did you mean AU12\?"),
    ("AU13=0.5", r"AU13 \(cheek puffer\) is not one of the 17"),
    ("AU16=0.5", r"AU16 \(lower lip depressor\) is not one of the 17"),
    ("smile=0.5", r"unknown AU 'smile'"),
    ("AU12=8", r"8 is outside \[0, 1\] \(did you mean 0.8\?\)"),
    ("AU12=-0.1", r"outside \[0, 1\]"),
    ("AU12=1.01", r"outside \[0, 1\]"),
    ("AU12", r"expected NAME=VALUE"),
    ("AU12=0.5=3", r"expected NAME=VALUE"),
    ("AU12=abc", r"value 'abc' is not a number"),
    ("AU12=nan", r"finite"),
    ("AU12=0.5@4-2", r"reversed \(4 s > 2 s\)"),
    ("AU12=0.5@2-2", r"empty"),
    ("AU12=0.5@2", r"time range '2' is not START-END"),
    ("AU12=0.5@-1-2", r"not START-END"),
    ("AU12=0.5@a-2", r"start time 'a' is not a number"),
    ("AU12=0.5@1-2@3-4", r"more than one '@'"),
    ("AU12=0.5,,AU01=1", r"empty item"),
    ("", r"empty"),
])
def test_bad_au_specs(spec, match):
    with pytest.raises(InputError, match=match):
        parse_au_spec(spec)


def test_emotions():
    assert parse_emotion("happy", EMOTION_NAMES).intensity == 1.0
    e = parse_emotion("Surprise:0.5", EMOTION_NAMES)
    assert (e.name, e.intensity) == ("surprised", 0.5)
    assert parse_emotion("sad:0", EMOTION_NAMES).intensity == 0.0
    assert parse_emotion("disgust:1", EMOTION_NAMES).name == "disgusted"


@pytest.mark.parametrize("spec,match", [
    ("happpy", r"unknown emotion 'happpy' \(did you mean happy\?\)"),
    ("suprised", r"did you mean surprised"),
    ("bored", r"unknown emotion 'bored'; choose from happy, sad"),
    ("happy:1.5", r"outside \[0, 1\]"),
    ("happy:-0.2", r"outside \[0, 1\]"),
    ("happy:x", r"intensity 'x' is not a number"),
    ("happy:0.5:1", r"expected NAME\[:INTENSITY\]"),
])
def test_bad_emotions(spec, match):
    with pytest.raises(InputError, match=match):
        parse_emotion(spec, EMOTION_NAMES)
