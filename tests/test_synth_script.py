"""The synthetic performance script: visemes follow the voiced phonemes, events land in their windows,
blinks happen. No rendering here (fast)."""
from __future__ import annotations

import numpy as np
import pytest

from emogs.errors import EmogsError, InputError
from emogs.synth.rig import BS_INDEX
from emogs.synth.script import (EVENT_SHAPES, VISEME_SHAPES, envelope, parse_events, perform, viseme_of)
from emogs.synth.speech import Phoneme

FPS = 25.0


@pytest.fixture(scope="module")
def speech():
    from emogs.synth.speech import synthesize

    try:
        return synthesize("Hello there, how are you today?")
    except EmogsError as e:  # libespeak-ng missing on this machine
        pytest.skip(str(e))


def test_espeak_phoneme_timings(speech):
    ph = speech.phonemes
    assert len(ph) > 10
    starts = np.array([p.start for p in ph])
    assert np.all(np.diff(starts) >= 0)
    assert all(p.end > p.start for p in ph)
    dur = len(speech.audio) / speech.sample_rate
    assert abs(ph[-1].end - dur) < 0.05
    # voiced phonemes carry the energy, the audio before the first phoneme is (near) silent
    a = speech.audio
    voiced = np.concatenate([a[int(p.start * 16000):int(p.end * 16000)] for p in ph if not p.is_pause])
    assert np.sqrt((voiced ** 2).mean()) > 0.05


def test_visemes_only_while_voiced(speech):
    lead = 0.5
    ph = [Phoneme(p.symbol, p.start + lead, p.end + lead) for p in speech.phonemes]
    end = ph[-1].end + 1.0
    n = int(end * FPS)
    perf = perform(ph, n, FPS, [], seed=0)
    t = perf.times
    mouth = perf.blendshapes[:, [BS_INDEX[s] for s in VISEME_SHAPES]].max(1)
    voiced = [(p.start, p.end) for p in ph if viseme_of(p.symbol) is not None]
    dist = np.min([np.maximum(0, np.maximum(a - t, t - b)) for a, b in voiced], axis=0)  # s to the nearest voiced phoneme
    far = dist > 0.12  # > 3.4 sigma of the coarticulation smoothing
    assert far.sum() >= 10  # the lead-in and tail are silent
    assert mouth[far].max() < 1e-3
    assert perf.speech_mask.sum() > 0.5 * len(voiced)
    assert perf.blendshapes[perf.speech_mask, BS_INDEX["jawOpen"]].mean() > 0.1
    # no lip-corner shapes from speech: the smile channel belongs to the smile event alone
    assert perf.blendshapes[:, BS_INDEX["mouthSmileLeft"]].max() == 0


def test_events_at_their_frames():
    events = parse_events("brow_raise:1.0-2.0:0.8,smile:3.0-4.2")
    n = int(5.0 * FPS)
    perf = perform([], n, FPS, events, seed=3)
    t = perf.times
    for e in events:
        inside = (t >= e.start) & (t <= e.end)
        for name, w in EVENT_SHAPES[e.kind].items():
            x = perf.blendshapes[:, BS_INDEX[name]]
            assert np.all(x[~inside] == 0), (e.kind, name)
            plateau = (t >= e.start + 0.25) & (t <= e.end - 0.25)
            np.testing.assert_allclose(x[plateau], w * e.amplitude, atol=1e-6)
    assert perf.blendshapes[:, BS_INDEX["browDownLeft"]].max() == 0  # no frown scripted


def test_blinks_present_and_natural():
    n = int(12 * FPS)
    perf = perform([], n, FPS, [], seed=1)
    assert 2 <= len(perf.blinks) <= 8
    gaps = np.diff([b.start for b in perf.blinks])
    assert np.all(gaps >= 1.6)
    bl = perf.blendshapes[:, BS_INDEX["eyeBlinkLeft"]]
    np.testing.assert_array_equal(bl, perf.blendshapes[:, BS_INDEX["eyeBlinkRight"]])
    for b in perf.blinks:
        m = (perf.times >= b.start) & (perf.times <= b.start + b.duration)
        assert bl[m].max() > 0.8
    closed = bl > 0.05
    in_blink = np.zeros(n, bool)
    for b in perf.blinks:
        in_blink |= (perf.times >= b.start) & (perf.times <= b.start + b.duration)
    assert not np.any(closed & ~in_blink)


def test_envelope_and_parse():
    t = np.linspace(0, 3, 301)
    e = envelope(t, 1.0, 2.0)
    assert e[t < 1.0].max() == 0 and e[t > 2.0].max() == 0 and e.max() == pytest.approx(1.0)
    assert parse_events("none") == []
    with pytest.raises(InputError):
        parse_events("laugh:1-2")
    with pytest.raises(InputError):
        parse_events("smile:2-1")
