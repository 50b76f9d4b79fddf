"""PyTorch eager baselines of linearCrossEntropy and the <loss>FromEmbeddings (bench/gpu-embeddings.mjs
times fusedloss on the same shapes, embeddingsOps of scripts/ops.mjs). Each step is forward and backward
to both inputs, as a training step runs it; the median over repeats with CUDA events, and the peak
memory the step allocates beyond its inputs and their gradients. Also measures, in the same
process, the card's ceilings: the bf16 matmul rate (8192³) and the device-to-device copy rate.
Writes JSON: {"matmulTFLOPs", "copyGBs", op: {"BxDxN": {dtype: {"ms", "peakExtraMiB"}}}}."""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

from shapes import EMBEDDINGS_SHAPES

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from torch_cpu import DexmlSoftTopK  # noqa: E402  DEXML's soft top-k, as the CPU peer runs it
from torch_baselines import binary_cross_entropy, decoupled_softmax, multi_label_softmax, timed  # noqa: E402


def zero_grads(*ts):
    for t in ts:
        t.grad = None


# linearCrossEntropy: the unfused reference the issue names, F.cross_entropy(h @ W.T, y).
def linear_cross_entropy(h, w, y):
    zero_grads(h, w)
    F.cross_entropy(h @ w.T, y).backward()


def cosine(q, k, scale):
    return scale * F.normalize(q, dim=1) @ F.normalize(k, dim=1).T


# CLIP as OpenCLIP writes it (cosine scores at logit scale 20).
def info_nce(q, k, y):
    zero_grads(q, k)
    logits = cosine(q, k, 20.0)
    ((F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y)) / 2).backward()


# DCL: the positive masked out of the log-sum-exp.
def decoupled_contrastive(q, k, y):
    zero_grads(q, k)
    logits = cosine(q, k, 10.0)
    eye = torch.eye(q.shape[0], dtype=torch.bool, device=q.device)
    (-torch.diagonal(logits) + torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=1)).mean().backward()


def on_scores(loss, scale):
    def step(q, k, y):
        zero_grads(q, k)
        x = cosine(q, k, scale)
        loss(x, y)  # backward through x to q and k (x is not a leaf: its .grad stays None)
    return step


def soft_topk(q, k, y):
    zero_grads(q, k)
    x = cosine(q, k, 10.0)
    (-DexmlSoftTopK.apply(x, 5, 2.0).gather(1, y[:, :1])).mean().backward()


OPS = {
    "linearCrossEntropy": linear_cross_entropy,
    "infoNCEFromEmbeddings": info_nce,
    "decoupledContrastiveFromEmbeddings": decoupled_contrastive,
    "decoupledSoftmaxFromEmbeddings": on_scores(decoupled_softmax, 20.0),
    "multiLabelSoftmaxFromEmbeddings": on_scores(multi_label_softmax, 20.0),
    "binaryCrossEntropyFromEmbeddings": on_scores(binary_cross_entropy, 10.0),
    "softTopKLossFromEmbeddings": soft_topk,
}
DENSE_TARGETS = {"decoupledSoftmaxFromEmbeddings", "multiLabelSoftmaxFromEmbeddings", "binaryCrossEntropyFromEmbeddings"}
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--op")
    args = ap.parse_args()
    dev = torch.device("cuda")
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    n = 1 << 28
    src, dst = torch.empty(n, dtype=torch.float32, device=dev), torch.empty(n, dtype=torch.float32, device=dev)
    out["copyGBs"] = 2 * n * 4 / (timed(lambda: dst.copy_(src)) / 1e3) / 1e9
    del src, dst
    m = 8192
    a, b = torch.randn(m, m, device=dev, dtype=torch.bfloat16), torch.randn(m, m, device=dev, dtype=torch.bfloat16)
    out["matmulTFLOPs"] = 2 * m**3 / (timed(lambda: a @ b) / 1e3) / 1e12
    del a, b
    print(f"{out['device']}: copy {out['copyGBs']:.0f} GB/s, bf16 matmul {out['matmulTFLOPs']:.0f} TFLOP/s", flush=True)
    for op, shapes in EMBEDDINGS_SHAPES.items():
        if args.op and op != args.op:
            continue
        for rows, dim, cols in shapes:
            for name, dtype in DTYPES.items():
                key = f"{rows}x{dim}x{cols}"
                try:
                    q = (torch.randn(rows, dim, device=dev) * 1.0).to(dtype).requires_grad_()
                    k = (torch.randn(cols, dim, device=dev) * 0.05).to(dtype).requires_grad_()
                    if op == "linearCrossEntropy":
                        y = torch.randint(0, cols, (rows,), device=dev)
                    elif op in DENSE_TARGETS:
                        y = torch.zeros(rows, cols, device=dev, dtype=dtype).scatter_(1, torch.randint(0, cols, (rows, 3), device=dev), 1.0)
                    elif op == "softTopKLossFromEmbeddings":
                        y = torch.randint(0, cols, (rows, 3), device=dev)
                    else:
                        y = torch.arange(rows, device=dev)
                    fn = OPS[op]
                    fn(q, k, y)  # the gradients exist before the baseline is taken
                    torch.cuda.synchronize()
                    base = torch.cuda.memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                    ms = timed(lambda: fn(q, k, y), reps=5)
                    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
                    out.setdefault(op, {}).setdefault(key, {})[name] = {"ms": ms, "peakExtraMiB": peak}
                    print(f"torch {op} {key} {name}: {ms:.2f} ms, {6 * rows * cols * dim / (ms / 1e3) / 1e12:.1f} TFLOP/s, peak +{peak:.0f} MiB", flush=True)
                except torch.cuda.OutOfMemoryError as e:
                    out.setdefault(op, {}).setdefault(key, {})[name] = {"error": f"out of memory: {e}"[:200]}
                    print(f"torch {op} {key} {name}: out of memory", flush=True)
                q = k = y = None
                torch.cuda.empty_cache()
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
