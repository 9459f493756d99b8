"""Test-wide settings: no test may touch the network (CLIP loading fails fast instead)."""

import os

os.environ.setdefault("NADA_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
