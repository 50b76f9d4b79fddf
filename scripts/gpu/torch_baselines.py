"""PyTorch eager baselines for the GPU benchmark (bench/gpu.mjs times fusedloss on the same
shapes). Each op's time is the median over repeats, measured with CUDA events, forward and
backward as a training step runs them. Writes JSON: {op: {shape: {dtype: ms}}} plus the
device-to-device copy bandwidth measured in the same process."""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

from shapes import GPU_SHAPES  # the one list of shapes, shared with bench/gpu.mjs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from torch_cpu import DexmlSoftTopK  # noqa: E402  DEXML's soft top-k, as the CPU peer runs it


def timed(fn, reps=20):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def cross_entropy(x, y):
    x.grad = None
    F.cross_entropy(x, y).backward()


def log_sum_exp(x, _):
    torch.logsumexp(x, dim=1)


def soft_topk_loss(x, y):
    # DEXML's top-k loss (k = 5, alpha = 2) with one positive per row, y.
    x.grad = None
    (-DexmlSoftTopK.apply(x, 5, 2.0).gather(1, y[:, None])).mean().backward()


OPS = {"softmaxCrossEntropy": cross_entropy, "logSumExp": log_sum_exp, "softTopKLoss": soft_topk_loss}


# Losses over positives as DEXML's PyTorch code computes them, written from MATH multiLabelSoftmax, decoupledSoftmax and binaryCrossEntropy (native/ops/positives_math.h):
# y is a dense B×N 0/1 target matrix (3 positives per row), built outside the timed step.
def decoupled_softmax(x, y):
    x.grad = None
    pos = y > 0
    z_neg = torch.logsumexp(x.masked_fill(pos, float("-inf")), dim=1, keepdim=True)
    (-(F.logsigmoid(x - z_neg) * y).sum(1) / y.sum(1)).mean().backward()


def multi_label_softmax(x, y):
    x.grad = None
    (-(F.log_softmax(x, dim=1) * y).sum(1)).mean().backward()


def binary_cross_entropy(x, y):
    x.grad = None
    F.binary_cross_entropy_with_logits(x, y).backward()


# CLIP's symmetric loss at logit scale 20 as OpenCLIP writes it, and DCLW as the common
# reference code does (positive masked out of the log-sum-exp, weights from detached scores).
def info_nce(x, y):
    x.grad = None
    logits = 20 * x
    ((F.cross_entropy(logits, y) + F.cross_entropy(logits.t(), y)) / 2).backward()


def decoupled_contrastive(x, y):
    x.grad = None
    logits = 20 * x
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    w = 2 - x.shape[0] * F.softmax(torch.diagonal(x).detach().float() / 0.5, dim=0)
    negatives = torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=1)
    (-w * torch.diagonal(logits) + negatives).mean().backward()


CONTRASTIVE_OPS = {"infoNCE": info_nce, "decoupledContrastive": decoupled_contrastive}
POSITIVES_OPS = {"decoupledSoftmax": decoupled_softmax, "multiLabelSoftmax": multi_label_softmax, "binaryCrossEntropy": binary_cross_entropy}
OPS.update(POSITIVES_OPS)
OPS.update(CONTRASTIVE_OPS)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    dev = torch.device("cuda")
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    n = 1 << 28
    src, dst = torch.empty(n, dtype=torch.float32, device=dev), torch.empty(n, dtype=torch.float32, device=dev)
    ms = timed(lambda: dst.copy_(src))
    out["copyGBs"] = 2 * n * 4 / (ms / 1e3) / 1e9
    del src, dst
    for op, shapes in GPU_SHAPES.items():
        if op not in OPS:
            continue
        for rows, cols in shapes:
            for name, dtype in DTYPES.items():
                x = torch.randn(rows, cols, device=dev, dtype=dtype).requires_grad_(op != "logSumExp")
                y = torch.randint(0, cols, (rows,), device=dev)
                if op in CONTRASTIVE_OPS:
                    y = torch.arange(rows, device=dev)
                if op in POSITIVES_OPS:
                    y = torch.zeros(rows, cols, device=dev, dtype=dtype).scatter_(1, torch.randint(0, cols, (rows, 3), device=dev), 1.0)
                ms = timed(lambda: OPS[op](x, y))
                out.setdefault(op, {}).setdefault(f"{rows}x{cols}", {})[name] = ms
                print(f"torch {op} {rows}x{cols} {name}: {ms:.3f} ms", flush=True)
                del x, y
                torch.cuda.empty_cache()
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
