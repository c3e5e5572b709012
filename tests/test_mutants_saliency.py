"""Edges of the saliency statistics that mutation testing showed untested."""

import numpy as np
import pytest

from audit.saliency.stats import spearman, superization_index


def test_spearman_of_two_points_is_plus_or_minus_one():
    # two ranks centred are -1/2 and 1/2: the denominator is 1/2, below 1, and still a valid correlation
    assert spearman([0.0, 1.0], [3.0, 7.0]) == pytest.approx(1.0)
    assert spearman([0.0, 1.0], [7.0, 3.0]) == pytest.approx(-1.0)


def test_spearman_names_the_side_with_a_nan_and_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="^x contain NaN"):
        spearman([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="^y contain NaN"):
        spearman([1.0, 2.0], [np.inf, 2.0])
    with pytest.raises(ValueError, match="equal lengths, got 3 and 2"):
        spearman([1.0, 2.0, 3.0], [1.0, 2.0])


def test_superization_of_two_layers_has_an_index():
    assert superization_index([4.0, 3.0]).index == pytest.approx(-1.0)
    assert superization_index([3.0, 4.0]).differences == (1.0,)


def test_superization_refuses_a_nan_profile_by_name():
    with pytest.raises(ValueError, match="^entropy profile contain NaN"):
        superization_index([1.0, np.nan])
