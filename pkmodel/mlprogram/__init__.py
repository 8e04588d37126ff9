"""Core ML ML Programs read and run without Core ML: a MIL interpreter on PyTorch's CPU ops.

Front ends for ``.mlpackage`` / ``.mlmodel`` specs (protobuf) and compiled ``.mlmodelc``
folders (MIL text + weight blobs); one interpreter (``run.CoreMLProgram``).
"""
