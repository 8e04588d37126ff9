"""`pkmodel data ...`: tools that grow and check datasets beyond prepare-coco.

One module per tool: ``split`` (train/val by source image), ``merge`` (several prepared label
files into one dataset folder), ``stats`` (counts and histograms), ``render`` (labels drawn on
the crops), ``fetch`` (parallel, resumable URL-list downloads), ``frames`` (video frames) and
``pseudo`` (label unlabelled images with a trained model). They read and write the prepared
labels of docs/interfaces.md through pkmodel.data.labels, which also holds what several tools
compute from samples (the arrays of a label file, the key that says which samples were cropped
from the same source image).
"""
