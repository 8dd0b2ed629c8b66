#!/usr/bin/python3
"""ops_bench.py - the op-level workloads (tests/bench/run --ops): tapegrad
(ops_bench.c) and PyTorch 1.13 eager on the same expressions, forward,
backward and cleared gradients per step, f32, interleaved in fresh processes
(tapegrad, PyTorch, [the --before build,] ...), the medians of --reps runs.
Writes the "ops" section of tests/bench/results.md.

    ops_bench.py --bin OPS_BENCH [--before OLD_OPS_BENCH] [--reps 3] [--only NAME,..]
                 [--threads 1] [--no-torch] [--no-save]
    ops_bench.py --torch NAME [--iters N] [--threads T]   (PyTorch's side, one run)
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
    if name == "o-ce10k":
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


def fmt(s):
    return "–" if s is None else f"{s * 1e3:.3g} ms" if s >= 1e-3 else f"{s * 1e6:.3g} µs"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin")
    ap.add_argument("--before", help="another ops_bench build to time beside")
    ap.add_argument("--torch", metavar="NAME", help="run PyTorch's side of one workload")
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--iters", type=int)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", help="comma-separated workload names")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--results", default=os.path.join(HERE, "results.md"))
    a = ap.parse_args()
    if a.torch:
        return torch_side(a.torch, a.iters or 20, a.threads)
    if not a.bin:
        ap.error("--bin or --torch is needed")
    listing = subprocess.run([a.bin, "--list"], capture_output=True, text=True, check=True)
    work = [line.split("\t", 1) for line in listing.stdout.splitlines()]
    if a.only:
        keep = set(a.only.split(","))
        work = [w for w in work if w[0] in keep]
    have_torch = not a.no_torch and subprocess.run(
        [a.python, "-c", "import torch"], capture_output=True).returncode == 0
    env = bench.bench_env(a.threads)
    start_load = f"{bench.load_avg():.2f}"
    print(f"tests/bench --ops: {len(work)} workloads, {a.reps} interleaved runs each, "
          f"{a.threads} thread(s), load {start_load}")
    rows = []
    for name, what in work:
        got = {"tg": [], "torch": [], "before": []}
        for _ in range(a.reps):
            got["tg"].append(run([a.bin, name, "--threads", str(a.threads)], env))
            if have_torch:
                got["torch"].append(run([a.python, os.path.abspath(__file__), "--torch", name,
                                         "--threads", str(a.threads)]
                                        + (["--iters", str(a.iters)] if a.iters else []), env))
            if a.before:
                got["before"].append(run([a.before, name, "--threads", str(a.threads)], env))
        med = {k: statistics.median(v) if v and None not in v else None for k, v in got.items()}
        ratio = med["torch"] / med["tg"] if med["torch"] and med["tg"] else None
        rows.append((name, what, med, ratio))
        print(f"  {name:14} tapegrad {fmt(med['tg']):>9}  PyTorch {fmt(med['torch']):>9}  "
              + (f"{ratio:5.2f}x" if ratio else "  –  ")
              + (f"  before {fmt(med['before'])}" if a.before else ""), flush=True)
    ratios = [r for *_, r in rows if r]
    geo = bench.geomean(ratios) if ratios else None
    head = "| workload | expression (f32) | tapegrad | PyTorch | PyTorch / tapegrad |"
    sep = "|---|---|---|---|---|"
    if a.before:
        head += " before |"
        sep += "---|"
    lines = [head, sep]
    for name, what, med, ratio in rows:
        line = (f"| {name} | {what} | {fmt(med['tg'])} | {fmt(med['torch'])} | "
                + (f"{ratio:.2f}×" if ratio else "–") + " |")
        if a.before:
            line += f" {fmt(med['before'])} |"
        lines.append(line)
    if ratios:
        lines.append(f"| **geometric mean / minimum** | | | | **{geo:.2f}× / "
                     f"{min(ratios):.2f}×** |" + (" |" if a.before else ""))
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    text = "\n".join(lines) + (
        f"\n\nForward, backward and cleared gradients per step, {a.threads} thread(s); the "
        f"median of {a.reps} fresh processes per side, each the median of 5 timed runs; "
        f"load {start_load} at the start, {bench.load_avg():.2f} at the end; commit {commit}"
        f"{', with uncommitted changes' if dirty() else ''}.\n")
    print("\n" + text)
    if geo:
        print(f"geometric mean {geo:.2f}x, minimum {min(ratios):.2f}x")
    if not a.no_save:
        bench.write_results(a.results, "ops", text)
        print(f"wrote the ops section of {os.path.relpath(a.results)}")


if __name__ == "__main__":
    main()
