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


OPS = {"softmaxCrossEntropy": cross_entropy, "logSumExp": log_sum_exp}


def main():
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(int(spec.get("threads", 2)))
    fn = OPS[spec["op"]](spec["rows"], spec["cols"], spec)
    fn()
    times, start = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < 1.0 and len(times) < 100):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print(json.dumps({"ms": times[len(times) // 2], "torch": torch.__version__}))


if __name__ == "__main__":
    main()
