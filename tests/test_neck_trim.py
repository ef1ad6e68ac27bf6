"""`train.neck_keep`: the head label ends near the jaw line (trim_neck), only in the training bank."""
import numpy as np
import pytest

from emogs.config import override
from emogs.train.config import TrainConfig, validate
from emogs.train.data import FrameBank, trim_neck


def _labels(S=64, roll=0):
    """A face (zone 4) over rows 10-29, cols 20-43, its lowest row `roll` px lower on the right, head-other hair
    around it and a neck column (head-other) down to row 50, torso (1) below and beside it."""
    lab = np.zeros((S, S), np.uint8)
    lab[40:, :] = 1
    lab[5:50, 16:48] = 2  # hair + neck
    for c in range(20, 44):
        lab[10:30 + (roll * (c - 20)) // 23, c] = 4
    return lab


def test_trim_neck_cuts_below_the_jaw_line_per_column():
    lab = _labels()
    out = trim_neck(lab, 0.25)  # face height 20 rows -> the head ends 5 rows below the jaw (row 29 + 5)
    assert out is not lab and (lab == _labels()).all()  # a copy, the input untouched
    col = out[:, 30]
    assert (col[30:35] == 2).all() and (col[35:50] == 1).all()  # neck kept to row 34, torso below
    assert (out[:, 17][5:35] == 2).all() and (out[:, 17][35:50] == 1).all()  # a column beside the face: the face's chin
    assert (out[lab != 2] == lab[lab != 2]).all()  # only head-other pixels change, and only to torso
    assert set(np.unique(out[(lab == 2) & (out != 2)])) <= {1}
    # zero keep: nothing of the head-other label below the jaw line remains
    z = trim_neck(lab, 0.0)
    assert (z[30:, 30] != 2).all() and (z[29, 30] == 4)


def test_trim_neck_follows_a_tilted_jaw():
    out = trim_neck(_labels(roll=6), 0.0)
    assert (out[30:, 20] != 2).all()  # left end of the jaw at row 29
    assert (out[30:35, 43] == 4).all() and out[36, 43] == 1  # right end 6 rows lower: face there, then torso


def test_trim_neck_without_a_face_is_unchanged():
    lab = np.full((16, 16), 2, np.uint8)
    assert (trim_neck(lab, 0.1) == lab).all()


class _DS:
    def __init__(self, labs):
        self.labs, self.background = labs, np.zeros((64, 64, 3), np.uint8)

    def __len__(self):
        return len(self.labs)

    def __getitem__(self, i):
        return dict(image=np.zeros((64, 64, 3), np.uint8), labels=self.labs[i], world_to_cam=np.eye(4),
                    K=np.eye(3), audio=np.zeros((2, 3), np.float32), au_window=np.zeros((3, 17), np.float32), index=i)


def test_bank_applies_neck_keep_and_the_head_mask_follows():
    ds = _DS([_labels(), _labels(roll=3)])
    plain = FrameBank.from_dataset(ds, 64)
    trimmed = FrameBank.from_dataset(ds, 64, neck_keep=0.1)
    assert (plain.labels.numpy() == np.stack(ds.labs)).all()
    import torch
    b0, b1 = plain.batch(torch.tensor([0])), trimmed.batch(torch.tensor([0]))
    assert b0["head_mask"][0, 45, 30, 0] == 1 and b1["head_mask"][0, 45, 30, 0] == 0
    assert b0["head_mask"][0, 20, 30, 0] == 1 and b1["head_mask"][0, 20, 30, 0] == 1


def test_neck_keep_is_validated():
    validate(override(TrainConfig(), {"neck_keep": 0.1}))
    with pytest.raises(ValueError, match="neck_keep"):
        validate(override(TrainConfig(), {"neck_keep": 5.0}))


class _NeckDS(_DS):
    """Frames whose neck (rows 30-49 of the neck column) is a skin colour, over a plate that has white there."""

    def __init__(self):
        super().__init__([_labels(), _labels(roll=2), _labels(roll=4)])
        self.background = np.full((64, 64, 3), 250, np.uint8)

    def __getitem__(self, i):
        it = super().__getitem__(i)
        img = np.full((64, 64, 3), 30, np.uint8)  # torso / background
        img[5:50, 16:48] = (200, 150, 120)  # head and neck: skin
        it["image"] = img
        return it


def test_neck_plate_fills_the_freed_neck_from_the_frames_only_there():
    from emogs.train.data import neck_plate

    ds = _NeckDS()
    plain = FrameBank.from_dataset(ds, 64)
    assert plain.neck_freed is None
    plate = np.full((128, 128, 3), 250, np.uint8)  # the dataset plate at twice the bank's size
    assert neck_plate(plain, plate) is plate  # nothing freed: the plate unchanged
    bank = FrameBank.from_dataset(ds, 64, neck_keep=0.1)
    assert bank.neck_freed[45, 30] and not bank.neck_freed[20, 30] and not bank.neck_freed[45, 5]
    out = neck_plate(bank, plate)
    assert out.shape == plate.shape and out is not plate
    assert (out[90, 60] == (200, 150, 120)).all()  # the freed neck (row 45, col 30 at 64 px): skin from the frames
    assert (out[10, 10] == 250).all() and (out[40, 60] == 250).all()  # elsewhere (and under the head) the plate
    assert (plate == 250).all()  # the input is not modified


def test_old_runs_read_neck_keep_off_new_runs_default_on():
    from emogs import config as cfgio
    from emogs.run.migrate import migrate_config
    from emogs.train.config import config_from_run, cpu_config, gpu_config

    for preset in (gpu_config, cpu_config):
        d = cfgio.to_dict(preset())
        assert config_from_run(migrate_config(d, 2)).neck_keep == 0.15  # today's default, as saved
    d.pop("neck_keep")
    assert config_from_run(migrate_config(d, 2)).neck_keep == -1.0  # a run from before: the dataset's labels
