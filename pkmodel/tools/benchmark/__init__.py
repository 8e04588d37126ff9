"""`pkmodel benchmark`: every performance figure of the toolkit, measured on this machine.

``run`` plans and runs the whole benchmark and formats its figures; ``stages`` times one stage
each (synthetic data, prepare-coco, the Dataset, the decoder, CPU inference, URL fetching);
``timing`` holds the timing helpers they share.
"""
