"""Short RGB-D clips of one person moving continuously, seen by a fixed camera (the 3D set).

A clip is a pure function of its seed: every frame re-derives the same body, clothes, room,
camera and motion, then poses the body at its own time. Frames can therefore be drawn in any
order, by any process, and still join into one continuous motion.

Motions: ``walk`` (a gait cycle while moving along the heading), ``keyposes`` (smooth
interpolation through 2-4 random poses while turning), ``turn`` (one pose, turning on the spot).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pkmodel.data.synthetic.camera import sample_intrinsics
from pkmodel.data.synthetic.humanoid import (
    BodyShape,
    PosedBody,
    gait_pose,
    pose_body,
    sample_body,
    sample_pose,
)
from pkmodel.data.synthetic.scene import (
    Camera,
    Frame,
    Look,
    Outfit,
    Person,
    Room,
    SceneParams,
    frame_camera,
    max_distance,
    place,
    render_frame,
    sample_look,
    sample_outfit,
    sample_room,
)

MOTIONS: tuple[str, ...] = ("walk", "keyposes", "turn")
KEY_SECONDS = 1.2  # time from one key pose to the next
_KEY_KINDS = ("standing", "walking", "arms_raised", "crouching", "lunge", "bending", "one_leg")


@dataclass(frozen=True)
class Motion:
    """How the person moves over a clip."""

    kind: str  # one of MOTIONS
    duration: float  # seconds from the first frame to the last
    keys: np.ndarray  # (n, A) key poses in radians (keyposes, turn)
    yaw: tuple[float, float]  # heading at t = 0 (radians) and its rate (radians / second)
    gait: tuple[float, ...]  # walk: amp, bend, elbow, lean (degrees), start phase, cycles/s
    start: np.ndarray  # (2,) world x, z of the root at t = 0
    velocity: np.ndarray  # (2,) metres per second


@dataclass(frozen=True)
class Clip:
    """Everything fixed over a clip: the person, their motion, the room and the camera."""

    motion: Motion
    shape: BodyShape
    outfit: Outfit
    room: Room
    camera: Camera
    look: Look


def _smoothstep(x: float) -> float:
    return x * x * (3.0 - 2.0 * x)


def motion_body(motion: Motion, shape: BodyShape, t: float) -> PosedBody:
    """The person at time ``t`` (seconds), in the world frame, standing on the floor."""
    if motion.kind == "walk":
        amp, bend, elbow, lean, phase0, cadence = motion.gait
        angles = gait_pose(phase0 + 2 * np.pi * cadence * t, amp, bend, elbow, lean)
    else:  # smooth steps from key pose to key pose, KEY_SECONDS each
        n = len(motion.keys)
        pos = min(max(t / KEY_SECONDS, 0.0), n - 1.0)
        i = min(int(pos), max(n - 2, 0))
        w = _smoothstep(pos - i) if n > 1 else 0.0
        angles = motion.keys[i] * (1 - w) + motion.keys[min(i + 1, n - 1)] * w
    yaw = motion.yaw[0] + motion.yaw[1] * t
    x, z = motion.start + motion.velocity * t
    return place(pose_body(shape, angles), yaw, float(x), float(z))


def _concat(bodies: list[PosedBody]) -> PosedBody:
    """One body made of all the given bodies' primitives (to frame a whole motion)."""
    cat = np.concatenate
    return PosedBody(
        joints=cat([b.joints for b in bodies]),
        joint_radius=cat([b.joint_radius for b in bodies]),
        cap_a=cat([b.cap_a for b in bodies]),
        cap_b=cat([b.cap_b for b in bodies]),
        cap_r=cat([b.cap_r for b in bodies]),
        cap_part=cat([b.cap_part for b in bodies]),
        ell_c=cat([b.ell_c for b in bodies]),
        ell_axes=cat([b.ell_axes for b in bodies]),
        ell_radii=cat([b.ell_radii for b in bodies]),
        ell_part=cat([b.ell_part for b in bodies]),
    )


def sample_motion(
    rng: np.random.Generator, shape: BodyShape, duration: float, kind: str | None = None
) -> Motion:
    """A random motion of ``duration`` seconds for a person of ``shape``."""
    kind = kind or MOTIONS[rng.choice(len(MOTIONS), p=[0.4, 0.4, 0.2])]
    yaw0 = rng.uniform(0, 2 * np.pi)
    keys = np.zeros((1, 0))
    gait: tuple[float, ...] = ()
    velocity = np.zeros(2)
    if kind == "walk":
        amp, cadence = rng.uniform(15, 30), rng.uniform(0.8, 1.0)
        gait = (amp, rng.uniform(25, 50), rng.uniform(10, 40), rng.uniform(0, 8),
                rng.uniform(0, 2 * np.pi), cadence)  # fmt: skip
        leg = shape.dims["thigh"] + shape.dims["shank"]
        speed = 4.0 * leg * np.sin(np.radians(amp)) * cadence  # two steps per cycle
        velocity = speed * np.array([np.sin(yaw0), np.cos(yaw0)])  # the body's forward
        yaw = (yaw0, 0.0)
    elif kind == "keyposes":
        n = 2 + int(duration // KEY_SECONDS)
        keys = np.stack([sample_pose(rng, str(rng.choice(_KEY_KINDS)))[0] for _ in range(n)])
        yaw = (yaw0, np.radians(rng.uniform(-45, 45)))
    else:
        keys = sample_pose(rng, str(rng.choice(["standing", "arms_raised"])))[0][None]
        yaw = (yaw0, np.radians(rng.uniform(60, 150) * rng.choice([-1, 1])))
    start = -velocity * duration / 2  # the path is centered on the origin
    return Motion(kind, duration, keys, yaw, gait, start, velocity)


def sample_clip(rng: np.random.Generator, params: SceneParams, frames: int, fps: float) -> Clip:
    """A random clip of ``frames`` frames at ``fps``."""
    shape, outfit = sample_body(rng), sample_outfit(rng)
    motion = sample_motion(rng, shape, max(frames - 1, 0) / fps)
    # Frame the whole motion: the camera sees the person at every sampled time.
    times = np.linspace(0.0, motion.duration, 5)
    union = _concat([motion_body(motion, shape, t) for t in times])
    intrinsics = sample_intrinsics(rng, params.width, params.height)
    limit = max_distance(union, intrinsics, params.max_depth_m)
    fill = rng.uniform(0.55, 0.85)
    camera = frame_camera(rng, union, intrinsics, fill, (0.0, 0.0), limit, roll_sd=2.0)
    room = sample_room(rng, [union], camera.eye)
    look = sample_look(rng)
    return Clip(motion=motion, shape=shape, outfit=outfit, room=room, camera=camera, look=look)


def clip_frame(
    clip: Clip, index: int, fps: float, rng: np.random.Generator, max_depth_m: float
) -> Frame:
    """Frame ``index`` of the clip (time index / fps); ``rng`` only adds camera noise."""
    body = motion_body(clip.motion, clip.shape, index / fps)
    person = Person(body=body, outfit=clip.outfit)
    return render_frame(rng, [person], clip.room, clip.camera, max_depth_m, clip.look)
