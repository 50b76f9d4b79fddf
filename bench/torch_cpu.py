"""PyTorch CPU peer for bench/run.mjs: times one op at one shape, forward + backward, with the
same thread count as fusedloss, and prints the median milliseconds as JSON.

  python3 bench/torch_cpu.py '{"op": "softmaxCrossEntropy", "rows": 256, "cols": 32768, "threads": 2}'

Each op below is what a PyTorch user writes for the same loss. Debian's python3-torch is
enough (apt-get install python3-torch); the bench skips this peer when torch is missing."""
import json
import sys
import time

import torch
import torch.nn.functional as F


def cross_entropy(rows, cols, args):
    x = torch.randn(rows, cols, requires_grad=True)
    y = torch.randint(0, cols, (rows,))

    def step():
        x.grad = None
        F.cross_entropy(x, y).backward()

    return step


def log_sum_exp(rows, cols, args):
    x = torch.randn(rows, cols)
    return lambda: torch.logsumexp(x, dim=1)


class DexmlSoftTopK(torch.autograd.Function):
    """DEXML's soft top-k as MATH softTopK and MATH softTopKLoss (native/ops/soft_topk_math.h) describe it: the threshold by 32 bisection steps over
    the whole score matrix inside [-10/alpha, 10/alpha], log p out, and the implicit-function
    backward (u = alpha*g*(1 - p), v = alpha*p*(1 - p), dS = u - v*sum(u)/sum(v))."""

    @staticmethod
    def forward(ctx, s, k, alpha):
        lo = torch.full((s.shape[0], 1), -10.0 / alpha, device=s.device, dtype=s.dtype)
        hi = torch.full((s.shape[0], 1), 10.0 / alpha, device=s.device, dtype=s.dtype)
        for _ in range(32):
            t = (lo + hi) / 2
            below = torch.sigmoid(alpha * (s + t)).sum(1, keepdim=True) < k
            lo = torch.where(below, t, lo)
            hi = torch.where(below, hi, t)
        a = alpha * (s + (lo + hi) / 2)
        ctx.save_for_backward(torch.sigmoid(a))
        ctx.alpha = alpha
        return F.logsigmoid(a)

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved_tensors
        q = 1 - p
        u = ctx.alpha * g * q
        v = ctx.alpha * p * q
        return u - v * u.sum(1, keepdim=True) / v.sum(1, keepdim=True), None, None


def soft_topk_loss(rows, cols, args):
    # The bench's inputs: normal scores with sigma 3, 1 to 3 positives per row, k = 5, alpha = 2.
    x = (torch.randn(rows, cols) * 3).requires_grad_()
    y = torch.zeros(rows, cols)
    for i in range(rows):
        y[i, torch.randperm(cols)[: 1 + i % 3]] = 1
    n = y.sum(1)

    def step():
        x.grad = None
        logp = DexmlSoftTopK.apply(x, 5, 2.0)
        (-(y * logp).sum(1) / n).mean().backward()

    return step


def info_nce(rows, cols, args):
    # CLIP's loss as OpenCLIP writes it: two cross_entropy calls over the logits and their
    # transpose, then backward (symmetric: false keeps the row-wise half).
    opts = args.get("opts", {})
    x = torch.randn(rows, cols, requires_grad=True)
    labels = torch.arange(rows)
    scale = float(opts.get("scale", 1.0))

    def step():
        x.grad = None
        logits = scale * x
        loss = F.cross_entropy(logits, labels)
        if opts.get("symmetric"):
            loss = (loss + F.cross_entropy(logits.t(), labels)) / 2
        loss.backward()

    return step


def decoupled_contrastive(rows, cols, args):
    # DCL(W) as the common reference code writes it: the positive masked out of the
    # log-sum-exp, DCLW's weights from the detached positive scores.
    opts = args.get("opts", {})
    x = torch.randn(rows, cols, requires_grad=True)
    scale = float(opts.get("scale", 1.0))
    sigma = opts.get("weighting", {}).get("sigma") if opts.get("weighting") is not None else None
    eye = torch.zeros(rows, cols, dtype=torch.bool)
    eye[torch.arange(rows), torch.arange(rows)] = True

    def step():
        x.grad = None
        logits = scale * x
        positive = torch.diagonal(logits)
        w = 1.0
        if sigma is not None:
            w = 2 - rows * F.softmax(torch.diagonal(x).detach() / sigma, dim=0)
        negatives = torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=1)
        (-w * positive + negatives).mean().backward()

    return step


OPS = {
    "softmaxCrossEntropy": cross_entropy,
    "logSumExp": log_sum_exp,
    "infoNCE": info_nce,
    "decoupledContrastive": decoupled_contrastive,
    "softTopKLoss": soft_topk_loss,
}


# Losses over positives, as DEXML's PyTorch code writes them: a dense B×N 0/1 target matrix
# (DEXML builds one per batch), 3 positives per row unless the spec says otherwise.
def _positives(rows, cols, args):
    x = torch.randn(rows, cols, requires_grad=True)
    y = torch.zeros(rows, cols)
    y.scatter_(1, torch.randint(0, cols, (rows, int(args.get("positives", 3)))), 1.0)
    return x, y


def decoupled_softmax(rows, cols, args):
    # MATH decoupledSoftmax (native/ops/positives_math.h): Z_i = LSE over the negatives; ℓ_i = −mean_p log σ(z_ip − Z_i); mean over rows.
    x, y = _positives(rows, cols, args)
    pos = y > 0
    n = y.sum(1)

    def step():
        x.grad = None
        z_neg = torch.logsumexp(x.masked_fill(pos, float("-inf")), dim=1, keepdim=True)
        loss = -(F.logsigmoid(x - z_neg) * y).sum(1) / n
        loss.mean().backward()

    return step


def multi_label_softmax(rows, cols, args):
    # MATH multiLabelSoftmax (native/ops/positives_math.h): ℓ_i = Σ_p (lse_i − z_ip); mean over rows.
    x, y = _positives(rows, cols, args)

    def step():
        x.grad = None
        loss = -(F.log_softmax(x, dim=1) * y).sum(1)
        loss.mean().backward()

    return step


def binary_cross_entropy(rows, cols, args):
    # MATH binaryCrossEntropy (native/ops/positives_math.h): mean over B·N.
    x, y = _positives(rows, cols, args)

    def step():
        x.grad = None
        F.binary_cross_entropy_with_logits(x, y).backward()

    return step


def linear_cross_entropy(rows, cols, args):
    # docs/MATH.md §3.9–3.10: what a PyTorch user writes for a linear layer's cross-entropy: the B×N logits, then
    # F.cross_entropy, backward through the product to the hidden states and the weight.
    dim = int(args.get("dim", 512))
    h = torch.randn(rows, dim) * dim**-0.5
    h.requires_grad_(True)
    w = torch.randn(cols, dim) * dim**-0.5
    w.requires_grad_(True)
    y = torch.randint(0, cols, (rows,))

    def step():
        h.grad = None
        w.grad = None
        F.cross_entropy(h @ w.T, y).backward()

    return step


def decoupled_softmax_from_embeddings(rows, cols, args):
    # docs/MATH.md §3.9–3.10, DEXML's step: cosine scores of the normalised query and label embeddings times the
    # scale, decoupled softmax (MATH decoupledSoftmax, native/ops/positives_math.h) over `positives` per row (indices, not DEXML's dense
    # B×N target, so torch is not charged for a matrix ours never reads), backward to both.
    dim = int(args.get("dim", 128))
    scale = float(args.get("scale", 20))
    q = torch.randn(rows, dim, requires_grad=True)
    k = torch.randn(cols, dim, requires_grad=True)
    pos = torch.stack([torch.randperm(cols)[: int(args.get("positives", 3))] for _ in range(rows)])

    def step():
        q.grad = None
        k.grad = None
        s = scale * (F.normalize(q, dim=1) @ F.normalize(k, dim=1).T)
        z_neg = torch.logsumexp(s.scatter(1, pos, float("-inf")), dim=1, keepdim=True)
        loss = -F.logsigmoid(s.gather(1, pos) - z_neg).mean(1)
        loss.mean().backward()

    return step


def sgemm(rows, cols, args):
    # C (rows × cols) = op(A)·op(B) with depth dim, through torch.mm's BLAS; layout "nt": A·Bᵀ
    # (the scores), "nn": A·B (dH = G·W), "tn": Aᵀ·B (dW = Gᵀ·H), as bench/native/gemm_bench.cpp.
    dim = int(args.get("dim", 512))
    layout = args.get("layout", "nt")
    a = torch.randn(dim, rows).T if layout[0] == "t" else torch.randn(rows, dim)
    b = torch.randn(cols, dim).T if layout[1] == "t" else torch.randn(dim, cols)
    c = torch.empty(rows, cols)
    return lambda: torch.mm(a, b, out=c)


def blas_in_use():
    """The BLAS library this process mapped (after a matmul): torch's own build info says
    'generic' for Debian's torch, which calls whatever libblas.so.3 points to."""
    torch.mm(torch.randn(64, 64), torch.randn(64, 64))
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if ".so" in line}
    for name in ("openblas", "mkl", "blis"):
        hits = sorted(l for l in libs if name in l.lower())
        if hits:
            return name if name != "openblas" else "OpenBLAS (" + hits[0] + ")"
    hits = sorted(l for l in libs if "libblas" in l)
    return "reference BLAS (" + hits[0] + ")" if hits else "unknown"


def rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


OPS.update(
    {
        "linearCrossEntropy": linear_cross_entropy,
        "sgemm": sgemm,
        "decoupledSoftmaxFromEmbeddings": decoupled_softmax_from_embeddings,
        "decoupledSoftmax": decoupled_softmax,
        "multiLabelSoftmax": multi_label_softmax,
        "binaryCrossEntropy": binary_cross_entropy,
    }
)


def main():
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(int(spec.get("threads", 2)))
    fn = OPS[spec["op"]](spec["rows"], spec["cols"], spec)
    # Peak memory of the first step beyond what the process held with its inputs made: VmHWM
    # after resetting it (writing 5 to clear_refs), minus VmRSS before. It includes the
    # gradients the step allocates (the caller subtracts what it counts as outputs).
    base = rss_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        fn()
        extra_mib = max(0, rss_kib("VmHWM") - base) / 1024
    except OSError:
        fn()
        extra_mib = None
    times, start = [], time.perf_counter()
    # minReps: timed steps at least (a 4-second step at N = 10^6 needs no more than 1 or 2).
    while len(times) < int(spec.get("minReps", 3)) or (time.perf_counter() - start < float(spec.get("minSeconds", 1.0)) and len(times) < 100):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print(json.dumps({"ms": times[len(times) // 2], "torch": torch.__version__, "blas": blas_in_use(), "extraMiB": extra_mib}))


if __name__ == "__main__":
    main()
