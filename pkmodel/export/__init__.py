"""Export to Core ML and ONNX, each verified against PyTorch."""
