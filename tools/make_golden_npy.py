#!/usr/bin/env python3
"""Writes tests/golden/embedding.npy with numpy.save: a float32 [2, 3] array, which
`lorabert embed --output x.npy`'s writer (src/cli/embed.rs) must reproduce byte for byte.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy
    /tmp/ref/bin/python tools/make_golden_npy.py
"""
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
a = np.array([[0.5, -1.0, 2.0], [3.25, 0.0, -0.125]], dtype=np.float32)
np.save(os.path.join(ROOT, "tests", "golden", "embedding.npy"), a)
print("numpy", np.__version__)
