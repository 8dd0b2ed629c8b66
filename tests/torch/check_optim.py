#!/usr/bin/python3
"""check_optim.py - tapegrad's optimizers against torch.optim, in f64.

Seeded random cases: a few 1-D parameters, some marked for weight decay and
some not (two torch param groups, weight_decay and 0), a random gradient for
each at every step (a few elements exactly 0), several steps. Each case goes
to optim_driver (tests/torch/optim_driver.c) as text; the parameters after
every step are compared with torch's: |ours - torch| <= ATOL + RTOL |torch|.

  sgd       torch.optim.SGD(lr, weight_decay)             (decay coupled)
  momentum  torch.optim.SGD(lr, momentum, weight_decay)   (v = -lr buf)
  adam      torch.optim.Adam(lr, betas, eps, weight_decay)  (decay coupled)
  adamw     torch.optim.AdamW(lr, betas, eps, weight_decay), amsgrad off,
            decay decoupled; some cases with clipping, torch's gradients
            scaled by clip / norm when their global norm exceeds clip (the
            norm of the gradients alone; torch's clip_grad_norm_ adds 1e-6
            to the norm)

Adam and AdamW add eps to sqrt(v) with the bias corrections folded into the
rate; torch adds it to sqrt(v / (1 - beta2^t)). The cases use eps = 1e-30
on both sides, far below every sqrt(v), so that the two forms agree to
rounding and a difference in the rule itself shows.

	check_optim.py --driver PATH [--seed S] [--cases N]

Exit 0 when everything agrees, 1 on a mismatch, 77 (skip) without torch.
"""
import argparse
import random
import subprocess
import sys

try:
    import torch
except ImportError:
    print("SKIP: PyTorch is not importable by %s (apt-get install python3-torch)"
          % sys.executable)
    sys.exit(77)

RTOL, ATOL = 1e-12, 1e-14
KINDS = ["sgd", "momentum", "adam", "adamw"]


def make_case(rng, kind, decay_on, clip):
    np_ = rng.randint(1, 4)
    params = []
    for _ in range(np_):
        n = rng.randint(1, 7)
        params.append((rng.random() < 0.6, [rng.uniform(-2, 2) for _ in range(n)]))
    if decay_on and not any(d for d, _ in params):
        params[0] = (True, params[0][1])
    steps = rng.randint(3, 8)
    grads = [[[0.0 if rng.random() < 0.1 else rng.gauss(0, rng.choice([0.1, 1, 5]))
               for _ in v] for _, v in params] for _ in range(steps)]
    return {
        "kind": kind,
        "lr": rng.choice([1e-3, 0.01, 0.05, 0.1]),
        "momentum": rng.choice([0.5, 0.9]),
        "beta1": rng.choice([0.9, 0.8]),
        "beta2": rng.choice([0.999, 0.99]),
        "eps": 1e-30,
        "wd": rng.choice([0.01, 0.1, 0.5]) if decay_on else 0.0,
        "clip": clip,
        "params": params,
        "grads": grads,
    }


def driver_input(c):
    out = ["%s %r %r %r %r %r %r %r %d %d" % (
        c["kind"], c["lr"], c["momentum"], c["beta1"], c["beta2"], c["eps"], c["wd"],
        c["clip"], len(c["params"]), len(c["grads"]))]
    for d, v in c["params"]:
        out.append("%d %d %s" % (d, len(v), " ".join(repr(x) for x in v)))
    for step in c["grads"]:
        for g in step:
            out.append(" ".join(repr(x) for x in g))
    return "\n".join(out) + "\n"


def run_torch(c):
    P = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for _, v in c["params"]]
    groups = [{"params": [p for p, (d, _) in zip(P, c["params"]) if d],
               "weight_decay": c["wd"]},
              {"params": [p for p, (d, _) in zip(P, c["params"]) if not d],
               "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    k, lr = c["kind"], c["lr"]
    if k == "sgd":
        opt = torch.optim.SGD(groups, lr=lr)
    elif k == "momentum":
        opt = torch.optim.SGD(groups, lr=lr, momentum=c["momentum"])
    elif k == "adam":
        opt = torch.optim.Adam(groups, lr=lr, betas=(c["beta1"], c["beta2"]), eps=c["eps"])
    else:
        opt = torch.optim.AdamW(groups, lr=lr, betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                                amsgrad=False)
    out = []
    for step in c["grads"]:
        for p, g in zip(P, step):
            p.grad = torch.tensor(g, dtype=torch.float64)
        if c["clip"] > 0:
            norm = torch.sqrt(sum((p.grad * p.grad).sum() for p in P)).item()
            if norm > c["clip"]:
                for p in P:
                    p.grad *= c["clip"] / norm
        opt.step()
        out.append([p.detach().tolist() for p in P])
    return out


def run_driver(driver, c):
    r = subprocess.run([driver], input=driver_input(c), capture_output=True, text=True)
    if r.returncode != 0 or r.stdout.startswith("error"):
        return None, r.stdout + r.stderr
    lines = r.stdout.split("\n")
    out, i = [], 0
    while i < len(lines) and lines[i].startswith("step"):
        i += 1
        vals = []
        for _ in c["params"]:
            vals.append([float(x) for x in lines[i].split()])
            i += 1
        out.append(vals)
    return out, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--cases", type=int, default=12, help="cases per optimizer and setting")
    a = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    rng = random.Random(a.seed)
    settings = [(k, d, 0.0) for k in KINDS for d in (False, True)]
    settings += [("adamw", True, 1.0), ("adamw", False, 1.0)]
    bad = checks = 0
    for kind, decay_on, clip in settings:
        worst = 0.0
        for n in range(a.cases):
            c = make_case(rng, kind, decay_on, clip)
            ours, err = run_driver(a.driver, c)
            if ours is None:
                print("FAIL %s case %d: the driver: %s" % (kind, n, err.strip()))
                bad += 1
                continue
            want = run_torch(c)
            if len(ours) != len(want):
                print("FAIL %s case %d: %d steps, torch %d" % (kind, n, len(ours), len(want)))
                bad += 1
                continue
            for s, (o_s, w_s) in enumerate(zip(ours, want)):
                for i, (o, w) in enumerate(zip(o_s, w_s)):
                    for j, (x, y) in enumerate(zip(o, w)):
                        checks += 1
                        tol = ATOL + RTOL * abs(y)
                        worst = max(worst, abs(x - y) / tol)
                        if not abs(x - y) <= tol:
                            bad += 1
                            if bad <= 20:
                                print("FAIL %s wd %g clip %g case %d step %d param %d[%d]: "
                                      "%.17g, torch %.17g" % (kind, c["wd"], clip, n, s + 1,
                                                              i, j, x, y))
        print("%-8s decay %-3s clip %g: %d cases, worst error %.3g of the tolerance"
              % (kind, "on" if decay_on else "off", clip, a.cases, worst))
    print("%d values compared, %d mismatches" % (checks, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
