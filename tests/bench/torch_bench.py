#!/usr/bin/python3
"""torch_bench.py - the PyTorch side of tests/bench: one workload per process.

The same workloads as bench.c, in PyTorch eager mode, printing one line
"RESULT side=torch key=value ..." for tests/bench/bench.py. Data loading is
outside the timed loop; the loop includes drawing each batch (an index
tensor and index_select from the preloaded data), forward, backward, the
optimizer step and zero_grad.

The maths is tapegrad's, with these equivalences:
  - nn.Linear keeps W as (out, in) and computes x @ W^T + b; tapegrad keeps
    (in, out) and computes x @ W + b. Same products, other BLAS flags.
  - Init: weights N(0, std^2) with tapegrad's std (0.01 for W1, He
    sqrt(2 / n_in) for W2 and W3), biases 0; BN gamma 1, beta 0.
  - SGD is the same rule. Momentum: torch's buf = mu buf + g; p -= lr buf
    is the book's v = mu v - lr g; p += v with v = -lr buf, identical for a
    constant lr. Adam: torch puts eps outside the bias-corrected sqrt(v_hat),
    the book (nn/optim.c) adds eps to sqrt(v) and folds both corrections
    into lr_t; the same work per element, a slightly different eps. eps is
    1e-7 on both sides.
  - BatchNorm1d with eps 1e-6 (the book's) and momentum 0.1 (= 1 - 0.9):
    batch statistics in training, biased variance for the normalisation;
    torch's running variance uses the unbiased estimate. It is one fused
    kernel in torch and a composition of ops in tapegrad.
  - zero_grad() keeps torch 1.13's default set_to_none=False (the gradient
    buffers are zeroed, as tapegrad's tg_optim_zero_grad does).

	torch_bench.py WORKLOAD [--iters N] [--epochs E] [--threads T] [--seed S]
	               [--data DIR]
	torch_bench.py NAME --suite-spec "LINE" --data FILE [--iters N]
	torch_bench.py cnn [--iters N] [--threads T] [--data DIR]
	torch_bench.py cnn-bn|cnn-dws [--iters N] [--threads T]
	torch_bench.py conv-layers [--iters N] [--threads T] [--no-mkldnn]
"""
import argparse
import ctypes
import gzip
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

WARM = 5
LAST_LOSS = 50


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return 1
    except OSError:
        return 0


def openblas():
    """(threads, corename, parallel) of the OpenBLAS loaded by torch, if any."""
    for name in ("libopenblas.so.0", "libopenblasp-r0.3.21.so", "libblas.so.3"):
        try:
            lib = ctypes.CDLL(name, mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
        except OSError:
            continue
        try:
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return (lib.openblas_get_num_threads(),
                    lib.openblas_get_corename().decode().replace(" ", "_"),
                    lib.openblas_get_parallel())
        except AttributeError:
            continue
    return (-1, "unknown", -1)


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, n * rows * cols, 16).reshape(n, rows * cols)
    if magic == 0x801:
        return np.frombuffer(data, np.uint8, n, 8)
    raise ValueError(f"{path}: wrong magic 0x{magic:08x}")


def load(dirname, dtype):
    def path(stem):
        p = os.path.join(dirname, stem)
        return p + ".gz" if os.path.exists(p + ".gz") else p
    x = read_idx(path("train-images-idx3-ubyte"))
    y = read_idx(path("train-labels-idx1-ubyte"))
    X = torch.from_numpy(x.astype(np.float32) / np.float32(255)).to(dtype)
    Y = torch.from_numpy(y.astype(np.int64))
    return X, Y


def mlp(widths, act, batchnorm, std):
    """Linear -> [BN] -> act per hidden layer, Linear for the logits."""
    layers = []
    for i in range(len(widths) - 1):
        lin = nn.Linear(widths[i], widths[i + 1])
        nn.init.normal_(lin.weight, 0.0, std(widths[i]))
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(widths) - 2:
            if batchnorm:
                layers.append(nn.BatchNorm1d(widths[i + 1], eps=1e-6, momentum=0.1))
            layers.append(act())
    return nn.Sequential(*layers)


class Run:
    def __init__(self):
        self.r = {}

    def start(self):
        self.r["rss_start_kb"] = status_kb("VmRSS")
        self.r["peak_reset"] = reset_peak()
        self.w0 = time.perf_counter()
        self.c0 = time.process_time()

    def tick(self, it):
        """Called before iteration it: the steady state is timed from WARM on."""
        if it == WARM:
            self.ww = time.perf_counter()
            self.cw = time.process_time()

    def stop(self, iters):
        w1, c1 = time.perf_counter(), time.process_time()
        self.r["wall"] = w1 - self.w0
        self.r["cpu"] = c1 - self.c0
        self.r["iters"] = iters
        self.r["sec_per_iter"] = self.r["wall"] / iters if iters else float("nan")
        if iters > WARM and hasattr(self, "ww"):
            self.r["steady_sec_per_iter"] = (w1 - self.ww) / (iters - WARM)
            self.r["steady_cpu_per_iter"] = (c1 - self.cw) / (iters - WARM)
        self.r["loop_peak_kb"] = status_kb("VmHWM")


def train(run, X, Y, model, opt, batch, iters, epochs, replace, seed):
    g = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    if replace:
        total = iters
    else:
        total = epochs * ((n + batch - 1) // batch)
        if iters > 0:
            total = min(total, iters)
    loss_sum, loss_n, it = 0.0, 0, 0
    perm, pos = None, n
    model.train()
    run.start()
    while it < total:
        run.tick(it)
        if replace:
            idx = torch.randint(0, n, (batch,), generator=g)
        else:
            if pos >= n:
                perm, pos = torch.randperm(n, generator=g), 0
            idx = perm[pos:pos + batch]
            pos += batch
        x = X.index_select(0, idx)
        y = Y.index_select(0, idx)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it >= total - LAST_LOSS:
            loss_sum += loss.item()
            loss_n += 1
        it += 1
    run.stop(it)
    run.r["loss"] = loss_sum / loss_n if loss_n else float("nan")


def suite_train(run, w, spec, data, seed, iters):
    """A suite workload of bench.c (SUITE): spec is tg_bench suite-list's line
    "name arch act optimizer batch dtype loss iterations"; data the file of
    tg_bench suite-data (the same numbers). Init: He for relu, leaky_relu,
    elu, gelu, Glorot otherwise (normal), biases 0; optimizers with
    tg_optim_defaults' hyper-parameters (SGD lr 0.05). torch's Nesterov,
    AdaGrad and RMSprop differ from the book's in where eps and the
    look-ahead go: the same work per element."""
    _, arch, act, optk, batch, dt, lossk, defiters = spec.split()
    widths = [int(v) for v in arch.split("-")]
    dtype = torch.float64 if dt == "f64" else torch.float32
    with open(data, "rb") as f:
        n, d, classes, tdim = struct.unpack("<4q", f.read(32))
        X = np.frombuffer(f.read(n * d * 4), np.float32).reshape(n, d)
        if classes:
            Y = torch.from_numpy(np.frombuffer(f.read(n * 4), np.int32).astype(np.int64))
        else:
            Y = torch.from_numpy(np.frombuffer(f.read(n * tdim * 4), np.float32)
                                 .reshape(n, tdim).copy()).to(dtype)
    X = torch.from_numpy(X.copy()).to(dtype)
    he = act in ("relu", "leaky_relu", "elu", "gelu")
    acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
            "leaky_relu": lambda: nn.LeakyReLU(0.01), "elu": lambda: nn.ELU(1.0),
            "gelu": nn.GELU, "silu": nn.SiLU, "softplus": nn.Softplus}
    std = (lambda i, o: math.sqrt(2.0 / i)) if he else (lambda i, o: math.sqrt(2.0 / (i + o)))
    layers = []
    for i in range(len(widths) - 1):
        lin = nn.Linear(widths[i], widths[i + 1])
        nn.init.normal_(lin.weight, 0.0, std(widths[i], widths[i + 1]))
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(widths) - 2:
            layers.append(acts[act]())
    model = nn.Sequential(*layers).to(dtype)
    k = int(optk)  # TG_SGD, MOMENTUM, NESTEROV, ADAGRAD, RMSPROP, ADAM, ADAMW
    P = model.parameters()
    opt = [lambda: torch.optim.SGD(P, lr=0.05),
           lambda: torch.optim.SGD(P, lr=0.01, momentum=0.9),
           lambda: torch.optim.SGD(P, lr=0.01, momentum=0.9, nesterov=True),
           lambda: torch.optim.Adagrad(P, lr=0.01, eps=1e-7),
           lambda: torch.optim.RMSprop(P, lr=0.01, alpha=0.99, eps=1e-7),
           lambda: torch.optim.Adam(P, lr=0.001, betas=(0.9, 0.999), eps=1e-7),
           lambda: torch.optim.AdamW(P, lr=0.001, betas=(0.9, 0.999), eps=1e-7,
                                     weight_decay=0)][k]()
    lossf = [lambda out, y: F.cross_entropy(out, y), F.mse_loss,
             F.binary_cross_entropy_with_logits][int(lossk)]
    total = iters if iters >= 0 else int(defiters)
    batch = int(batch)
    g = torch.Generator().manual_seed(seed)
    loss_sum, loss_n = 0.0, 0
    run.r["dtype"] = dt
    run.start()
    for it in range(total):
        run.tick(it)
        idx = torch.randint(0, n, (batch,), generator=g)
        x = X.index_select(0, idx)
        y = Y.index_select(0, idx)
        loss = lossf(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it >= total - LAST_LOSS:
            loss_sum += loss.item()
            loss_n += 1
    run.stop(total)
    run.r["loss"] = loss_sum / loss_n if loss_n else float("nan")


def cnn_synthetic():
    """bench.c's cnn_synthetic: 4096 LCG images in [0, 1), labels from the
    weighted pixel sum."""
    n, d = 4096, 28 * 28
    seed = np.empty(n * d, np.uint64)
    s = 12345
    for i in range(n * d):  # the same recurrence, mod 2^32
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        seed[i] = s
    x = ((seed >> np.uint64(8)).astype(np.float64) / 16777216.0).astype(np.float32)
    x = x.reshape(n, d)
    wj = (np.arange(d) % 7 - 3).astype(np.float64)
    y = (np.floor(np.abs(x.astype(np.float64) @ wj)) % 10).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def cnn_train(run, X, Y, iters, seed):
    """bench.c's cnn_train: conv 32 3x3 pad 1 -> ReLU -> max-pool 2 -> conv 64
    3x3 pad 1 -> ReLU -> max-pool 2 -> fc 128 -> ReLU -> fc 10, He-normal
    weights by fan-in and zero biases as tg_model_parse_image's "cnn", Adam
    1e-3 (eps 1e-7), batch 64 with replacement from (N,1,28,28) images."""
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
            nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    X = X.reshape(-1, 1, 28, 28).contiguous()
    g = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    total = iters if iters >= 0 else 100
    loss_sum, loss_n = 0.0, 0
    model.train()
    run.start()
    for it in range(total):
        run.tick(it)
        idx = torch.randint(0, n, (64,), generator=g)
        x = X.index_select(0, idx)
        y = Y.index_select(0, idx)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it >= total - LAST_LOSS:
            loss_sum += loss.item()
            loss_n += 1
    run.stop(total)
    run.r["loss"] = loss_sum / loss_n if loss_n else float("nan")


# bench.c's CNN_BN and CNN_DWS: c_in, c_out, k, stride, groups, bias, bn
IMG_CNNS = {
    "cnn-bn": [(3, 32, 3, 1, 1, True, True), (32, 64, 3, 2, 1, True, False),
               (64, 128, 3, 2, 1, True, False)],
    "cnn-dws": [(3, 32, 3, 2, 1, False, True), (32, 32, 3, 1, 32, False, True),
                (32, 128, 1, 1, 1, False, True), (128, 128, 3, 2, 128, False, True),
                (128, 256, 1, 1, 1, False, True)],
}


def img_cnn_train(run, w, iters, seed):
    """bench.c's img_cnn_train: conv (padding k/2) -> [batch norm] -> ReLU per
    layer, global average pooling, fc 10; weights N(0, 2/fan_in), biases 0,
    Momentum 0.9 lr 0.01, batch 32 with replacement from 1024 synthetic
    (3,32,32) images (pixel i: (i * 2654435761 mod 2^32) >> 8 over 2^24,
    label i: 7 i mod 10)."""
    layers = IMG_CNNS[w]
    n, d = 1024, 3 * 32 * 32
    i = np.arange(n * d, dtype=np.uint64)
    h = (i * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    X = torch.from_numpy(((h >> np.uint64(8)).astype(np.float64) / 16777216.0)
                         .astype(np.float32).reshape(n, 3, 32, 32))
    Y = torch.from_numpy(np.arange(n, dtype=np.int64) * 7 % 10)
    mods = []
    for c_in, c_out, k, s, g, bias, bn in layers:
        conv = nn.Conv2d(c_in, c_out, k, s, k // 2, groups=g, bias=bias)
        nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / conv.weight[0].numel()))
        if bias:
            nn.init.zeros_(conv.bias)
        mods.append(conv)
        if bn:
            # batch statistics only, as tg_batch_norm (no running averages)
            mods.append(nn.BatchNorm2d(c_out, eps=1e-5, track_running_stats=False))
        mods.append(nn.ReLU())
    fc = nn.Linear(layers[-1][1], 10)
    nn.init.normal_(fc.weight, 0.0, math.sqrt(2.0 / layers[-1][1]))
    nn.init.zeros_(fc.bias)
    model = nn.Sequential(*mods, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    total = iters if iters >= 0 else 60
    loss_sum, loss_n = 0.0, 0
    model.train()
    run.start()
    for it in range(total):
        run.tick(it)
        idx = torch.randint(0, n, (32,), generator=g)
        x = X.index_select(0, idx)
        y = Y.index_select(0, idx)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it >= total - LAST_LOSS:
            loss_sum += loss.item()
            loss_n += 1
    run.stop(total)
    run.r["loss"] = loss_sum / loss_n if loss_n else float("nan")


def conv_layers(run, iters):
    """bench.c's conv_layers: the CNN's two convolutions alone, forward and
    backward from fixed upstream gradients (dw, db of both, dx of conv2)."""
    x = torch.rand(64, 1, 28, 28)
    h = torch.randn(64, 32, 14, 14, requires_grad=True)
    c1, c2 = nn.Conv2d(1, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)
    g1, g2 = torch.randn(64, 32, 28, 28), torch.randn(64, 64, 14, 14)
    params = [h] + list(c1.parameters()) + list(c2.parameters())
    total = iters if iters >= 0 else 100
    run.start()
    for it in range(total):
        run.tick(it)
        for p in params:
            p.grad = None
        c1(x).backward(g1)
        c2(h).backward(g2)
    run.stop(total)
    run.r["loss"] = c2.bias.grad[0].item()


def tiny_scalar(run, reps):
    x = torch.tensor(2.0, requires_grad=True)
    y = torch.tensor(3.0, requires_grad=True)
    z = torch.tensor(4.0, requires_grad=True)
    run.start()
    for it in range(reps):
        run.tick(it)
        f = (x + y) * z
        f.backward()
    run.stop(reps)
    run.r["loss"] = z.grad.item() / reps


def tiny_sigmoid(run, reps):
    # fixed values, the same in bench.c, so the outputs can be compared
    w = torch.tensor([0.1 * ((i % 7) - 3) / 3.0 for i in range(64)], requires_grad=True)
    x = torch.tensor([((i % 5) - 2) / 2.0 for i in range(64)])
    b = torch.tensor(0.25, requires_grad=True)
    y = None
    run.start()
    for it in range(reps):
        run.tick(it)
        y = torch.sigmoid((w * x).sum() + b)
        y.backward()
    run.stop(reps)
    run.r["loss"] = y.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workload")
    ap.add_argument("--iters", type=int, default=-1)
    ap.add_argument("--epochs", type=int, default=-1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--suite-spec", help="a suite workload's line of tg_bench suite-list")
    ap.add_argument("--no-mkldnn", action="store_true",
                    help="conv-layers: PyTorch's own im2col path instead of oneDNN")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    w = a.workload
    dtype = torch.float64 if w.endswith("f64") else torch.float32
    run = Run()
    run.r.update(side="torch", workload=w, dtype="f64" if dtype == torch.float64 else "f32",
                 threads=a.threads)
    he = lambda n: math.sqrt(2.0 / n)
    if a.suite_spec:
        suite_train(run, w, a.suite_spec, a.data, a.seed, a.iters)
    elif w in ("w1", "w1-f64", "w2", "w3"):
        X, Y = load(a.data, dtype)
        if w.startswith("w1"):
            model = mlp([784, 50, 10], nn.Sigmoid, False, lambda n: 0.01).to(dtype)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            train(run, X, Y, model, opt, 100, a.iters if a.iters >= 0 else 10000, 0,
                  True, a.seed)
        elif w == "w2":
            model = mlp([784] + [100] * 5 + [10], nn.ReLU, True, he)
            opt = torch.optim.Adam(model.parameters(), lr=0.001, betas=(0.9, 0.999),
                                   eps=1e-7)
            train(run, X, Y, model, opt, 100, max(a.iters, 0),
                  a.epochs if a.epochs >= 0 else 3, False, a.seed)
        else:
            model = mlp([784, 1024, 1024, 10], nn.ReLU, False, he)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            train(run, X, Y, model, opt, 512, max(a.iters, 0),
                  a.epochs if a.epochs >= 0 else 2, False, a.seed)
    elif w == "cnn":
        try:
            X, Y = load(a.data, dtype)
        except OSError as e:
            print(f"torch_bench.py: cnn: {e}; synthetic images instead", file=sys.stderr)
            X, Y = cnn_synthetic()
        cnn_train(run, X, Y, a.iters, a.seed)
    elif w in IMG_CNNS:
        img_cnn_train(run, w, a.iters, a.seed)
    elif w == "conv-layers":
        with torch.backends.mkldnn.flags(enabled=not a.no_mkldnn):
            conv_layers(run, a.iters)
        run.r["mkldnn"] = int(not a.no_mkldnn)
    elif w == "w4-scalar":
        tiny_scalar(run, a.iters if a.iters >= 0 else 1000000)
    elif w == "w4-sigmoid":
        tiny_sigmoid(run, a.iters if a.iters >= 0 else 1000000)
    else:
        sys.exit(f"torch_bench.py: unknown workload {w}")

    bt, core, par = openblas()
    run.r.update(maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                 blas_threads=bt, openblas_corename=core, openblas_parallel=par,
                 torch_threads=torch.get_num_threads(),
                 torch_interop_threads=torch.get_num_interop_threads(),
                 torch_version=torch.__version__, error="none")
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE",
              "OPENBLAS_THREAD_TIMEOUT"):
        run.r["env_" + k] = os.environ.get(k) or "unset"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in run.r.items()), flush=True)


if __name__ == "__main__":
    main()
