"""emogs.studio.controls: every field the page sends is checked; the plan follows `emogs render`'s layers."""
from __future__ import annotations

import numpy as np
import pytest

from emogs.errors import InputError
from emogs.studio.controls import Controls, control_arrays


def test_a_full_message_round_trips():
    msg = {"au": {"AU12": 0.8, "AU01": 1}, "emotion": "happy", "intensity": 0.5, "blinks": False, "pose": "static",
           "base": "neutral", "clamp": False, "speech_aus": False}
    c = Controls.from_message(msg)
    assert c.au == {"AU01": 1.0, "AU12": 0.8} and list(c.au) == ["AU01", "AU12"]  # AU order, floats
    assert (c.emotion, c.intensity, c.blinks, c.pose, c.base, c.clamp, c.speech_aus) == \
        ("happy", 0.5, False, "static", "neutral", False, False)
    assert Controls.from_message(c.to_message()) == c
    assert Controls.from_message({}) == Controls()
    assert Controls.from_message({"emotion": ""}).emotion is None


@pytest.mark.parametrize("msg, needle", [
    ([], "expected an object"),
    ({"au": {"AU13": 0.5}}, "unknown AU"),
    ({"au": {"au12": 0.5}}, "unknown AU"),
    ({"au": {"AU12": 1.5}}, "outside 0-1"),
    ({"au": {"AU12": -0.1}}, "outside 0-1"),
    ({"au": {"AU12": float("nan")}}, "outside 0-1"),
    ({"au": {"AU12": "0.5"}}, "expected a number"),
    ({"au": {"AU12": True}}, "expected a number"),
    ({"au": [0.5]}, "at most 17"),
    ({"au": {f"AU{i}": 0 for i in range(30)}}, "at most 17"),
    ({"emotion": "hapy"}, "controls.emotion"),
    ({"emotion": 3}, "controls.emotion"),
    ({"intensity": 2}, "outside 0-1"),
    ({"blinks": "yes"}, "true or false"),
    ({"pose": "../../etc"}, "controls.pose"),
    ({"base": "x"}, "controls.base"),
    ({"clamp": 1}, "true or false"),
    ({"volume": 1}, "unknown field"),
])
def test_bad_messages_are_refused_with_a_reason(msg, needle):
    with pytest.raises(InputError, match=needle):
        Controls.from_message(msg)


class _PlanOnly:
    """The one Avatar method control_arrays uses, with a fixed default face."""
    default_au = np.full(17, 0.2, np.float32)

    def plan(self, num_frames, **controls):
        from emogs.control.plan import build_plan

        controls.setdefault("default_au", self.default_au)
        return build_plan(num_frames, 25.0, **controls)


def test_control_arrays_layers_sliders_over_the_preset_and_base():
    from emogs.control.names import AU_INDEX

    av = _PlanOnly()
    c = Controls(au={"AU12": 0.9}, emotion="sad", intensity=1.0, blinks=False)
    arr = control_arrays(av, 50, c)
    assert arr.au.shape == arr.mask.shape == (50, 17)
    assert np.allclose(arr.au[:, AU_INDEX["AU12"]], 0.9)  # the slider wins over the preset
    assert np.allclose(arr.au[:, AU_INDEX["AU15"]], 0.8)  # sad's lip corner depressor
    assert np.allclose(arr.au[:, AU_INDEX["AU45"]], 0.2)  # blinks off: the base
    assert np.all(arr.mask[:, AU_INDEX["AU12"]] == 1) and np.all(arr.mask[:, AU_INDEX["AU45"]] == 0)
    blinking = control_arrays(av, 250, Controls())
    assert blinking.au[:, AU_INDEX["AU45"]].max() > 0.5  # 10 s: generated blinks
    assert not arr.static and control_arrays(av, 5, Controls(pose="static")).static
