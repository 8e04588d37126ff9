"""The network, its loss, the graph-outside decoder and checkpoints."""
