"""Test-wide settings: no test may touch the network (CLIP loading fails fast instead), and the
CPU thread count is fixed, so that in-process `nada` commands neither measure the machine nor
change the thread count between a run and its resume (bit-for-bit checks)."""

import os

os.environ.setdefault("NADA_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", str(min(2, os.cpu_count() or 1)))
