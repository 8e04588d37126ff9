import numpy as np

from pkmodel.common import skeleton as sk


def test_joint_order_is_coco():
    assert sk.NUM_JOINTS == 17
    assert sk.JOINT_NAMES[0] == "nose"
    assert sk.JOINT_NAMES[9] == "left_wrist" and sk.JOINT_NAMES[10] == "right_wrist"
    assert sk.JOINT_NAMES[15] == "left_ankle" and sk.JOINT_NAMES[16] == "right_ankle"


def test_flip_index_swaps_left_and_right_by_name():
    for j, name in enumerate(sk.JOINT_NAMES):
        other = sk.JOINT_NAMES[sk.FLIP_INDEX[j]]
        if name.startswith("left_"):
            assert other == "right_" + name[5:]
        elif name.startswith("right_"):
            assert other == "left_" + name[6:]
        else:
            assert other == name
    assert np.array_equal(sk.FLIP_INDEX[sk.FLIP_INDEX], np.arange(17))


def test_limbs_are_the_coco_skeleton():
    # The COCO person category skeleton, 1-based, as in person_keypoints_*.json.
    coco = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
            [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]  # fmt: skip
    assert sk.coco_category()["skeleton"] == coco
    assert {frozenset(b) for b in sk.BONES} <= {frozenset(limb) for limb in sk.LIMBS}


def test_oks_sigmas_match_pycocotools():
    from pycocotools.cocoeval import Params

    assert np.allclose(sk.OKS_SIGMAS, Params(iouType="keypoints").kpt_oks_sigmas)


def test_derived_joints_are_midpoints_and_nan_propagates():
    pts = np.arange(17 * 3, dtype=float).reshape(17, 3)
    pts[12] = np.nan  # right hip missing
    ext = sk.add_derived_joints(pts)
    assert ext.shape == (19, 3)
    assert np.all(np.isnan(ext[sk.PELVIS]))
    assert np.allclose(ext[sk.NECK], (pts[5] + pts[6]) / 2)
