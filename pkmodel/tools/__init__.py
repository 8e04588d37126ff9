"""Whole-toolkit tools: the benchmark and the demo."""
