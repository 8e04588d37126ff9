"""One skeleton per take: robust bone lengths, and joints whose depth cannot be trusted placed on
their own camera ray at the bone's length from a trusted neighbour.

A joint's depth is the first surface along its pixel's ray. Where the camera sees the joint,
that surface is its skin; where something hides it (an arm, the far hip in a side view, a
chair), it is the hider's, nearer than the joint. Depth alone cannot tell the two apart, but the
body can: a take shows one person, whose bones keep their lengths.

1. Bone lengths (metres, one per bone and its mirror, so left and right agree): first from the
   2D picture alone, the ``ACROSS_PERCENTILE``th percentile of each bone's extent across the
   viewing ray (depth errors move joints along their rays, so this extent barely depends on
   them; a bone seen side-on once shows its length); then, once the trusted joints are known,
   the median of the 3D lengths between trusted ends whose depth noise is at most a quarter of
   the bone (noise along the rays lengthens a bone: a far take on a phone's depth would
   measure its bones long).
2. Trust, frame by frame: a bone is consistent when its measured length is within a tolerance
   of the take's (10 % of the bone plus twice the depth noise of both ends, taken at the nearer
   end's range: a depth far behind the body would excuse itself with its own range's noise,
   which grows with the square of the range). The joints with the
   most inconsistent bones are dropped one at a time until every bone between the remaining
   joints is consistent; of a tied pair, the nearer joint goes (a hidden joint's depth is the
   hider's, in front of it). A joint without a depth, or with no consistent bone to a trusted
   joint, is not trusted either.
3. Placement: every joint that is not trusted but has a 2D position is put on its own ray at the
   bone length from a trusted (or already placed) neighbour, the nearest one in the bone tree
   first. The ray meets that sphere twice; a crossing in front of the joint's own depth sample
   is ruled out (the joint cannot be in front of the surface its pixel shows), then the crossing
   nearer the joint's range in the closest frames where it was trusted wins, and without such
   frames the farther one (a hidden joint lies behind what hides it). A ray that misses the
   sphere gives the point of the ray nearest to the neighbour.
4. The face keeps its depths (its points move together, so their bones cannot tell), except a
   point out of the head's reach of the neck (:meth:`_Fitter.face`): the background seen past
   a small head. It is placed on its ray nearest the face's other points, or nearest the neck
   when every face point lies that far behind it.

``measured`` (T, K) says which joints kept their depth; the rest were inferred (or have no 2D).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pkmodel.common.camera import PIXEL_CENTER, Intrinsics, backproject
from pkmodel.common.skeleton import FACE_JOINTS, JOINT_INDEX, NUM_JOINTS

ACROSS_PERCENTILE = 95
LENGTH_TOLERANCE = 0.10  # of the bone's length, plus twice the depth noise of its ends
MIN_NOISE_M = 0.01  # depth noise floor: the surface-to-joint radius is a guess this good
NOISE_SHARE = 0.25  # bone lengths in 3D only from ends with depth noise at most this share
# the smallest shoulder and hip widths (joint centres) as a share of the shoulder-hip distance
TORSO_SHARES = {"shoulders": 0.70, "hips": 0.36}
# a torso joint keeps its depth from this far in front of the fitted torso to this far behind
# it (plus twice its depth noise): hidden ones are in front, and the flat template is coarse
TORSO_FRONT_M = 0.06
TORSO_BEHIND_M = 0.30
MIN_AGREE = 1  # measured torso joints that must agree with a pose for it to count
# A torso joint measured this far in front of a sure pose is hidden even when its bones fit,
# where its depth sd is from LOOSE_SD_M (bones within a phone's tolerances let a far shoulder
# sampled on the near side's surface pass; on clean depth they do not, and outrank the coarse
# template) up to the band itself. Sure: two other torso joints within TORSO_FRONT_M (plus
# twice their sd) of the pose, either way, and its depth cost POSE_MARGIN below the other's.
TORSO_HIDDEN_M = 0.15
LOOSE_SD_M = 0.02
POSE_MARGIN = 1.0
HIDDEN_COST = 2.0  # a torso joint measured in front of the pose (hidden)
FLOATING_COST = 4.0  # a torso joint measured behind the pose
MAX_SCALE = 1.3  # a torso pose scaled further than this (either way) is a wrong pose
FACING_COST = 3.0  # a torso pose whose chest faces away from where the face looks
MAX_TEMPORAL_S = 1.0  # trusted frames farther away than this do not pick a crossing
SWITCH_M = 0.1  # metres a torso pose jumps between frames that cost as much as 1 (plan_torso)


def _pair(a: str, b: str) -> tuple[int, int]:
    return JOINT_INDEX[a], JOINT_INDEX[b]


# Bones by name; a mirrored pair shares one length. Torso and head edges make them rigid.
BONE_GROUPS: dict[str, tuple[tuple[int, int], ...]] = {
    "upper_arm": (_pair("left_shoulder", "left_elbow"), _pair("right_shoulder", "right_elbow")),
    "forearm": (_pair("left_elbow", "left_wrist"), _pair("right_elbow", "right_wrist")),
    "thigh": (_pair("left_hip", "left_knee"), _pair("right_hip", "right_knee")),
    "shin": (_pair("left_knee", "left_ankle"), _pair("right_knee", "right_ankle")),
    "shoulders": (_pair("left_shoulder", "right_shoulder"),),
    "hips": (_pair("left_hip", "right_hip"),),
    "torso_side": (_pair("left_shoulder", "left_hip"), _pair("right_shoulder", "right_hip")),
    "torso_diagonal": (_pair("left_shoulder", "right_hip"), _pair("right_shoulder", "left_hip")),
    "eyes": (_pair("left_eye", "right_eye"),),
    "nose_eye": (_pair("nose", "left_eye"), _pair("nose", "right_eye")),
    "eye_ear": (_pair("left_eye", "left_ear"), _pair("right_eye", "right_ear")),
    "ears": (_pair("left_ear", "right_ear"),),
    "nose_ear": (_pair("nose", "left_ear"), _pair("nose", "right_ear")),
    "ear_shoulder": (_pair("left_ear", "left_shoulder"), _pair("right_ear", "right_shoulder")),
}
EDGES: tuple[tuple[int, int, str], ...] = tuple(
    (a, b, name) for name, pairs in BONE_GROUPS.items() for a, b in pairs
)
# Placement order: from the torso outward (a joint is placed from its earliest neighbour here).
_ORDER = (
    "left_hip", "right_hip", "left_shoulder", "right_shoulder", "left_knee", "right_knee",
    "left_elbow", "right_elbow", "left_ankle", "right_ankle", "left_wrist", "right_wrist",
    "left_ear", "right_ear", "nose", "left_eye", "right_eye",
)  # fmt: skip
ORDER = tuple(JOINT_INDEX[n] for n in _ORDER)


# Why each joint has the depth it has (take metadata ``depth_source``).
SOURCE_CODES = {"measured": "m", "missing": "d", "hidden": "o", "implausible": "i", "none": "-"}


@dataclass
class SkeletonFit:
    """The per-take skeleton and what it did to each joint of each frame."""

    joints: np.ndarray  # (T, K, 3) camera-frame joints, inferred ones placed
    lengths: dict[str, float]  # metres per bone group (NaN: never seen)
    noise_m_at_1m: float  # the take's depth noise (sd at 1 m, grows with Z^2)
    source: np.ndarray  # (T, 17) one letter per COCO joint: SOURCE_CODES
    torso: np.ndarray  # (T, 4, 3) the fitted torso (shoulders, hips), NaN where none fitted

    @property
    def measured(self) -> np.ndarray:
        """(T, 17) the joint kept its own depth."""
        return self.source == SOURCE_CODES["measured"]

    @property
    def inferred(self) -> np.ndarray:
        """(T, 17) the joint was placed on its ray (its depth missing, hidden or implausible)."""
        return np.isin(self.source, [SOURCE_CODES[k] for k in ("missing", "hidden", "implausible")])


def rays(keypoints: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Unit camera rays (T, K, 3) through 2D keypoints (T, K, 2) in colour pixels (pkmodel's
    convention, as back-projection takes them); NaN without."""
    r = backproject(keypoints, 1.0, intrinsics)
    return r / np.linalg.norm(r, axis=-1, keepdims=True)


def _across(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Extent of segment a-b across the viewing ray of its midpoint (...,)."""
    d = a - b
    mid = (a + b) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        ray = mid / np.linalg.norm(mid, axis=-1, keepdims=True)
    return np.linalg.norm(d - (d * ray).sum(axis=-1, keepdims=True) * ray, axis=-1)


def lengths_across(points: np.ndarray) -> dict[str, float]:
    """Bone lengths from the picture: the percentile of each group's extent across the view."""
    out = {}
    for name, pairs in BONE_GROUPS.items():
        spans = np.concatenate([_across(points[:, a], points[:, b]) for a, b in pairs])
        spans = spans[np.isfinite(spans)]
        out[name] = float(np.percentile(spans, ACROSS_PERCENTILE)) if spans.size else np.nan
    return out


def lengths_between(
    points: np.ndarray,
    trusted: np.ndarray,
    noise: np.ndarray | None = None,
    scale: dict[str, float] | None = None,
) -> dict[str, float]:
    """Bone lengths in 3D: the median length between trusted ends (NaN when fewer than 3).
    With the depth ``noise`` (T, K) sds and a first estimate ``scale`` of each length, only
    pairs whose ends' noise is at most ``NOISE_SHARE`` of that length count: noise along the
    rays lengthens a bone on average (by 6 % at a quarter of its length, by half at its
    length), and a take far away on a phone's depth would measure its bones long."""
    out = {}
    for name, pairs in BONE_GROUPS.items():
        values = []
        for a, b in pairs:
            ok = trusted[:, a] & trusted[:, b]
            if noise is not None and scale is not None and np.isfinite(scale[name]):
                with np.errstate(invalid="ignore"):
                    ok &= np.maximum(noise[:, a], noise[:, b]) <= NOISE_SHARE * scale[name]
            values.append(np.linalg.norm(points[:, a] - points[:, b], axis=-1)[ok])
        values = np.concatenate(values)
        values = values[np.isfinite(values)]
        out[name] = float(np.median(values)) if values.size >= 3 else np.nan
    return out


def depth_noise(ranges: np.ndarray) -> float:
    """The take's depth noise as an sd at 1 m (metres; noise grows with the square of the range):
    a robust estimate from the second differences of each joint's range over time."""
    d2 = ranges[:-2] - 2.0 * ranges[1:-1] + ranges[2:]
    z = ranges[1:-1]
    ok = np.isfinite(d2) & np.isfinite(z) & (z > 0)
    if ok.sum() < 10:
        return 0.0
    return float(1.4826 * np.median(np.abs(d2[ok]) / z[ok] ** 2) / np.sqrt(6.0))


def _consistent(points: np.ndarray, sigma: np.ndarray, lengths: dict[str, float]) -> np.ndarray:
    """(T, E) per edge: both ends known and the length within tolerance; NaN-free bools.
    Edges of unknown length count as consistent (they decide nothing)."""
    out = np.zeros((len(points), len(EDGES)), dtype=bool)
    known = np.isfinite(points).all(axis=-1)
    for e, (a, b, name) in enumerate(EDGES):
        length = lengths[name]
        both = known[:, a] & known[:, b]
        if not np.isfinite(length):
            out[:, e] = both
            continue
        measured = np.linalg.norm(points[:, a] - points[:, b], axis=-1)
        # the nearer end's noise for both: a far end's own would excuse a background depth
        tol = LENGTH_TOLERANCE * length + 2.0 * np.sqrt(2.0) * np.fmin(sigma[:, a], sigma[:, b])
        with np.errstate(invalid="ignore"):
            out[:, e] = both & (np.abs(measured - length) <= tol)
    return out


def trusted_joints(points: np.ndarray, sigma: np.ndarray, lengths: dict[str, float]) -> np.ndarray:
    """(T, K) the joints whose depth agrees with the skeleton (module text, step 2)."""
    T, K = points.shape[:2]
    known = np.isfinite(points).all(axis=-1)
    ranges = np.linalg.norm(points, axis=-1)
    ok = _consistent(points, sigma, lengths)
    trusted = known.copy()
    ends = np.array([[a, b] for a, b, _ in EDGES])
    for t in range(T):
        keep = trusted[t]
        while True:
            live = keep[ends[:, 0]] & keep[ends[:, 1]]
            bad = live & ~ok[t]
            if not bad.any():
                break
            count = np.zeros(K)
            np.add.at(count, ends[bad, 0], 1)
            np.add.at(count, ends[bad, 1], 1)
            worst = np.flatnonzero(count == count.max())
            # of the worst, the nearest goes (a hidden joint's depth is the hider's)
            drop = worst[np.argmin(ranges[t, worst])]
            keep[drop] = False
        # a joint needs one consistent bone to a trusted joint (alone, nothing vouches for it)
        live = keep[ends[:, 0]] & keep[ends[:, 1]] & ok[t]
        vouched = np.zeros(K, dtype=bool)
        vouched[ends[live, 0]] = True
        vouched[ends[live, 1]] = True
        trusted[t] = keep & vouched
    return trusted


def _nearest_trusted_range(ranges: np.ndarray, trusted: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(T, K) the range of each joint in its nearest trusted frame in time (within
    ``MAX_TEMPORAL_S``), linearly interpolated between the trusted frames around it; NaN
    where there is none."""
    out = np.full(ranges.shape, np.nan)
    for k in range(ranges.shape[1]):
        good = np.flatnonzero(trusted[:, k] & np.isfinite(ranges[:, k]))
        if good.size == 0:
            continue
        times = t[good]
        values = np.interp(t, times, ranges[good, k])
        after = np.searchsorted(times, t).clip(1, len(times) - 1) if len(times) > 1 else 0
        gap = np.minimum(np.abs(t - times[after - 1]), np.abs(t - times[after]))
        out[:, k] = np.where(gap <= MAX_TEMPORAL_S, values, np.nan)
    return out


def _crossings(ray: np.ndarray, centre: np.ndarray, length: float) -> tuple[float, float] | None:
    """Ranges where a unit ray from the camera meets the sphere (centre, length); None: misses."""
    b = float(ray @ centre)
    disc = b * b - float(centre @ centre) + length * length
    if disc < 0:
        return None
    root = float(np.sqrt(disc))
    return b - root, b + root


# the torso joints in the order of SkeletonFit.torso
TORSO_JOINTS = tuple(
    JOINT_INDEX[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
)


def torso_template(lengths: dict[str, float]) -> np.ndarray | None:
    """The take's torso as a flat, symmetric quad (4, 3) in metres: shoulders and hips (COCO
    order left/right shoulder, left/right hip), hips at y = 0, y down; None without lengths."""
    ws, wh, side = lengths["shoulders"], lengths["hips"], lengths["torso_side"]
    if not all(np.isfinite(v) and v > 0 for v in (ws, wh, side)):
        return None
    h = np.sqrt(max(side**2 - ((ws - wh) / 2.0) ** 2, (0.5 * side) ** 2))
    return np.array(
        [[ws / 2, -h, 0.0], [-ws / 2, -h, 0.0], [wh / 2, 0.0, 0.0], [-wh / 2, 0.0, 0.0]]
    )


def _torso_poses(template: np.ndarray, pixels: np.ndarray, intrinsics: Intrinsics) -> list:
    """Both poses of the flat torso that show it at ``pixels`` (4, 2): the template's points in
    the camera frame (4, 3) for each (IPPE: a flat shape seen in perspective has two)."""
    import cv2

    k = np.array(
        [[intrinsics.fx, 0, intrinsics.cx], [0, intrinsics.fy, intrinsics.cy], [0, 0, 1.0]]
    )
    try:
        n, rotations, translations, _ = cv2.solvePnPGeneric(
            template, pixels.astype(np.float64) - PIXEL_CENTER, k, None, flags=cv2.SOLVEPNP_IPPE
        )  # OpenCV puts pixel centres at whole numbers
    except cv2.error:
        return []
    poses = []
    for rvec, tvec in zip(rotations[:n], translations[:n], strict=True):
        r = cv2.Rodrigues(rvec)[0]
        points = template @ r.T + tvec.reshape(1, 3)
        if (points[:, 2] > 0).all():
            poses.append(points)
    return poses


# limb chains: (joint, bone group to the previous joint); the first is the torso root
_LIMBS = tuple(
    ((JOINT_INDEX[a], ""), (JOINT_INDEX[b], g1), (JOINT_INDEX[c], g2))
    for a, b, c, g1, g2 in (
        ("left_shoulder", "left_elbow", "left_wrist", "upper_arm", "forearm"),
        ("right_shoulder", "right_elbow", "right_wrist", "upper_arm", "forearm"),
        ("left_hip", "left_knee", "left_ankle", "thigh", "shin"),
        ("right_hip", "right_knee", "right_ankle", "thigh", "shin"),
    )
)
PLACE_COST = 1.0  # placing a joint costs as much as a bone one tolerance off
FRONT_COST = 10.0  # a joint in front of the surface its pixel shows
NEAR_COST = 0.2  # the nearer of two crossings (without other evidence, the farther wins)
GUIDE_M = 0.1  # metres from the trusted frames' range that cost as much as one placement


def _options(
    k: int, base: np.ndarray | None, length: float, u, p, ranges, surface, sigma, guide
) -> list[tuple[float, bool, float, np.ndarray]]:
    """A joint's candidates as (range, placed, own cost, point): its measurement, and the ray's
    crossings with the bone's sphere around ``base``."""
    out = []
    if np.isfinite(p[k]).all():
        out.append((float(ranges[k]), False, 0.0, p[k]))
    if base is not None and np.isfinite(base).all() and np.isfinite(length):
        hit = _crossings(u[k], base, length)
        crossings = [float(u[k] @ base)] if hit is None else list(hit)
        for s in crossings:
            # a hidden joint lies behind what hides it: the nearer crossing costs a little more
            cost = PLACE_COST + (NEAR_COST if s < max(crossings) else 0.0)
            if np.isfinite(surface[k]) and s < surface[k] - 2.0 * sigma[k]:
                cost += FRONT_COST
            if np.isfinite(guide[k]):
                cost += abs(s - guide[k]) / GUIDE_M
            out.append((s, True, cost, s * u[k]))
    return out


def _bone_cost(a: np.ndarray, b: np.ndarray, length: float, sigma: float) -> float:
    if not np.isfinite(length):
        return 0.0
    tol = LENGTH_TOLERANCE * length + 2.0 * sigma
    return abs(float(np.linalg.norm(a - b)) - length) / tol


def _best_chain(
    root: np.ndarray,
    links: list[tuple[int, float]],
    u, p, ranges, surface, sigma, guide, has_2d,
    depth_sd: Callable[[float], float],
) -> list[tuple[float | None, bool]]:  # fmt: skip
    """The cheapest (range, placed) for each joint of a chain hanging from ``root``: bones off
    their length, placements, joints in front of their surface and jumps from the trusted
    frames all cost (constants above). A measured joint's bone is allowed the depth noise
    (``depth_sd`` of a range) of its own range or of the joint it hangs from, the smaller: a
    depth far behind the body would excuse itself with the noise of its own distance."""

    def sd(x: np.ndarray) -> float:
        return float(depth_sd(float(np.linalg.norm(x))))

    (k1, l1), (k2, l2) = links
    best: tuple[float, list] = (np.inf, [(None, False), (None, False)])
    first = _options(k1, root, l1, u, p, ranges, surface, sigma, guide) if has_2d[k1] else []
    for s1, placed1, c1, x1 in first or [(None, False, 0.0, None)]:
        cost1 = c1 + (
            0.0 if x1 is None or placed1 else _bone_cost(x1, root, l1, min(sigma[k1], sd(root)))
        )
        second = []
        if has_2d[k2]:
            second = _options(k2, x1, l2, u, p, ranges, surface, sigma, guide)
        for s2, placed2, c2, x2 in second or [(None, False, 0.0, None)]:
            cost2 = c2
            if x2 is not None and not placed2 and x1 is not None:
                cost2 += _bone_cost(x2, x1, l2, min(sigma[k2], sd(x1)))
            if cost1 + cost2 < best[0]:
                best = (cost1 + cost2, [(s1, placed1), (s2, placed2)])
    return best[1]


def _choose_crossing(
    choices: list[float], surface: float, sigma: float, guide: float
) -> float | None:
    """Of a ray's crossings with a bone's sphere: none in front of the surface the pixel shows
    (None when both are), then the nearest to the joint's range in nearby trusted frames, else
    the farther one."""
    if np.isfinite(surface):
        choices = [c for c in choices if c >= surface - 2.0 * sigma]
        if not choices:
            return None
    if np.isfinite(guide):
        return min(choices, key=lambda c: abs(c - guide))
    return max(choices)


def fit_skeleton(
    points: np.ndarray,
    keypoints: np.ndarray,
    intrinsics: Intrinsics,
    timestamps: np.ndarray,
    radius: np.ndarray | None = None,
) -> SkeletonFit:
    """One skeleton for a take: ``points`` (T, K, 3) lifted joints (after the surface-to-joint
    correction by ``radius`` (K,) metres, when given), ``keypoints`` (T, K, 2) their 2D
    positions; see the module text. Joints beyond the 17 COCO ones pass through."""
    p = np.asarray(points, dtype=np.float64)
    T, K = p.shape[:2]
    if K < NUM_JOINTS or p.shape[-1] != 3:
        raise ValueError(f"expected (T, >={NUM_JOINTS}, 3) joints, got {p.shape}")
    fitter = _Fitter(p[:, :NUM_JOINTS], keypoints[:, :NUM_JOINTS], intrinsics, timestamps, radius)
    fitter.plan_torso()
    for f in range(T):
        fitter.torso(f)
        fitter.limbs(f)
        fitter.face(f)
    out = fitter.out
    if K > NUM_JOINTS:
        out = np.concatenate([out, p[:, NUM_JOINTS:]], axis=1)
    return SkeletonFit(out, fitter.lengths, fitter.noise, fitter.source, fitter.torso_pose)


class _Fitter:
    """A take's measurements, bone lengths and torso template, and the joints placed so far."""

    def __init__(
        self,
        p: np.ndarray,
        keypoints: np.ndarray,
        intrinsics: Intrinsics,
        timestamps: np.ndarray,
        radius: np.ndarray | None,
    ) -> None:
        T = len(p)
        self.p, self.keypoints, self.intrinsics = p, keypoints, intrinsics
        self.u = rays(keypoints, intrinsics)
        self.has_2d = np.isfinite(self.u).all(axis=-1)
        self.ranges = np.linalg.norm(p, axis=-1)
        self.surface = self.ranges - (0.0 if radius is None else np.asarray(radius)[None, :])
        self.noise = depth_noise(self.ranges)
        self.sigma = self.depth_sd(np.nan_to_num(self.ranges))
        first = lengths_across(p)
        # no floor: a share; a joint without depth has no bound (written as inf, not as
        # noise x inf: a take whose noise measures 0 made that 0 x inf, NaN and a warning)
        known = np.isfinite(self.ranges)
        noise = np.where(known, self.noise * np.where(known, self.ranges, 0.0) ** 2, np.inf)
        lengths = lengths_between(p, trusted_joints(p, self.sigma, first), noise, first)
        lengths = {k: v if np.isfinite(v) else first[k] for k, v in lengths.items()}
        for name in ("shoulders", "hips", "torso_side"):  # both estimates fall short, not long
            lengths[name] = float(np.nanmax([first[name], lengths[name], -1.0]))
        for name, share in TORSO_SHARES.items():  # a take in profile never shows the widths
            lengths[name] = max(lengths[name], share * lengths["torso_side"])
        self.lengths = {k: v if v > 0 else float("nan") for k, v in lengths.items()}
        self.template = torso_template(self.lengths)
        self.trusted = trusted_joints(p, self.sigma, self.lengths) & self.has_2d
        self.guide = _nearest_trusted_range(
            self.ranges, self.trusted, np.asarray(timestamps, np.float64)
        )
        self.plan: list[int] | None = None  # the take's torso poses (plan_torso)
        self.candidates: list[tuple[list, list[float]]] | None = None  # and their candidates
        self.out = np.full((T, NUM_JOINTS, 3), np.nan)
        self.source = np.full((T, NUM_JOINTS), SOURCE_CODES["none"])
        self.torso_pose = np.full((T, 4, 3), np.nan)

    def _torso_candidates(self, f: int) -> tuple[list, list[float]]:
        """Frame f's torso poses, each scaled to the measured depths, and their costs."""
        torso = list(TORSO_JOINTS)
        if self.template is None or not self.has_2d[f, torso].all():
            return [], []
        poses = _torso_poses(self.template, self.keypoints[f, torso], self.intrinsics)
        scored = [self._scaled(f, pose) for pose in poses]
        return scored, [c + self._facing_cost(f, pose) for c, pose in scored]

    def plan_torso(self) -> None:
        """Choose the torso pose of every frame over the whole take (``self.plan``: an index
        into the frame's candidates, -1 where it has none): the least total of the poses'
        costs and of moving between them, the mean distance the four joints jump from one
        frame's pose to the next's over ``SWITCH_M`` (dynamic programming over each run of
        frames with poses). Where the measured depths hardly tell the two poses apart (most
        torso joints hidden), the frames where one is clearly right decide."""
        candidates = [self._torso_candidates(f) for f in range(len(self.p))]
        self.candidates = candidates
        plan = [-1] * len(candidates)
        f = 0
        while f < len(candidates):
            if not candidates[f][0]:
                f += 1
                continue
            start = f
            total = np.asarray(candidates[f][1], dtype=np.float64)
            back: list[np.ndarray] = []
            for f in range(start + 1, len(candidates) + 1):
                if f == len(candidates) or not candidates[f][0]:
                    break
                before = np.stack([pose for _, pose in candidates[f - 1][0]])  # (B, 4, 3)
                now = np.stack([pose for _, pose in candidates[f][0]])  # (A, 4, 3)
                jump = np.linalg.norm(now[:, None] - before[None], axis=-1).mean(axis=-1)
                step = total[None, :] + jump / SWITCH_M  # (A, B)
                back.append(np.argmin(step, axis=1))
                total = np.asarray(candidates[f][1], dtype=np.float64) + step.min(axis=1)
            k = int(np.argmin(total))
            for t in range(f - 1, start - 1, -1):
                plan[t] = k
                if t > start:
                    k = int(back[t - start - 1][k])
        self.plan = plan

    def depth_sd(self, ranges: np.ndarray | float) -> np.ndarray:
        """The depth's sd at these ranges (m): the take's noise, growing with the square of the
        range, above the floor ``MIN_NOISE_M``."""
        return np.hypot(MIN_NOISE_M, self.noise * np.asarray(ranges) ** 2)

    def own(self, f: int, k: int) -> None:
        """Joint k of frame f keeps its own depth (if it has one)."""
        if np.isfinite(self.p[f, k]).all():
            self.out[f, k] = self.p[f, k]
            self.source[f, k] = SOURCE_CODES["measured"]

    def kept(self, f: int, k: int) -> bool:
        """Joint k of frame f kept its own depth."""
        return self.source[f, k] == SOURCE_CODES["measured"]

    def put(self, f: int, k: int, s: float) -> None:
        """Joint k of frame f placed on its ray at range ``s``, with the reason."""
        self.out[f, k] = s * self.u[f, k]
        m = self.ranges[f, k]
        why = "missing" if not np.isfinite(m) else "hidden" if s > m else "implausible"
        self.source[f, k] = SOURCE_CODES[why]

    def _scaled(self, f: int, pose: np.ndarray) -> tuple[float, np.ndarray]:
        """A torso pose scaled about the camera (every pixel stays) to the measured torso
        depths: of the scales that put one measured joint exactly at its depth, the one the
        others agree with best. Returns (disagreement, scaled pose); lower is better.

        A joint measured within ``tol`` of the pose costs (d / tol)^2; one measured in front
        of it (hidden by something nearer) costs ``HIDDEN_COST``; one measured behind it (the
        pose would float in front of the surface its pixel shows) ``FLOATING_COST``."""
        torso = list(TORSO_JOINTS)
        along = (pose * self.u[f, torso]).sum(axis=-1)
        m, sg = self.ranges[f, torso], self.sigma[f, torso]
        known = np.isfinite(m)
        if not known.any():
            return 0.0, pose
        tol = 0.03 + 2.0 * sg
        best = (np.inf, 1.0)
        scales = m[known] / along[known]
        # the template's size is known to a few percent: a scale far from 1 means a wrong pose
        for scale in scales[np.abs(np.log(scales)) <= np.log(MAX_SCALE)]:
            d = m - scale * along
            cost = np.where(
                np.abs(d) <= tol, (d / tol) ** 2, np.where(d < 0, HIDDEN_COST, FLOATING_COST)
            )
            total = float(np.sum(np.where(known, cost, 0.0)))
            best = min(best, (total, float(scale)))
        if not np.isfinite(best[0]):
            return float(np.sum(known)) * FLOATING_COST, pose
        return best[0], pose * best[1]

    def _facing_cost(self, f: int, pose: np.ndarray) -> float:
        """``FACING_COST`` when a torso pose's chest faces away from where the face looks (the
        nose ahead of the eyes and ears): in profile, the two poses of a flat torso differ by
        which side is near, and the measured depths alone often cannot tell."""
        behind = self.p[f, 1:5][np.isfinite(self.p[f, 1:5]).all(axis=-1)]  # eyes and ears
        if not len(behind):
            return 0.0
        face = self.p[f, 0] - behind.mean(axis=0)
        if not np.isfinite(face).all() or np.linalg.norm(face) < 0.03:
            return 0.0
        right, up = pose[0] - pose[1] + pose[2] - pose[3], pose[0] + pose[1] - pose[2] - pose[3]
        forward = np.cross(right, up)  # as in the canonical frame: x to the left hip, y up
        return FACING_COST if float(forward @ face) < 0 else 0.0

    def torso(self, f: int) -> None:
        """The torso of frame f: the template's pose that shows it at its four pixels and that
        the measured depths agree with; the torso joints far in front of it (hidden) or behind
        it are placed where the pose puts them, unless their bones vouch for their depth (the
        flat template is coarse), and on noisy depth even then when they lie ``TORSO_HIDDEN_M``
        in front of a sure pose (:meth:`_hidden`). Without four pixels, or when no measured
        torso joint agrees, the trusted ones stay and the rest hang from them."""
        torso = list(TORSO_JOINTS)
        if self.candidates is not None:  # planned: the poses the plan chose among
            scored, costs = self.candidates[f]
        else:
            scored, costs = self._torso_candidates(f)
        if scored:
            best = int(np.argmin(costs))
            if self.plan is not None and 0 <= self.plan[f] < len(scored):
                best = self.plan[f]
            pose = scored[best][1]
            fits = [float(pose[i] @ self.u[f, k]) for i, k in enumerate(torso)]
            with np.errstate(invalid="ignore"):
                offset = [self.ranges[f, k] - fits[i] for i, k in enumerate(torso)]
                agree = [
                    -TORSO_FRONT_M - 2 * self.sigma[f, k]
                    <= d
                    <= TORSO_BEHIND_M + 2 * self.sigma[f, k]  # fmt: skip
                    for d, k in zip(offset, torso, strict=True)
                ]
            if sum(agree) >= MIN_AGREE:  # measured depths vouch for the pose
                # a joint whose measured bones all fit the take's lengths keeps its depth too
                # (the flat template is coarse for a bent or twisted torso), unless it is far
                # in front of a sure pose
                other = min((c for i, (c, _) in enumerate(scored) if i != best), default=np.inf)
                hidden = self._hidden(f, offset, other - scored[best][0])
                agree = [
                    a or (bool(self.trusted[f, k]) and not h)
                    for a, k, h in zip(agree, torso, hidden, strict=True)
                ]
                self.torso_pose[f] = pose
                for i, k in enumerate(torso):
                    if agree[i]:
                        self.own(f, k)
                    else:
                        self.put(f, k, fits[i])
                return
        if self._profile(f):
            return
        for k in torso:
            if self.trusted[f, k]:
                self.own(f, k)
        for k in torso:  # from a kept torso neighbour, on the crossing the evidence prefers
            if self.kept(f, k) or not self.has_2d[f, k]:
                continue
            others = [
                (b if a == k else a, n)
                for a, b, n in EDGES
                if k in (a, b) and a in TORSO_JOINTS and b in TORSO_JOINTS
            ]
            options = [(j, n) for j, n in others if self.kept(f, j) and np.isfinite(self.lengths[n])]  # fmt: skip
            if not options:
                self.own(f, k)
                continue
            j, name = options[0]
            hit = _crossings(self.u[f, k], self.out[f, j], self.lengths[name])
            s = float(self.u[f, k] @ self.out[f, j]) if hit is None else _choose_crossing(
                list(hit), self.surface[f, k], self.sigma[f, k], self.guide[f, k])  # fmt: skip
            if s is None:  # it would be in front of the surface its pixel shows
                self.own(f, k)
            else:
                self.put(f, k, s)

    def _hidden(self, f: int, offset: list[float], margin: float) -> list[bool]:
        """Which torso joints of frame f (``offset``: measured range minus the pose's, m) are
        hidden whatever their bones say: ``TORSO_HIDDEN_M`` in front of a pose whose depth cost
        is ``margin`` below the other pose's (at least ``POSE_MARGIN``) and that two other torso
        joints lie close to, with a depth sd from ``LOOSE_SD_M`` to ``TORSO_HIDDEN_M``."""
        torso = list(TORSO_JOINTS)
        sd = self.sigma[f, torso]
        with np.errstate(invalid="ignore"):  # a joint without depth has a NaN offset
            d = np.asarray(offset, dtype=np.float64)
            close = np.abs(d) <= TORSO_FRONT_M + 2.0 * sd
            hidden = (close.sum() - close >= 2) & (d < -TORSO_HIDDEN_M)
            hidden &= (sd >= LOOSE_SD_M) & (sd <= TORSO_HIDDEN_M)
        return (hidden & (margin >= POSE_MARGIN)).tolist()

    def _profile(self, f: int) -> bool:
        """A torso seen from the side (no pose fits its four pixels, which nearly line up):
        one side keeps its measured shoulder and hip, the other side's are placed behind them
        at the take's shoulder and hip widths. The near side is the one that turns the chest
        the way the face looks; without a face, the side measured nearer. False when the
        widths or the near side's depths are missing."""
        ls, rs, lh, rh = TORSO_JOINTS
        widths = self.lengths["shoulders"], self.lengths["hips"]
        if not (self.has_2d[f, list(TORSO_JOINTS)].all() and np.isfinite(widths).all()):
            return False
        options = []
        for near, far in (((ls, lh), (rs, rh)), ((rs, rh), (ls, lh))):
            if not np.isfinite(self.p[f, list(near)]).all():
                continue
            points = {k: self.p[f, k] for k in near}
            for n, k, width in zip(near, far, widths, strict=True):
                hit = _crossings(self.u[f, k], self.p[f, n], width)
                s = float(self.u[f, k] @ self.p[f, n]) if hit is None else hit[1]
                points[k] = s * self.u[f, k]
            pose = np.stack([points[k] for k in TORSO_JOINTS])
            nearness = float(np.mean(self.ranges[f, list(near)]))
            options.append((self._facing_cost(f, pose), nearness, near, far, pose))
        if not options:
            return False
        _, _, near, far, pose = min(options, key=lambda o: (o[0], o[1]))
        for k in near:
            self.own(f, k)
        for i, k in enumerate(TORSO_JOINTS):
            if k in far:
                s = float(np.linalg.norm(pose[i]))
                if abs(self.ranges[f, k] - s) <= TORSO_FRONT_M + 2.0 * self.sigma[f, k]:
                    self.own(f, k)  # its depth agrees: it was in view after all
                else:
                    self.put(f, k, s)
        self.torso_pose[f] = pose
        return True

    def face(self, f: int) -> None:
        """The face keeps its depths (its points move together, so their bones cannot tell a
        hidden face from a seen one), except a point out of the head's reach: farther from the
        neck (the midpoint of the shoulders the take's bones vouch for) than the nose-ear and
        ear-shoulder lengths and half the shoulder width together allow (a whole width from a
        lone shoulder), plus the noise. Such a depth is the background seen past a small head
        (or a wrong surface); the point is placed on its ray where it passes nearest the face's
        points within reach. When none is within reach and all lie behind the neck (a head a
        depth pixel or two across, all of whose pixels see the wall), they are placed where their
        rays pass nearest the neck; when some lie in front, the face keeps its depths: the
        shoulders are as likely to be wrong. A face point without a depth stays without:
        nothing on the body says how far ahead of the neck it is."""
        shoulders = list(TORSO_JOINTS[:2])
        vouched = self.trusted[f, shoulders] & np.isfinite(self.out[f, shoulders]).all(axis=-1)
        measured = [k for k in FACE_JOINTS if np.isfinite(self.p[f, k]).all()]
        reach = self.lengths["nose_ear"] + self.lengths["ear_shoulder"]
        reach += self.lengths["shoulders"] * (0.5 if vouched.all() else 1.0)
        if not vouched.any() or not np.isfinite(reach) or not measured:
            for k in measured:
                self.own(f, k)
            return
        neck = self.out[f, shoulders][vouched].mean(axis=0)
        sigma_neck = float(self.depth_sd(np.linalg.norm(neck)))
        # a face point within reach is about as far as the neck: its noise is the neck's (its
        # own range would grant a background point far behind the noise of its own distance)
        tol = reach + 2.0 * np.sqrt(2.0) * sigma_neck
        near = np.linalg.norm(self.p[f, measured] - neck, axis=-1) <= tol
        good = [k for k, ok in zip(measured, near, strict=True) if ok]
        if not good and (self.ranges[f, measured] <= np.linalg.norm(neck)).any():
            good = measured
        for k in good:
            self.own(f, k)
        centre = np.mean(self.p[f, good], axis=0) if good else neck
        for k in measured:
            if k not in good:
                self.put(f, k, max(float(self.u[f, k] @ centre), 0.0))

    def limbs(self, f: int) -> None:
        """Each limb (root -> middle -> end) takes the cheapest combination of measured and
        placed joints (:func:`_best_chain`)."""
        for chain in _LIMBS:
            root = chain[0][0]
            if not np.isfinite(self.out[f, root]).all():
                for k, _ in chain[1:]:
                    self.own(f, k)
                continue
            picks = _best_chain(
                self.out[f, root], [(k, self.lengths[g]) for k, g in chain[1:]], self.u[f],
                self.p[f], self.ranges[f], self.surface[f], self.sigma[f], self.guide[f],
                self.has_2d[f], self.depth_sd,
            )  # fmt: skip
            for (k, _), (s_k, placed) in zip(chain[1:], picks, strict=True):
                if placed:
                    self.put(f, k, s_k)
                elif s_k is not None:
                    self.own(f, k)
