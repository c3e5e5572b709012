"""Images as tensors (audit/data/images.py): each resampling mode is the one asked for at every step (framing,
the batch's resize, mixed sizes), the defaults are bilinear, and decoded arrays are copied, never aliased."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audit.data.images import Framing, assemble, check_size, convert, match_channels, resize, to_chw
from audit.errors import AuditError


def _photo(c: int = 3, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(seed))


def _direct(x: torch.Tensor, size, mode: str) -> torch.Tensor:
    """The resize written out with torch alone."""
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact").clamp(0, 1)
    return F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False).clamp(0, 1)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_every_step_resamples_with_the_mode_asked_for(mode):
    x = _photo()
    expected = _direct(x, (7, 6), mode)
    assert torch.equal(resize(x, (7, 6), mode), expected)
    assert torch.equal(convert(x, (7, 6), 3, mode), expected)
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(convert(x, (7, 6), 1, mode), _direct(gray, (7, 6), mode), atol=1e-6)
    assert torch.allclose(convert(gray, (7, 6), 3, mode), _direct(gray, (7, 6), mode).repeat(1, 3, 1, 1), atol=1e-6)
    same = [x[0], x[0].clone()]
    assert torch.equal(assemble(same, (7, 6), 3, mode), torch.cat([expected, expected]))
    mixed = [x[0], _photo(h=9, w=14, seed=1)[0]]
    assert torch.equal(assemble(mixed, (7, 6), 3, mode)[1:], _direct(mixed[1][None], (7, 6), mode))
    framed = Framing(resize=8, interpolation=mode)(x[0])  # short side 10 -> 8: 12x10 becomes 9x8
    assert torch.equal(framed, _direct(x, (9, 8), mode)[0])
    others = {"bilinear", "bicubic", "nearest"} - {mode}
    assert all(not torch.equal(resize(x, (7, 6), other), expected) for other in others)


def test_the_default_resampling_is_bilinear():
    x = _photo()
    bilinear = _direct(x, (7, 6), "bilinear")
    assert torch.equal(resize(x, (7, 6)), bilinear)
    assert torch.equal(convert(x, (7, 6), 3), bilinear)
    assert torch.equal(assemble([x[0], _photo(h=9, w=14, seed=1)[0]], (7, 6), 3)[:1], bilinear)
    assert Framing().interpolation == "bilinear"


def test_a_resize_to_the_size_it_has_is_no_copy():
    x = _photo()
    assert resize(x, (12, 10)) is x


def test_an_unknown_resampling_is_one_line():
    with pytest.raises(AuditError) as info:
        resize(_photo(), (5, 5), "lanczos")
    assert str(info.value) == "unknown interpolation 'lanczos'; choose one of bilinear, bicubic, nearest"


def test_decoded_arrays_are_copied_into_contiguous_tensors():
    gray = np.random.default_rng(0).random((5, 4, 1), dtype=np.float32)
    t = to_chw(gray)
    gray[:] = 0  # the source may be a memory map or a buffer the reader reuses
    assert t.shape == (1, 5, 4) and float(t.sum()) > 0
    rgb = np.random.default_rng(1).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    colour = to_chw(rgb)
    assert colour.is_contiguous() and torch.equal(colour, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    assert to_chw(np.random.default_rng(2).random((5, 4, 3), dtype=np.float32)).is_contiguous()


def test_channels_convert_between_one_and_three_only():
    x = _photo()
    for have, want in ((x, 2), (x[:, :1], 2), (x[:, :1], 4)):
        with pytest.raises(AuditError) as info:
            match_channels(have, want)
        assert str(info.value) == f"cannot convert {have.shape[1]}-channel images to {want} channels; use 1 or 3"


def test_image_sizes_of_one_pixel_are_sizes():
    assert check_size((1, 1)) == (1, 1)
    assert check_size([1, 7]) == (1, 7)
    with pytest.raises(AuditError) as info:
        check_size((0, 3))
    assert str(info.value) == "image size must be two positive integers (H, W), got (0, 3)"


def test_a_bicubic_overshoot_is_clamped_to_the_pixel_range():
    """Bicubic interpolation overshoots at an edge (ringing): a black-to-white step enlarged goes below 0 and
    above 1 before the clamp; the images the attacks start from stay in [0, 1]."""
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0
    raw = F.interpolate(step, size=(16, 16), mode="bicubic", antialias=True, align_corners=False)
    assert float(raw.min()) < 0 and float(raw.max()) > 1  # the overshoot this test is about
    out = resize(step, (16, 16), "bicubic")
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert torch.equal(out, raw.clamp(0, 1))
