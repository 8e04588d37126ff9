"""The built-in synthetic RGB-D people (`pkmodel make-synthetic`).

- ``humanoid``: body proportions, poses within joint limits, the posed body as capsules and
  ellipsoids with its COCO-17 joints and per-joint surface radii (body frame).
- ``camera``: pinhole intrinsics (OpenCV convention), projection, per-pixel rays, look-at.
- ``render``: the z-buffer ray caster (capsules, ellipsoids, floor and wall planes, shading).
- ``scene``: one random picture: people, props, camera, background, and its COCO labels.
- ``sequence``: clips of one person moving continuously before a fixed camera.
- ``generate``: the dataset writer (splits and sequences), parallel, deterministic per seed.
"""
