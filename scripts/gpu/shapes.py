"""The GPU benchmark shapes, read by torch_baselines.py; bench/gpu.mjs reads shapes.json."""
import json
import os

with open(os.path.join(os.path.dirname(__file__), "shapes.json")) as f:
    GPU_SHAPES = json.load(f)
