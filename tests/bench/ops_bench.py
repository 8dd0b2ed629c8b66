#!/usr/bin/python3
"""ops_bench.py - the op-level workloads (tests/bench/run --ops): tapegrad
(ops_bench.c) and PyTorch 1.13 eager on the same expressions, forward,
backward and cleared gradients per step, f32, interleaved in fresh processes
(tapegrad, PyTorch, [the --before build,] ...), the medians of --reps runs.
Writes the "ops" section of tests/bench/results.md; with --sweep, the
sweep's s- workloads (expressions nobody tuned, run to look for slow paths)
and its "sweep" section.

    ops_bench.py --bin OPS_BENCH [--before OLD_OPS_BENCH] [--reps 3] [--only NAME,..]
                 [--sweep] [--iters N] [--threads 1] [--no-torch] [--no-save]
                 [--results FILE]
    ops_bench.py --torch NAME [--iters N] [--threads T]   (PyTorch's side, one run)

--iters sets the iterations of each timed run on every side (each workload's
own count in ops_bench.c, 20 for PyTorch, by default).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (write_results, bench_env, load_avg)


def sweep_torch(name, P, R, idx):
    """PyTorch's side of the sweep (ops_bench.c's s- workloads): fills the
    parameters P and returns the step's loss function."""
    import torch
    import torch.nn.functional as F
    x = lambda: P["x"]  # noqa: E731
    y = lambda: P["y"]  # noqa: E731
    sq = lambda t: t * t  # noqa: E731
    e20 = lambda: P.update(x=R(1 << 20), y=R(1 << 20))  # noqa: E731
    R64 = lambda *s: torch.randn(*s, dtype=torch.float64, requires_grad=True)  # noqa: E731
    def lse(t):
        m = t.max(1, keepdim=True)[0].detach()
        return (torch.log(torch.exp(t - m).sum(1, keepdim=True)) + m).sum()

    def var(t, a):
        d = t - t.mean(a, keepdim=True)
        return (d * d).mean(a)

    def std_chan(t):
        n = t.shape[0] * t.shape[2] * t.shape[3]
        d = t - t.sum((0, 2, 3), keepdim=True) * (1 / n)
        return torch.sqrt((d * d).sum((0, 2, 3), keepdim=True) * (1 / n) + 1e-5).sum()

    def catsplit(a, b):
        acc = sq(torch.stack([a, torch.tanh(b)], 0)).sum()
        for k, part in enumerate(torch.chunk(torch.cat([a, b], 1), 4, 1)):
            acc = acc + (torch.tanh(part) * (k + 1.0)).sum()
        return acc

    if name == "s-powmse":
        P["x"] = R(512, 784)
        t = torch.randn(512, 784)
        return lambda: ((x() - t) ** 2).mean()
    if name in ("s-mse", "s-l1", "s-bce"):
        P["x"] = R(512, 784)
        t = torch.rand(512, 784) if name == "s-bce" else torch.randn(512, 784)
        loss = {"s-mse": F.mse_loss, "s-l1": F.l1_loss,
                "s-bce": F.binary_cross_entropy_with_logits}[name]
        return lambda: loss(x(), t)
    if name == "s-ce8":
        P["x"] = R(8192, 8)
        lab = idx(8192, 8)
        return lambda: F.cross_entropy(x(), lab)
    if name in ("s-ce-narrow", "s-pick"):
        k, n = (10, 65536) if name == "s-ce-narrow" else (100, 8192)
        P["x"] = R(n, k)
        lab = idx(8192, k)
        if name == "s-ce-narrow":
            return lambda: F.cross_entropy(x()[:8192], lab)
        return lambda: F.log_softmax(x(), -1).gather(1, lab[:, None]).sum()
    if name in ("s-seg", "s-seg-nll"):
        P["x"] = R(8, 21, 64, 64)
        lab = idx(8 * 64 * 64, 21).reshape(8, 64, 64)
        if name == "s-seg-nll":
            return lambda: F.nll_loss(F.log_softmax(x(), 1), lab)
        return lambda: F.cross_entropy(x(), lab)
    if name == "s-where":
        e20()
        m = torch.rand(1 << 20) != 0
        return lambda: torch.where(m, x(), sq(y())).sum()
    if name in ("s-where64", "s-where-bc"):
        if name == "s-where64":
            P.update(x=R64(1 << 20), y=R64(1 << 20))
            m = torch.rand(1 << 20, dtype=torch.float64) > 0.5
        else:
            P.update(x=R(1024, 1024), y=R(1, 1024))
            m = torch.rand(1024, 1) > 0.5
        return lambda: torch.where(m, x(), sq(y())).sum()
    if name in ("s-conv1x1", "s-conv3", "s-convdw"):
        xs, ws, b, pad, groups = {
            "s-conv1x1": ((32, 64, 16, 16), (128, 64, 1, 1), 128, 0, 1),
            "s-conv3": ((16, 64, 16, 16), (64, 64, 3, 3), 64, 1, 1),
            "s-convdw": ((16, 64, 32, 32), (64, 1, 3, 3), 64, 1, 64)}[name]
        P.update(x=R(*xs), y=R(*ws), b=R(b))
        return lambda: F.relu(F.conv2d(x(), y(), P["b"], padding=pad, groups=groups)).sum()
    setups = {
        "s-max0": lambda: P.update(x=R(4096, 1024)), "s-sum0": lambda: P.update(x=R(4096, 1024)),
        "s-sum-last4": lambda: P.update(x=R(524288, 4)),
        "s-meanall": lambda: P.update(x=R(4096, 1024)), "s-maxall": lambda: P.update(x=R(4096, 1024)),
        "s-mean2": lambda: P.update(x=R(64, 512, 64)), "s-max2": lambda: P.update(x=R(64, 512, 64)),
        "s-max1": lambda: P.update(x=R(64, 512, 64)),
        "s-lsm-narrow": lambda: P.update(x=R(65536, 10)),
        "s-lsm8": lambda: P.update(x=R(131072, 8)),
        "s-lsm-wide": lambda: P.update(x=R(16, 65536)),
        "s-softmax-t": lambda: P.update(x=R(1024, 1024)), "s-slice": lambda: P.update(x=R(1024, 1024)),
        "s-stack": lambda: P.update(x=R(1024, 1024), y=R(1024, 1024)),
        "s-expand": lambda: P.update(x=R(1024, 1024), y=R(1024)),
        "s-rowdiv": lambda: P.update(x=R(1024, 1024), y=R(1024, 1)),
        "s-nhwc": lambda: P.update(x=R(32, 64, 32, 32)),
        "s-bmm": lambda: P.update(x=R(16, 256, 256), y=R(16, 256, 256)),
        "s-bmm-bcast": lambda: P.update(x=R(64, 128, 64), y=R(64, 256)),
        "s-bmm2": lambda: P.update(x=R(65536, 2, 2), y=R(65536, 2, 2)),
        "s-max1-w4": lambda: P.update(x=R(128, 1024, 4)),
        "s-split64": lambda: P.update(x=R(256, 1024)),
        "s-maxpool": lambda: P.update(x=R(32, 16, 64, 64)),
        "s-maxpool3": lambda: P.update(x=R(32, 16, 64, 64)),
        "s-avgpool3": lambda: P.update(x=R(32, 16, 64, 64)),
        "s-ln-narrow": lambda: P.update(x=R(4096, 64), g=R(64), b=R(64)),
        "s-bn2d": lambda: P.update(x=R(32, 64, 32, 32), g=R(64), b=R(64)),
        "s-tiny": lambda: P.update(x=R(32, 16), y=R(16, 16), b=R(16)),
        "s-mm": lambda: P.update(x=R(256, 512), y=R(512, 256)),
        "s-mm-tn": lambda: P.update(x=R(512, 256), y=R(512, 256)),
        "s-outer": lambda: P.update(x=R(1024, 1), y=R(1, 1024)),
        "s-affine4d": lambda: P.update(x=R(32, 64, 32, 32), y=R(1, 64, 1, 1), b=R(1, 64, 1, 1)),
        "s-cat0": lambda: P.update(x=R(1024, 1024), y=R(1024, 1024)),
        "s-ln-wide": lambda: P.update(x=R(64, 4096), g=R(4096), b=R(4096)),
        "s-sumto4d": lambda: P.update(x=R(32, 64, 32, 32)),
        "s-tallmm": lambda: P.update(x=R(65536, 4), y=R(4, 16)),
        "s-gemv": lambda: P.update(x=R(4096, 256), y=R(256, 1)),
        "s-center": lambda: P.update(x=R(4096, 1024)),
        "s-tanhmul64": lambda: P.update(x=R64(1 << 20), y=R64(1 << 20)),
        "s-mm64": lambda: P.update(x=R64(256, 512), y=R64(512, 256)),
        "s-relupool64": lambda: P.update(x=R64(32, 8, 28, 28)),
        "s-lse": lambda: P.update(x=R(1024, 1024), y=R(1024, 1024)),
        "s-lse-op": lambda: P.update(x=R(1024, 1024), y=R(1024, 1024)),
        "s-smmid": lambda: P.update(x=R(64, 128, 128)),
        "s-gauss": lambda: P.update(x=R(1 << 20), y=R(1 << 20), t=R(1 << 20)),
        "s-catsplit": lambda: P.update(x=R(1024, 1024), y=R(1024, 1024)),
        "s-ew64": lambda: P.update(x=R64(1 << 20), y=R64(1 << 20)),
        "s-pow64": lambda: P.update(x=R64(1 << 20), y=R64(1 << 20)),
        "s-div64": lambda: P.update(x=R64(1 << 20), y=R64(1 << 20)),
        "s-sum0-64": lambda: P.update(x=R64(4096, 1024)),
        "s-sum1-64": lambda: P.update(x=R64(4096, 1024)),
        "s-max1-64": lambda: P.update(x=R64(64, 512, 64)),
        "s-meanall64": lambda: P.update(x=R64(4096, 1024)),
        "s-std64": lambda: P.update(x=R64(512, 2048)),
        "s-bcast64": lambda: P.update(x=R64(1024, 1024), y=R64(1, 1024), c=R64(1024, 1)),
        "s-sum3d0": lambda: P.update(x=R(64, 512, 64)),
        "s-mean3d0": lambda: P.update(x=R(64, 512, 64)),
        "s-max3d0": lambda: P.update(x=R(64, 512, 64)),
        "s-sum4d0": lambda: P.update(x=R(32, 64, 32, 32)),
        "s-sum4d1": lambda: P.update(x=R(32, 64, 32, 32)),
        "s-sum4d2": lambda: P.update(x=R(32, 64, 32, 32)),
        "s-sum4d3": lambda: P.update(x=R(32, 64, 32, 32)),
        "s-max4d1": lambda: P.update(x=R(32, 64, 32, 32)),
        "s-max4d3": lambda: P.update(x=R(32, 64, 32, 32)),
        "s-var0": lambda: P.update(x=R(4096, 1024)),
        "s-std-last": lambda: P.update(x=R(64, 512, 64)),
        "s-std-chan": lambda: P.update(x=R(32, 64, 32, 32)),
        "s-bc3": lambda: P.update(x=R(32, 1, 256), y=R(1, 128, 1)),
        "s-bc-chw": lambda: P.update(x=R(32, 64, 32, 32), y=R(64, 1, 1)),
        "s-bc-mid": lambda: P.update(x=R(64, 512, 64), y=R(64, 1, 64)),
        "s-bc-scalar": lambda: P.update(x=R(1024, 1024), y=R(1, 1), b=R(1, 1)),
        "s-small-ew": lambda: P.update(x=R(128), y=R(128)),
        "s-small-ew1k": lambda: P.update(x=R(1024), y=R(1024)),
        "s-small-ew8k": lambda: P.update(x=R(8192), y=R(8192)),
        "s-small-div": lambda: P.update(x=R(1024), y=R(1024)),
        "s-small-sum0": lambda: P.update(x=R(32, 32)),
        "s-small-bc": lambda: P.update(x=R(64, 64), y=R(1, 64), c=R(64, 1)),
        "s-small-std": lambda: P.update(x=R(16, 256)),
        "s-small-max": lambda: P.update(x=R(32, 32)),
        "s-big-ew": lambda: P.update(x=R(1 << 22), y=R(1 << 22)),
        "s-big-div": lambda: P.update(x=R(1 << 22), y=R(1 << 22)),
        "s-big-meanall": lambda: P.update(x=R(1 << 23)),
        "s-big-bc": lambda: P.update(x=R(2048, 2048), y=R(1, 2048), c=R(2048, 1)),
        "s-big-sum0": lambda: P.update(x=R(2048, 2048)),
        "s-big-max1": lambda: P.update(x=R(2048, 2048)),
    }
    ew = lambda: torch.exp((x() * y() + x()) * 0.1).sum()  # noqa: E731
    powdiv = lambda: (x().pow(2) / (y() * y() + 1)).sum()  # noqa: E731
    div = lambda: (x() / (torch.abs(y()) + 1)).sum()  # noqa: E731
    bc = lambda: ((x() + y()) * P["c"]).sum()  # noqa: E731
    std_last = lambda: torch.sqrt(var(x(), -1) + 1e-5).sum()  # noqa: E731
    steps = {
        "s-logsig": lambda: torch.log(torch.sigmoid(x())).sum(),
        "s-sqrt": lambda: torch.sqrt(sq(x()) + 1).sum(),
        "s-leaky": lambda: (F.leaky_relu(x(), 0.01) * y()).sum(),
        "s-elu": lambda: F.elu(x()).sum(),
        "s-tanh2": lambda: torch.tanh(torch.tanh(x())).sum(),
        "s-erf": lambda: torch.erf(x()).sum(),
        "s-log1p": lambda: torch.log1p(sq(x())).sum(),
        "s-maximum": lambda: torch.maximum(x(), y()).sum(),
        "s-absd": lambda: torch.abs(x() - y()).sum(),
        "s-sigmul": lambda: (torch.sigmoid(x()) * y()).sum(),
        "s-expm1": lambda: torch.expm1(x() * 0.5).sum(),
        "s-div": lambda: (x() / (torch.abs(y()) + 1)).sum(),
        "s-max0": lambda: x().max(0)[0].sum(),
        "s-sum0": lambda: sq(x().sum(0)).sum(),
        "s-sum-last4": lambda: sq(x().sum(1)).sum(),
        "s-mean2": lambda: sq(x().mean(2)).sum(),
        "s-max2": lambda: x().max(2)[0].sum(),
        "s-max1": lambda: x().max(1)[0].sum(),
        "s-meanall": lambda: sq(x()).mean(),
        "s-maxall": lambda: x().max(),
        "s-lsm-narrow": lambda: sq(F.log_softmax(x(), -1)).sum(),
        "s-lsm8": lambda: sq(F.log_softmax(x(), -1)).sum(),
        "s-lsm-wide": lambda: sq(F.log_softmax(x(), -1)).sum(),
        "s-softmax-t": lambda: sq(torch.softmax(x().t(), -1)).sum(),
        "s-slice": lambda: sq(x()[:, 100:900]).sum(),
        "s-stack": lambda: sq(torch.stack([x(), y(), x(), y()], 1)).sum(),
        "s-expand": lambda: (x() * y().expand(1024, 1024)).sum(),
        "s-rowdiv": lambda: torch.tanh(x() / (torch.abs(y()) + 1)).sum(),
        "s-nhwc": lambda: sq(x().permute(0, 2, 3, 1)).sum(),
        "s-bmm": lambda: torch.tanh(torch.matmul(x(), y())).sum(),
        "s-bmm-bcast": lambda: torch.tanh(torch.matmul(x(), y())).sum(),
        "s-bmm2": lambda: torch.tanh(torch.matmul(x(), y())).sum(),
        "s-max1-w4": lambda: x().max(1)[0].sum(),
        "s-split64": lambda: sum(sq(p).sum() for p in x().split(16, 1)),
        "s-maxpool": lambda: F.max_pool2d(x(), 2, 2).sum(),
        "s-maxpool3": lambda: F.max_pool2d(x(), 3, 2, 1).sum(),
        "s-avgpool3": lambda: F.avg_pool2d(x(), 3, 1, 1).sum(),
        "s-ln-narrow": lambda: torch.tanh(F.layer_norm(x(), (64,), P["g"], P["b"], 1e-5)).sum(),
        "s-bn2d": lambda: torch.relu(F.batch_norm(x(), None, None, P["g"], P["b"], training=True,
                                                  eps=1e-5)).sum(),
        "s-tiny": lambda: torch.tanh(torch.addmm(P["b"], x(), y())).sum(),
        "s-minmax": lambda: torch.minimum(torch.maximum(x(), y()), x() * 2).sum(),
        "s-mm": lambda: torch.sigmoid(x() @ y()).sum(),
        "s-powh": lambda: ((torch.abs(x()) + 1) ** 1.5).sum(),
        "s-sincos": lambda: torch.sin(torch.cos(x())).sum(),
        "s-mm-tn": lambda: torch.sigmoid(x().t() @ y()).sum(),
        "s-outer": lambda: torch.tanh(x() * y()).sum(),
        "s-affine4d": lambda: torch.relu(x() * y() + P["b"]).sum(),
        "s-cat0": lambda: sq(torch.cat([x(), y()], 0)).sum(),
        "s-ln-wide": lambda: torch.tanh(F.layer_norm(x(), (4096,), P["g"], P["b"], 1e-5)).sum(),
        "s-sumto4d": lambda: sq(x().sum((0, 2, 3), keepdim=True)).sum(),
        "s-tallmm": lambda: torch.tanh(x() @ y()).sum(),
        "s-gemv": lambda: torch.sigmoid(x() @ y()).sum(),
        "s-center": lambda: sq(x() - x().mean(0, keepdim=True)).sum(),
        "s-tanhmul64": lambda: (torch.tanh(x()) * y()).sum(),
        "s-mm64": lambda: torch.sigmoid(x() @ y()).sum(),
        "s-relupool64": lambda: F.max_pool2d(F.relu(x()), 2, 2).sum(),
        "s-lse": lambda: lse(x()),
        "s-lse-op": lambda: torch.logsumexp(x(), 1).sum(),
        "s-smmid": lambda: sq(torch.softmax(x(), 1)).sum(),
        "s-gauss": lambda: (0.5 * sq((P["t"] - x()) * torch.exp(-y())) + y()).mean(),
        "s-catsplit": lambda: catsplit(x(), y()),
        "s-ew64": ew, "s-pow64": powdiv, "s-div64": div,
        "s-sum0-64": lambda: sq(x().sum(0)).sum(),
        "s-sum1-64": lambda: sq(x().sum(1)).sum(),
        "s-max1-64": lambda: x().max(1)[0].sum(),
        "s-meanall64": lambda: sq(x()).mean(),
        "s-std64": std_last, "s-bcast64": bc,
        "s-sum3d0": lambda: sq(x().sum(0)).sum(),
        "s-mean3d0": lambda: sq(x().mean(0)).sum(),
        "s-max3d0": lambda: x().max(0)[0].sum(),
        "s-sum4d0": lambda: sq(x().sum(0)).sum(),
        "s-sum4d1": lambda: sq(x().sum(1)).sum(),
        "s-sum4d2": lambda: sq(x().sum(2)).sum(),
        "s-sum4d3": lambda: sq(x().sum(3)).sum(),
        "s-max4d1": lambda: x().max(1)[0].sum(),
        "s-max4d3": lambda: x().max(3)[0].sum(),
        "s-var0": lambda: var(x(), 0).sum(),
        "s-std-last": std_last,
        "s-std-chan": lambda: std_chan(x()),
        "s-bc3": lambda: sq(x() + y()).sum(),
        "s-bc-chw": lambda: sq(x() - y()).sum(),
        "s-bc-mid": lambda: torch.tanh(x() * y()).sum(),
        "s-bc-scalar": lambda: sq(x() * y() + P["b"]).sum(),
        "s-clamp": lambda: (torch.clamp(x(), -1, 1) * y()).sum(),
        "s-absmean": lambda: torch.abs(x()).mean(),
        "s-small-ew": ew, "s-small-ew1k": ew, "s-small-ew8k": ew, "s-small-div": div,
        "s-small-sum0": lambda: sq(x().sum(0)).sum(),
        "s-small-bc": bc, "s-small-std": std_last,
        "s-small-max": lambda: x().max(1)[0].sum(),
        "s-big-ew": ew, "s-big-div": div,
        "s-big-meanall": lambda: sq(x()).mean(),
        "s-big-bc": bc,
        "s-big-sum0": lambda: sq(x().sum(0)).sum(),
        "s-big-max1": lambda: x().max(1)[0].sum(),
    }
    if name not in steps:
        sys.exit(f"ops_bench.py: unknown workload {name}")
    setups.get(name, e20)()
    return steps[name]


def torch_side(name, iters, threads):
    import torch
    import torch.nn.functional as F
    torch.manual_seed(1)
    torch.set_num_threads(threads)

    def R(*s):
        return torch.randn(*s, requires_grad=True)

    def idx(n, rng):
        return torch.tensor([i * 7919 % rng for i in range(n)])

    P = {}
    if name.startswith("s-"):
        f = sweep_torch(name, P, R, idx)
    elif name == "o-ce10k":
        P["a"] = R(64, 10000); lab = idx(64, 10000)
        f = lambda: F.cross_entropy(P["a"], lab)
    elif name == "o-softmax":
        P["a"] = R(512, 1000)
        f = lambda: (torch.softmax(P["a"], -1) * torch.softmax(P["a"], -1)).sum()
    elif name == "o-lsm-nll":
        P["a"] = R(256, 1000); lab = idx(256, 1000)
        f = lambda: F.nll_loss(F.log_softmax(P["a"], -1), lab)
    elif name == "o-attn":
        P["q"], P["k"], P["v"] = R(8, 128, 64), R(8, 128, 64), R(8, 128, 64)
        f = lambda: torch.tanh(torch.bmm(torch.softmax(
            torch.bmm(P["q"], P["k"].transpose(1, 2)) * 0.125, -1), P["v"])).sum()
    elif name == "o-layernorm":
        P["x"], P["g"], P["b"] = R(256, 1024), R(1024), R(1024)
        f = lambda: F.gelu(F.layer_norm(P["x"], (1024,), P["g"], P["b"], 1e-5)).sum()
    elif name == "o-rowstats":
        P["x"] = R(512, 2048)

        def f():
            d = P["x"] - P["x"].mean(1, keepdim=True)
            return torch.sqrt((d * d).mean(1) + 1e-5).sum()
    elif name == "o-reduce":
        P["x"] = R(4096, 1024)

        def f():
            m = P["x"].mean(0)
            return P["x"].max(1)[0].sum() + (m * m).sum()
    elif name == "o-bcast":
        P["a"], P["b"], P["c"] = R(1024, 1024), R(1, 1024), R(1024, 1)
        f = lambda: ((P["a"] + P["b"]) * P["c"]).sum()
    elif name == "o-elementwise":
        P["x"], P["y"] = R(1 << 20), R(1 << 20)
        f = lambda: torch.exp((P["x"] * P["y"] + P["x"]) * 0.1).sum()
    elif name == "o-pow":
        P["x"], P["y"] = R(1 << 20), R(1 << 20)
        f = lambda: (P["x"].pow(2) / (P["y"] * P["y"] + 1)).sum()
    elif name == "o-permute":
        P["x"] = R(64, 128, 256)
        f = lambda: (P["x"].permute(2, 0, 1) * P["x"].permute(2, 0, 1)).sum()
    elif name == "o-transpose":
        P["x"] = R(1024, 4096)
        f = lambda: (P["x"].t() * P["x"].t()).sum()
    elif name == "o-bmm-small":
        P["a"], P["b"] = R(4096, 8, 8), R(4096, 8, 8)
        f = lambda: torch.bmm(P["a"], P["b"]).sum()
    elif name == "o-batchnorm":
        P["x"], P["g"], P["b"] = R(256, 512), R(512), R(512)
        f = lambda: torch.tanh(F.batch_norm(P["x"], None, None, P["g"], P["b"], True, 0.1,
                                            1e-5)).sum()
    elif name == "o-concat":
        P["a"], P["b"] = R(512, 512), R(512, 512)

        def f():
            c = torch.cat([P["a"], P["b"]], 1)
            return (c * c).sum()
    elif name == "o-gather":
        P["t"] = R(20000, 256); rows = idx(8192, 20000)
        f = lambda: torch.tanh(P["t"][rows]).sum()
    elif name == "o-embedding":
        P["t"] = R(50000, 128); rows = idx(4096, 50000)
        f = lambda: torch.tanh(F.embedding(rows, P["t"])).sum()
    elif name == "o-conv":
        x = torch.randn(32, 3, 32, 32)
        P["w"], P["b"] = R(16, 3, 5, 5), R(16)
        f = lambda: F.max_pool2d(F.relu(F.conv2d(x, P["w"], P["b"], padding=2)), 2, 2).sum()
    elif name == "o-avgpool":
        P["x"] = R(32, 16, 64, 64)
        f = lambda: F.avg_pool2d(P["x"], 2, 2).sum()
    elif name == "o-cnn-avg":
        x = torch.randn(8, 3, 32, 32)
        P["w"], P["b"], P["w2"], P["b2"] = R(16, 3, 5, 5), R(16), R(32, 16, 1, 1), R(32)
        f = lambda: F.relu(F.conv2d(F.avg_pool2d(F.relu(F.conv2d(x, P["w"], P["b"], padding=2)), 2, 2),
                                    P["w2"], P["b2"])).sum()
    elif name == "o-vmath":
        P["x"], P["y"] = R(1 << 20), R(1 << 20)
        f = lambda: (F.softplus(P["x"]) * F.silu(P["y"])).sum()
    elif name == "o-trig":
        P["x"], P["y"] = R(1 << 20), R(1 << 20)
        f = lambda: (torch.sin(P["x"]) * torch.cos(P["y"])).sum()
    elif name == "o-powclamp":
        P["x"] = R(1 << 20)
        f = lambda: (torch.clamp(P["x"], -2, 2) ** 3).sum()
    elif name == "o-conv-s2":
        P["x"], P["w"], P["b"] = R(32, 16, 32, 32), R(32, 16, 3, 3), R(32)
        f = lambda: F.relu(F.conv2d(P["x"], P["w"], P["b"], stride=2, padding=1)).sum()
    elif name == "o-sum-mid":
        P["x"] = R(64, 512, 64)
        f = lambda: (P["x"].sum(1) ** 2).sum()
    elif name == "o-cols":
        P["x"] = R(256, 2048); cols = idx(512, 2048)
        f = lambda: torch.tanh(torch.index_select(P["x"], 1, cols)).sum()
    elif name == "o-huber":
        P["p"] = R(512, 784); t = torch.randn(512, 784)
        f = lambda: F.huber_loss(P["p"], t, delta=1.0)
    else:
        sys.exit(f"ops_bench.py: unknown workload {name}")

    def step():
        loss = f()
        loss.backward()
        for p in P.values():
            p.grad = None
        return float(loss)

    step(), step()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(iters):
            loss = step()
        times.append((time.perf_counter() - t0) / iters)
    print(f"RESULT side=torch workload={name} threads={threads} iters={iters} "
          f"sec_per_iter={statistics.median(times):.9g} loss={loss:.6g}")


def dirty():
    return subprocess.run(["git", "-C", HERE, "diff", "--quiet", "HEAD"]).returncode != 0


def parse(out):
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return dict(kv.split("=", 1) for kv in line.split()[1:])
    return None


def run(cmd, env):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    r = parse(p.stdout)
    if p.returncode or not r:
        print(f"  failed: {' '.join(cmd)}\n{p.stderr.strip()}", file=sys.stderr)
        return None
    return float(r["sec_per_iter"])


def threads(text):
    """argparse type: a thread count, 1 to 64 (TG_MAX_THREADS)."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if not 1 <= v <= 64:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to 64, not {text!r}")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin")
    ap.add_argument("--before", help="another ops_bench build to time beside")
    ap.add_argument("--torch", metavar="NAME", help="run PyTorch's side of one workload")
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--iters", type=bench.positive,
                    help="iterations per timed run, every side (default: the workload's)")
    ap.add_argument("--threads", type=threads, default=1, help="1 to 64 (1)")
    ap.add_argument("--reps", type=bench.positive, default=3)
    ap.add_argument("--only", help="comma-separated workload names (ops_bench --list)")
    ap.add_argument("--sweep", action="store_true",
                    help="the sweep's s- workloads instead of the op table's o- ones")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--results", default=os.path.join(HERE, "results.md"))
    ap.add_argument("--check-args", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.check_args:  # tests/bench/run, before it builds anything
        return 0
    if a.torch:
        return torch_side(a.torch, a.iters or 20, a.threads)
    if not a.bin:
        ap.error("--bin or --torch is needed")
    listing = subprocess.run([a.bin, "--list"], capture_output=True, text=True, check=True)
    work = [line.split("\t", 1) for line in listing.stdout.splitlines()]
    if a.only:
        keep = bench.check_only("ops_bench.py", a.only, [w[0] for w in work])
        work = [w for w in work if w[0] in keep]
    else:
        work = [w for w in work if w[0].startswith("s-" if a.sweep else "o-")]
    have_torch = not a.no_torch and subprocess.run(
        [a.python, "-c", "import torch"], capture_output=True).returncode == 0
    env = bench.bench_env(a.threads)
    # PyTorch's OpenMP workers spin for 0.2 s or so after each parallel
    # region by default, and on a machine with as many cores as threads
    # that spinning takes the CPU its own next loop (or tapegrad's process)
    # needs; passive waiting is how it runs beside other work
    torch_env = dict(env, OMP_WAIT_POLICY="PASSIVE") if a.threads > 1 else env
    start_load = f"{bench.load_avg():.2f}"
    print(f"tests/bench --ops{' --sweep' if a.sweep else ''}: {len(work)} workloads, {a.reps} interleaved runs each, "
          f"{a.threads} thread(s), load {start_load}")
    rows = []
    iters = ["--iters", str(a.iters)] if a.iters else []
    for name, what in work:
        got = {"tg": [], "torch": [], "before": []}
        for _ in range(a.reps):
            got["tg"].append(run([a.bin, name, "--threads", str(a.threads)] + iters, env))
            if have_torch:
                got["torch"].append(run([a.python, os.path.abspath(__file__), "--torch", name,
                                         "--threads", str(a.threads)] + iters, torch_env))
            if a.before:
                got["before"].append(run([a.before, name, "--threads", str(a.threads)] + iters,
                                         env))
        med = {k: statistics.median(v) if v and None not in v else None for k, v in got.items()}
        ratio = med["torch"] / med["tg"] if med["torch"] and med["tg"] else None
        rows.append((name, what, med, ratio))
        print(f"  {name:14} tapegrad {bench.fmt_t(med['tg']):>9}  PyTorch {bench.fmt_t(med['torch']):>9}  "
              + (f"{ratio:5.2f}x" if ratio else "  –  ")
              + (f"  before {bench.fmt_t(med['before'])}" if a.before else ""), flush=True)
    ratios = [r for *_, r in rows if r]
    geo = bench.geomean(ratios) if ratios else None
    head = "| workload | expression (f32 unless said) | tapegrad | PyTorch | PyTorch / tapegrad |"
    sep = "|---|---|---|---|---|"
    if a.before:
        head += " before |"
        sep += "---|"
    lines = [head, sep]
    for name, what, med, ratio in rows:
        line = (f"| {name} | {what} | {bench.fmt_t(med['tg'])} | {bench.fmt_t(med['torch'])} | "
                + (f"{ratio:.2f}×" if ratio else "–") + " |")
        if a.before:
            line += f" {bench.fmt_t(med['before'])} |"
        lines.append(line)
    if ratios:
        lines.append(f"| **geometric mean / minimum** | | | | **{geo:.2f}× / "
                     f"{min(ratios):.2f}×** |" + (" |" if a.before else ""))
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    text = "\n".join(lines) + (
        f"\n\nForward, backward and cleared gradients per step, {a.threads} thread(s); the "
        f"median of {a.reps} fresh processes per side, each the median of 5 timed runs"
        f"{f' of {a.iters} iterations' if a.iters else ''}; "
        f"load {start_load} at the start, {bench.load_avg():.2f} at the end; commit {commit}"
        f"{', with uncommitted changes' if dirty() else ''}.\n")
    print("\n" + text)
    if geo:
        print(f"geometric mean {geo:.2f}x, minimum {min(ratios):.2f}x")
    if not a.no_save:
        section = "sweep" if a.sweep else "ops"
        bench.write_results(a.results, section, text)
        print(f"wrote the {section} section of {os.path.relpath(a.results)}")


if __name__ == "__main__":
    main()
