"""Data: COCO preparation, prepared labels, the training dataset and its targets, synthetic people."""
