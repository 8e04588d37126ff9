"""2D -> 3D: RGB-D recordings, depth sampling, smoothing, the canonical frame and takes."""
