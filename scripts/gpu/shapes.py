"""The GPU benchmark shapes, read by torch_baselines.py: each op's `gpu.shapes` in the op
registry (scripts/ops.mjs), which bench/gpu.mjs times. Node prints them ($NODE on the GPU
machine, as scripts/gpu/run.sh sets it)."""
import json
import os
import subprocess

_registry = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ops.mjs")
GPU_SHAPES = json.loads(
    subprocess.run(
        [os.environ.get("NODE", "node"), "--input-type=module", "-e",
         f"import {{ gpuShapes }} from {json.dumps('file://' + os.path.abspath(_registry))}; console.log(JSON.stringify(gpuShapes()))"],
        check=True, capture_output=True, text=True,
    ).stdout
)

# The shapes of the ops on queries and keys, {name: [[B, D, N]]} (the same registry), which
# bench/gpu-embeddings.mjs times and torch_embeddings.py reads.
EMBEDDINGS_SHAPES = json.loads(
    subprocess.run(
        [os.environ.get("NODE", "node"), "--input-type=module", "-e",
         f"import {{ embeddingsGpuShapes }} from {json.dumps('file://' + os.path.abspath(_registry))}; console.log(JSON.stringify(embeddingsGpuShapes()))"],
        check=True, capture_output=True, text=True,
    ).stdout
)
