"""The suite tests the plain-PyTorch backend, the reference, unless $GPUAUG_BACKEND names another;
tests/test_ext.py compares the fused extension against it."""

import os

os.environ.setdefault("GPUAUG_BACKEND", "torch")
