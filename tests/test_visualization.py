import numpy as np
import pytest
import matplotlib.pyplot as plt

from keras_sam.common.visualization import (display_box, display_boxes_on_img, display_mask,
                                            display_masks_on_img, display_points_on_img, figure_to_array,
                                            render_overlay, tile)

IMAGE = np.full((60, 80, 3), 90, np.uint8)
MASK = np.zeros((60, 80), bool)
MASK[20:40, 30:60] = True


def new_axes():
    figure, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(IMAGE)
    return figure, ax


@pytest.mark.parametrize("draw", [
    lambda ax: display_mask(MASK, ax),
    lambda ax: display_box([30, 20, 60, 40], ax),
    lambda ax: display_boxes_on_img(IMAGE, [[30, 20, 60, 40], [5, 5, 20, 20]], ax),
    lambda ax: display_points_on_img(IMAGE, [[40, 30], [5, 5]], [1, 0], ax),
])
def test_display_functions_draw_something(draw, tmp_path):
    figure, ax = new_axes()
    blank = figure_to_array(figure)
    figure, ax = new_axes()
    drawn = draw(ax)
    assert drawn is figure
    drawn.savefig(tmp_path / "out.png")
    assert (tmp_path / "out.png").stat().st_size > 0
    assert np.any(figure_to_array(drawn) != blank)


def test_display_masks_on_img_has_a_panel_per_mask_with_its_score():
    figure = display_masks_on_img(IMAGE, np.stack([MASK, ~MASK]), scores=[0.91, 0.12],
                                  boxes=[30, 20, 60, 40])
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["Mask 1, IoU score 0.910", "Mask 2, IoU score 0.120"]
    assert figure_to_array(figure).std() > 0


def test_masks_stay_visible_under_the_prompts_drawn_on_them():
    # A point far from the mask changes the picture only where its marker is: the mask is not
    # painted over (it once was: the points were drawn with the image again on top of the mask).
    with_point = figure_to_array(display_masks_on_img(IMAGE, MASK[None], points=[[5, 5]]))
    without = figure_to_array(display_masks_on_img(IMAGE, MASK[None]))
    assert (with_point != without).any(axis=2).mean() < 0.01


def test_render_overlay_marks_mask_truth_box_and_points():
    truth = np.zeros_like(MASK)
    truth[22:38, 32:58] = True
    out = render_overlay(IMAGE, predicted=MASK, truth=truth, box=[2, 16, 78, 58],
                         points=[[45, 30], [5, 55]], labels=[1, 0], text="Dice 0.500")
    assert out.shape == IMAGE.shape
    assert np.any(out[30, 40] != IMAGE[30, 40])  # inside the predicted mask: tinted
    assert tuple(out[22, 40]) == (255, 215, 0)  # the truth outline
    assert tuple(out[16, 40]) == (0, 255, 0)  # the box's top edge (below the text)
    assert tuple(out[53, 5]) == (230, 30, 30)  # a negative point: a red disc with a minus
    assert tuple(out[55, 5]) == (255, 255, 255)
    assert tuple(out[28, 45]) == (255, 255, 255)  # a positive point's plus (its vertical bar)
    assert np.all(out[46:54, 20:28] == IMAGE[46:54, 20:28])  # untouched elsewhere
    assert tile([out, out, out], columns=2).shape == (120, 160, 3)
