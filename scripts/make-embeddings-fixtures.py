#!/usr/bin/env python3
"""Fixtures for test/embeddings-vs-torch.test.ts: the losses from embeddings as a PyTorch user
writes them (the B×N logits, then the loss, backward to both inputs), in fp32 and in float64,
on the same inputs. The test holds fusedloss's fp32 error to at most twice PyTorch fp32's, each
measured against a float64 reference (issue 15: "error no worse than 2x PyTorch fp32's").

The file keeps the inputs (fp32, base64) and, per case, PyTorch fp32's errors against its own
float64 run, plus that float64 run's loss, gradient norms and a few gradient entries, so the
test can check that its float64 reference (test/reference/) computes the same thing. The
gradients themselves are not stored: at D = 1024 they would make the file megabytes.

Run: /usr/bin/python3 scripts/make-embeddings-fixtures.py > test/fixtures/embeddings-vs-torch.json
(Debian python3-torch; any torch >= 1.10 does.)
"""
import base64
import json
import sys

import torch
import torch.nn.functional as F

torch.set_num_threads(1)  # the fp32 error does not depend on it much, but the file then does not at all
gen = torch.Generator().manual_seed(20261202)


def b64(t):
    return base64.b64encode(t.detach().to(torch.float32).contiguous().numpy().astype('<f4').tobytes()).decode()


def normal(*shape, sd=1.0):
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * sd).to(torch.float32)


def shape_inputs(B, D, N):
    sd = (1.0 / D**0.5) ** 0.5  # scores of standard deviation about 1
    Q = normal(B, D, sd=sd)
    K = normal(N, D, sd=sd)
    row_ptr, cols = [0], []
    for _ in range(B):
        n = 1 + int(torch.randint(0, 3, (1,), generator=gen))
        cols += sorted(torch.randperm(N, generator=gen)[:n].tolist())
        row_ptr.append(len(cols))
    labels = torch.randint(0, N, (B,), generator=gen)
    labels[1::3] = -100  # ignored rows
    bias = normal(N)
    return dict(B=B, D=D, N=N, Q=Q, K=K, rowPtr=row_ptr, cols=cols, labels=labels, bias=bias)


class SoftTopK(torch.autograd.Function):
    """DEXML's soft top-k (MATH softTopK, native/ops/soft_topk_math.h): threshold t with sum_j sigmoid(alpha(z + t)) = k by
    bisection, log p out, implicit-function backward. fp32: DEXML's 32 steps in [-10/alpha,
    10/alpha], as its users run it. float64: the bracket of MATH softTopK (native/ops/soft_topk_math.h) and 200 steps (exact)."""

    @staticmethod
    def forward(ctx, z, k, alpha, exact):
        if exact:
            s = torch.log(torch.tensor(k / (z.shape[1] - k), dtype=z.dtype)) / alpha
            lo = -z.max(1, keepdim=True).values + s
            hi = -z.min(1, keepdim=True).values + s
            steps = 200
        else:
            lo = torch.full((z.shape[0], 1), -10.0 / alpha, dtype=z.dtype)
            hi = torch.full((z.shape[0], 1), 10.0 / alpha, dtype=z.dtype)
            steps = 32
        for _ in range(steps):
            t = (lo + hi) / 2
            below = torch.sigmoid(alpha * (z + t)).sum(1, keepdim=True) < k
            lo = torch.where(below, t, lo)
            hi = torch.where(below, hi, t)
        a = alpha * (z + (lo + hi) / 2)
        ctx.save_for_backward(torch.sigmoid(a))
        ctx.alpha = alpha
        return F.logsigmoid(a)

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved_tensors
        u = ctx.alpha * g * (1 - p)
        v = ctx.alpha * p * (1 - p)
        return u - v * u.sum(1, keepdim=True) / v.sum(1, keepdim=True), None, None, None


def loss_from_scores(op, S, z, y, exact):
    """The section-3 loss of the scaled scores z (S: the unscaled scores, for DCLW's weights)."""
    B, N = z.shape
    n = y.sum(1)
    ar = torch.arange(B)
    if op == 'decoupledSoftmax':
        z_neg = torch.logsumexp(z.masked_fill(y > 0, float('-inf')), dim=1, keepdim=True)
        return (-(F.logsigmoid(z - z_neg) * y).sum(1) / n).mean()
    if op == 'multiLabelSoftmax':
        return (-(F.log_softmax(z, dim=1) * y).sum(1)).mean()
    if op == 'binaryCrossEntropy':
        return F.binary_cross_entropy_with_logits(z, y)
    if op == 'infoNCE':  # SupCon's mean over the CSR positives
        return (-(F.log_softmax(z, dim=1) * y).sum(1) / n).mean()
    if op == 'infoNCEDiagonal':
        return F.cross_entropy(z, ar)
    if op == 'infoNCESymmetric':  # CLIP as OpenCLIP writes it
        return (F.cross_entropy(z, ar) + F.cross_entropy(z.t(), ar)) / 2
    if op in ('decoupledContrastive', 'decoupledContrastiveWeighted'):
        eye = torch.zeros(B, N, dtype=torch.bool)
        eye[ar, ar] = True
        w = 1.0
        if op == 'decoupledContrastiveWeighted':
            w = 2 - B * F.softmax(torch.diagonal(S).detach() / 0.5, dim=0)
        return (-w * torch.diagonal(z) + torch.logsumexp(z.masked_fill(eye, float('-inf')), dim=1)).mean()
    if op == 'softTopKLoss':
        return (-(y * SoftTopK.apply(z, 5, 2.0, exact)).sum(1) / n).mean()
    raise ValueError(op)


def run(case, sh, dtype):
    exact = dtype == torch.float64
    q = sh['Q'].to(dtype).detach().clone().requires_grad_()
    k = sh['K'].to(dtype).detach().clone().requires_grad_()
    if case['op'] == 'linearCrossEntropy':
        b = sh['bias'].to(dtype).detach().clone().requires_grad_() if case['bias'] else None
        logits = q @ k.T + (b if b is not None else 0)
        loss = F.cross_entropy(logits, sh['labels'], ignore_index=-100, label_smoothing=case['opts'].get('labelSmoothing', 0.0))
        loss.backward()
        return loss, q.grad, k.grad, (b.grad if b is not None else None)
    opts = case['opts']
    qn, kn = (F.normalize(q, dim=1), F.normalize(k, dim=1)) if opts.get('normalize') else (q, k)
    S = qn @ kn.T
    y = torch.zeros(sh['B'], sh['N'], dtype=dtype)
    for i in range(sh['B']):
        y[i, sh['cols'][sh['rowPtr'][i]:sh['rowPtr'][i + 1]]] = 1
    loss = loss_from_scores(case['op'], S, opts.get('scale', 1.0) * S, y, exact)
    loss.backward()
    return loss, q.grad, k.grad, None


def rel(a, b):
    return float((a.double() - b).norm() / b.norm())


def probes(t, n=12):
    """n entries spread over the flattened gradient: index and float64 value."""
    flat = t.flatten()
    idx = [int(i * (flat.numel() - 1) / (n - 1)) for i in range(n)]
    return [[i, float(flat[i])] for i in idx]


SHAPES = [(7, 33, 129), (15, 1024, 15), (31, 17, 31)]
FORMS = ['decoupledSoftmax', 'multiLabelSoftmax', 'binaryCrossEntropy', 'infoNCE', 'infoNCEDiagonal', 'decoupledContrastive', 'decoupledContrastiveWeighted', 'softTopKLoss']


def main():
    shapes = [shape_inputs(*s) for s in SHAPES]
    cases = []
    for si, sh in enumerate(shapes):
        cases.append(dict(shape=si, op='linearCrossEntropy', bias=False, opts={}))
        cases.append(dict(shape=si, op='linearCrossEntropy', bias=True, opts={'labelSmoothing': 0.1}))
        forms = FORMS + (['infoNCESymmetric'] if sh['B'] == sh['N'] else [])
        for op in forms:
            for normalize in (False, True):
                scale = (4.0 if op == 'softTopKLoss' else 20.0) if normalize else 1.0
                cases.append(dict(shape=si, op=op, opts={'normalize': normalize, 'scale': scale}))
    out_cases = []
    for c in cases:
        sh = shapes[c['shape']]
        l32, dq32, dk32, db32 = run(c, sh, torch.float32)
        l64, dq64, dk64, db64 = run(c, sh, torch.float64)
        torch32 = dict(lossErr=abs(float(l32) - float(l64)) / abs(float(l64)), dQErr=rel(dq32, dq64), dKErr=rel(dk32, dk64))
        ref64 = dict(loss=float(l64), dQNorm=float(dq64.norm()), dKNorm=float(dk64.norm()), dQProbes=probes(dq64), dKProbes=probes(dk64))
        if db32 is not None:
            torch32['dbErr'] = rel(db32, db64)
            ref64['dbNorm'] = float(db64.norm())
        out_cases.append(dict(shape=c['shape'], op=c['op'], bias=c.get('bias', False), opts=c['opts'], torch32=torch32, ref64=ref64))
    doc = dict(
        about='scripts/make-embeddings-fixtures.py: PyTorch fp32 errors against float64 on the losses from embeddings',
        torch=torch.__version__,
        shapes=[dict(B=s['B'], D=s['D'], N=s['N'], Q=b64(s['Q']), K=b64(s['K']), bias=b64(s['bias']), rowPtr=s['rowPtr'], cols=s['cols'], labels=s['labels'].tolist()) for s in shapes],
        cases=out_cases,
    )
    json.dump(doc, sys.stdout, indent=None, separators=(',', ':'))
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
