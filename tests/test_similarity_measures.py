"""Hand-computed values of the similarity experiment's landmark mass share (finding 4)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.experiments.similarity import landmark_mass_share


def test_each_cell_keeps_its_mass_when_the_input_is_not_a_multiple_of_the_grid():
    # a 2x2 map over 3x3 pixels: nearest rows/cols [0, 0, 1], so cell (0, 0) covers 4 pixels, (0, 1) two,
    # (1, 0) two and (1, 1) one
    maps = np.array([[[1.0, 1.0], [0.0, 0.0]]])
    column2 = np.zeros((1, 3, 3))
    column2[0, :, 2] = 1  # pixels (0, 2), (1, 2): all of cell (0, 1); (2, 2): cell (1, 1)
    # cell (0, 1) holds half of the positive mass, all of it on the object -> 1/2 (copying values without
    # spreading them would weigh cell (0, 0) by its 4 pixels and give 2/6)
    assert landmark_mass_share(maps, column2)[0] == pytest.approx(0.5)
    corner = np.zeros((1, 3, 3))
    corner[0, 0, 0] = 1  # one of cell (0, 0)'s four pixels: a quarter of its mass
    assert landmark_mass_share(maps, corner)[0] == pytest.approx(0.125)


def test_negative_cells_are_ignored_and_an_empty_map_is_nan():
    maps = np.array([[[2.0, -5.0], [0.0, 2.0]], [[-1.0, 0.0], [0.0, 0.0]]])
    masks = np.zeros((2, 4, 4))
    masks[:, 2:, 2:] = 1  # exactly cell (1, 1) at 2x2 pixels per cell
    share = landmark_mass_share(maps, masks)
    assert share[0] == pytest.approx(0.5) and np.isnan(share[1])
