"""The canonical body frame: pelvis origin and a right-handed rotation (determinant +1).

Axes, as rows of the rotation R (camera frame -> canonical frame: p_c = R @ (p - pelvis)):

- x "right": toward the subject's LEFT hip, i.e. to the right as seen by someone facing the
  subject. (The subject's own right, up and forward form a LEFT-handed triad: using it gives a
  reflection, determinant -1, the fault this module exists to avoid.) From the hips; from the
  shoulders when a hip is missing.
- y "up": from the hips toward the shoulders (mean of the known ones), made orthogonal to x;
  the camera's up (-y) when no hip or no shoulder is known.
- z "forward": x cross y, the direction the chest faces.

A subject facing the camera upright has x ~ camera x, y ~ -camera y, z ~ -camera z.
Everything is vectorised over any leading dimensions; frames where no frame can be built (no
left/right pair, or a degenerate one) get NaN.

Hips lifted from depth are often wrong in depth: in any view but a frontal one the far hip is
hidden, its pixel shows the near side of the pelvis (or an arm), and the "right" axis turns
toward the image plane. Given a ``hip_width`` (metres; :func:`hip_width` estimates it from a
recording) the hips of a turned person are completed instead: when the hips span less than
``TURNED[1]`` of the width across the view (a wider span means both are in view and their depths
hold), the nearer hip keeps its place and the farther one moves along its pixel's ray to
``hip_width`` behind it, fully below ``TURNED[0]`` and partly between. Which hip is the farther
one is the choice that turns the chest the way the face looks (nose ahead of the eyes and ears),
or away from the camera when no face point is known, less the distance it moves the hip (the
tie-breaker of back views). The pelvis and the axes are taken from the
completed hips; the joints themselves are not changed.
"""

from __future__ import annotations

import numpy as np

from pkmodel.common.skeleton import JOINT_INDEX, NUM_JOINTS

_LH, _RH = JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]
_LS, _RS = JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_shoulder"]
_NOSE = JOINT_INDEX["nose"]
HIP_WIDTH_PERCENTILE = 95  # of a recording's hip spans across the view: its hip width
TURNED = (0.5, 0.9)  # hip span / width below which a hidden hip is placed fully / at all
_HEAD = [JOINT_INDEX[n] for n in ("left_eye", "right_eye", "left_ear", "right_ear")]
_CAMERA_UP = np.array([0.0, -1.0, 0.0])
_EPS = 1e-9


def _known(p: np.ndarray) -> np.ndarray:
    return np.isfinite(p).all(axis=-1)


def _nanmean2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean of the known ones of two points (..., 3); NaN when neither is known."""
    ka, kb = _known(a)[..., None], _known(b)[..., None]
    total = np.where(ka, a, 0.0) + np.where(kb, b, 0.0)
    n = ka.astype(np.float64) + kb
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > _EPS, v / n, np.nan)


def _face_forward(p: np.ndarray) -> np.ndarray:
    """Nose minus the mean of the known eyes and ears (..., 3): where the face looks; NaN
    without a nose or any of the four."""
    head = p[..., _HEAD, :]
    known = _known(head)
    count = known.sum(axis=-1)[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        center = np.where(known[..., None], head, 0.0).sum(axis=-2) / count
    return np.where(count > 0, p[..., _NOSE, :] - center, np.nan)


def _up_from(right: np.ndarray, up_hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    up = _unit(up_hint - (up_hint * right).sum(axis=-1, keepdims=True) * right)
    return up, np.cross(right, up)


def _across(lh: np.ndarray, rh: np.ndarray) -> np.ndarray:
    """Length (...) of the hip vector across the viewing ray of the pelvis: what the picture
    shows of the hip width, whatever the depth map says."""
    d = lh - rh
    ray = _unit((lh + rh) / 2.0)  # the camera is at the origin
    return np.linalg.norm(d - (d * ray).sum(axis=-1, keepdims=True) * ray, axis=-1)


def hip_width(joints: np.ndarray) -> float:
    """A person's hip width (metres) from camera-frame joints (T, K, 3) of one recording: the
    ``HIP_WIDTH_PERCENTILE``th percentile of the hips' span across the view (which facing the
    camera shows whole, and no depth error shortens); NaN without a frame with both hips."""
    p = np.asarray(joints, dtype=np.float64)
    span = _across(p[..., _LH, :], p[..., _RH, :])
    span = span[np.isfinite(span)]
    return float(np.percentile(span, HIP_WIDTH_PERCENTILE)) if span.size else float("nan")


def _completed_hips(
    lh: np.ndarray, rh: np.ndarray, width: float, up_hint: np.ndarray, face: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The hips with the farther one moved along its pixel's ray to ``width`` behind the nearer
    one; which one is farther is the choice whose chest faces the way the face looks. Only
    where the hips span less than ``TURNED[1]`` of the width across the view, fully below
    ``TURNED[0]``: a wider span means both hips are in view and their depths hold."""
    options = []
    for near, far in ((rh, lh), (lh, rh)):  # the left hip hidden, then the right one
        ray = _unit(far)
        b = (ray * near).sum(axis=-1, keepdims=True)
        disc = b * b - (near * near).sum(axis=-1, keepdims=True) + width**2
        crossing = ray * (b + np.sqrt(np.maximum(disc, 0.0)))  # the farther crossing
        options.append(np.where(disc >= 0, crossing, far))  # none: the far hip is in view
    candidates = [(options[0], rh), (lh, options[1])]
    forwards = [_up_from(_unit(left - right), up_hint)[1] for left, right in candidates]
    look = np.where(_known(face)[..., None], _unit(face), _unit((lh + rh) / 2.0))  # no face: away
    # Ties (a back view: both turns face away alike) go to the smaller move.
    moved = [np.linalg.norm(options[0] - lh, axis=-1), np.linalg.norm(options[1] - rh, axis=-1)]
    score = [
        np.nan_to_num((f * look).sum(axis=-1) - m) for f, m in zip(forwards, moved, strict=True)
    ]
    first = (score[0] >= score[1])[..., None]
    left = np.where(first, candidates[0][0], candidates[1][0])
    right = np.where(first, candidates[0][1], candidates[1][1])
    share = np.clip((TURNED[1] - _across(lh, rh) / width) / (TURNED[1] - TURNED[0]), 0.0, 1.0)
    share = np.nan_to_num(share)[..., None]
    return lh + share * (left - lh), rh + share * (right - rh)


def canonical_frame(
    joints: np.ndarray, hip_width: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame joints (..., K>=17, 3) in COCO order -> (origin (..., 3), R (..., 3, 3)).

    The origin is the pelvis (mean of both hips; NaN unless both are known). R's rows are the
    right, up and forward axes in camera coordinates; NaN when they cannot be built. With
    ``hip_width`` (metres, > 0) the hips' depth difference is completed from it (module text)
    before the pelvis and the axes are taken from them.
    """
    p = np.asarray(joints, dtype=np.float64)
    if p.shape[-2] < NUM_JOINTS or p.shape[-1] != 3:
        raise ValueError(f"expected (..., >={NUM_JOINTS}, 3) joints, got {p.shape}")
    lh, rh, ls, rs = p[..., _LH, :], p[..., _RH, :], p[..., _LS, :], p[..., _RS, :]
    hips, shoulders = _known(lh) & _known(rh), _known(ls) & _known(rs)

    def up_hint_of(lh: np.ndarray, rh: np.ndarray) -> np.ndarray:
        torso_up = _nanmean2(ls, rs) - _nanmean2(lh, rh)
        return np.where(_known(torso_up)[..., None], torso_up, _CAMERA_UP)

    if hip_width is not None and np.isfinite(hip_width) and hip_width > 0:
        lh, rh = _completed_hips(lh, rh, float(hip_width), up_hint_of(lh, rh), _face_forward(p))
    up_hint = up_hint_of(lh, rh)
    right = np.where(hips[..., None], lh - rh, np.where(shoulders[..., None], ls - rs, np.nan))
    right = _unit(right)
    up, forward = _up_from(right, up_hint)
    rotation = np.stack([right, up, forward], axis=-2)
    origin = np.where(hips[..., None], (lh + rh) / 2.0, np.nan)
    return origin, rotation


def to_canonical(
    joints: np.ndarray, hip_width: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-frame joints (..., K, 3) -> (canonical joints (..., K, 3), origin, rotation).

    Canonical joints are NaN where the joint, the origin or the rotation is unknown.
    ``hip_width``: see :func:`canonical_frame`.
    """
    p = np.asarray(joints, dtype=np.float64)
    origin, rotation = canonical_frame(p, hip_width)
    local = np.einsum("...ij,...kj->...ki", rotation, p - origin[..., None, :])
    return local, origin, rotation
