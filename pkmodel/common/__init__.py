"""Helpers every stage shares: errors, atomic files, the skeleton, geometry, images, runtime, drawing."""
