#!/usr/bin/python3
"""torch_cnn_fashion.py - the PyTorch reference for `train --net cnn`.

Trains the recipe of `--net cnn` in PyTorch 1.13 eager mode on
Fashion-MNIST and prints the test accuracy and the time of each epoch, so
that the README's CNN figures have PyTorch's beside them, measured in the
same session: conv 32 3x3 pad 1 -> ReLU -> max-pool 2 -> conv 64 3x3 pad 1
-> ReLU -> max-pool 2 -> fc 128 -> ReLU -> fc 10, He init, Adam 1e-3,
batch 64, shuffled epochs, f32.

	torch_cnn_fashion.py [--epochs E] [--threads T] [--seed S] [--cosine]
	                     [--data DIR]

--cosine uses the cosine schedule of tapegrad's `--net` default (per
epoch, to 0 at the end); without it the rate is constant, as in the
issue's recipe.
"""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
from torch import nn  # noqa: E402

from torch_bench import read_idx  # noqa: E402


def load(dirname, stem):
    def path(name):
        p = os.path.join(dirname, name)
        return p + ".gz" if os.path.exists(p + ".gz") else p
    x = read_idx(path(f"{stem}-images-idx3-ubyte"))
    y = read_idx(path(f"{stem}-labels-idx1-ubyte"))
    X = torch.from_numpy(x.astype("float32") / 255.0).reshape(-1, 1, 28, 28)
    return X, torch.from_numpy(y.astype("int64"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cosine", action="store_true")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    X, Y = load(a.data, "train")
    Xt, Yt = load(a.data, "t10k")
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    for m in net:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    batch = 64
    print(f"torch {torch.__version__}, {a.threads} threads, {a.epochs} epochs, "
          f"batch {batch}, Adam 1e-3{' cosine' if a.cosine else ''}", flush=True)
    total = 0.0
    for epoch in range(a.epochs):
        if a.cosine:
            for g in opt.param_groups:
                g["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * epoch / a.epochs))
        t0 = time.perf_counter()
        net.train()
        perm = torch.randperm(X.shape[0])
        for i in range(0, X.shape[0], batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(net(X[idx]), Y[idx])
            loss.backward()
            opt.step()
        dt = time.perf_counter() - t0
        total += dt
        net.eval()
        with torch.no_grad():
            acc = sum((net(Xt[i:i + 1000]).argmax(1) == Yt[i:i + 1000]).sum().item()
                      for i in range(0, Xt.shape[0], 1000)) / Xt.shape[0]
        print(f"epoch {epoch + 1}  test acc {acc:.4f}  {dt:.1f} s", flush=True)
    print(f"training {total:.1f} s", flush=True)


if __name__ == "__main__":
    main()
