"""pkmodel: PoseKit's model toolkit (data, training, evaluation, export, 3D lifting)."""

__version__ = "0.1.0"
