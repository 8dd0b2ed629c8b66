#!/usr/bin/python3
"""check_optim.py - tapegrad's optimizers and schedules against torch.optim.

Seeded random cases: a few 1-D parameters, some marked for weight decay and
some not (two torch param groups, weight_decay and 0; some marks turned over
by tg_optim_set_decay), a random gradient for each at every step (a few
elements exactly 0), several steps. Each case goes to optim_driver
(tests/torch/optim_driver.c) as text, a setting's cases in one run; the
parameters after every step are compared with the reference's:
|ours - ref| <= ATOL + RTOL |ref| (f64: 1e-14, 1e-12; f32: 5e-7, 5e-6).

  sgd       torch.optim.SGD(lr, weight_decay)             (decay coupled)
  momentum  torch.optim.SGD(lr, momentum, weight_decay)   (v = -lr buf); under
            a schedule the library's rule written out (v = mu v - lr g;
            p += v: each step's rate goes into v, where torch's buf holds
            gradients and the rate of the step multiplies all of it)
  nesterov  the library's rule written out (v = mu v - lr g;
            p += mu^2 v - (1 + mu) lr g: the book's, not torch's
            nesterov=True, as tapegrad_nn.h says)
  adagrad   torch.optim.Adagrad(lr, eps, weight_decay)  (lr_decay 0)
  rmsprop   torch.optim.RMSprop(lr, alpha=rho, eps, weight_decay) (not
            centered, no momentum)
  adam      torch.optim.Adam(lr, betas, eps, weight_decay)  (decay coupled)
  adamw     torch.optim.AdamW(lr, betas, eps, weight_decay), amsgrad off,
            decay decoupled

Clipping: the library adds the coupled decay to the gradient and clips the
sum (tapegrad_nn.h); torch's clip_grad_norm_ clips the gradient alone. With
clipping, the reference adds the decay to the gradients itself, takes the
global norm of the sums (in f64, scaled so that huge gradients do not
overflow it; torch's clip_grad_norm_ adds 1e-6 to the norm) and scales them
by clip / norm when it exceeds clip, then steps with weight_decay 0. AdamW's
norm is of the gradients alone.

A parameter given no gradient ("-") is skipped by the library until its
first update and takes zeros after it (tapegrad_nn.h); torch skips a
parameter whose .grad is None at every step. The reference sets None before
the parameter's first update and zeros after it.

Schedules (the rate set before each epoch's first step): StepLR,
ExponentialLR, CosineAnnealingLR (up to T; after T the library keeps
min_lr, torch's rate would climb again), ReduceLROnPlateau (fed the
validation losses), constant, and warm-up (base (e + 1) / (W + 1), the
documented formula, which torch has no scheduler for) then
CosineAnnealingLR over T - W. The rate of every step is compared too
(|ours - torch| <= 1e-12 base_lr: torch's schedulers are recursive).

Resumed runs: each case again, saved to a checkpoint after a step in the
middle and resumed from the file alone in a new context; every value
after it must be the uninterrupted run's, bit for bit.

Adam and AdamW add eps to sqrt(v) with the bias corrections folded into the
rate; torch adds it to sqrt(v / (1 - beta2^t)). The cases use eps = 1e-30
on both sides, far below every sqrt(v), so that the two forms agree to
rounding and a difference in the rule itself shows.

	check_optim.py --driver PATH [--seed S] [--cases N]

Exit 0 when everything agrees, 1 on a mismatch, 77 (skip) without torch.
"""
import argparse
import math
import os
import random
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError:
    print("SKIP: PyTorch is not importable by %s (apt-get install python3-torch)"
          % sys.executable)
    sys.exit(77)

TOL = {64: (1e-12, 1e-14), 32: (5e-6, 5e-7)}
LR_TOL = 1e-12
KINDS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
SCHEDULES = ["constant", "step", "exp", "cosine", "warmup", "plateau"]
HANDWRITTEN = ("nesterov",)
# where the driver's checkpoints go: a save fsyncs, cheap in memory
CKPT_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def make_grads(rng, params, steps, scale=None, runs=True):
    """Random gradients; with runs, some parameter gets zeros or none ("-")
    for several steps in a row (from the first step, sometimes)."""
    grads = [[[0.0 if rng.random() < 0.1 else
               rng.gauss(0, scale if scale else rng.choice([0.1, 1, 5])) for _ in v]
              for _, v in params] for _ in range(steps)]
    if runs and rng.random() < 0.5:
        i = rng.randrange(len(params))
        a = 0 if rng.random() < 0.4 else rng.randrange(steps)
        b = min(steps, a + rng.randint(2, 6))
        what = rng.choice(["zero", "none"])
        for s in range(a, b):
            grads[s][i] = None if what == "none" else [0.0] * len(params[i][1])
    return grads


def make_case(rng, kind, decay_on, clip, dtype=64, steps=None, size=None):
    np_ = rng.randint(1, 4)
    params = []
    for _ in range(np_):
        n = size if size else rng.randint(1, 7)
        d = int(rng.random() < 0.6)
        if rng.random() < 0.15:
            d |= 2  # the optimizer turns the mark over (tg_optim_set_decay)
        params.append((d, [rng.uniform(-2, 2) for _ in range(n)]))
    if decay_on and not any(eff(d) for d, _ in params):
        params[0] = (1, params[0][1])
    steps = steps or rng.randint(3, 8)
    return {
        "kind": kind,
        "dtype": dtype,
        "lr": rng.choice([1e-3, 0.01, 0.05, 0.1]),
        "momentum": rng.choice([0.5, 0.9]),
        "rho": rng.choice([0.9, 0.99]),
        "beta1": rng.choice([0.9, 0.8]),
        "beta2": rng.choice([0.999, 0.99]),
        "eps": 1e-30 if kind in ("adam", "adamw") else rng.choice([1e-7, 1e-10, 1e-3]),
        "wd": rng.choice([0.01, 0.1, 0.5]) if decay_on else 0.0,
        "clip": clip,
        "params": params,
        "grads": make_grads(rng, params, steps),
        "sched": "none", "T": 1, "spe": 1, "losses": [],
        "resume": 0,
    }


def eff(d):
    """whether decay applies: the mark, turned over when bit 1 says so"""
    return bool(d & 1) != bool(d & 2)


def add_schedule(rng, c, sched):
    steps = len(c["grads"])
    c["spe"] = rng.choice([1, 1, 2, 3])
    epochs = -(-steps // c["spe"])
    c["T"] = rng.randint(max(2, epochs // 2), epochs + 3)
    mn = rng.choice([0.0, c["lr"] / 10])
    if sched == "constant":
        spec = "constant"
    elif sched == "step":
        spec = "step:%d:%r" % (rng.randint(1, 6), rng.choice([0.1, 0.5, 0.9]))
    elif sched == "exp":
        spec = "exp:%r" % rng.choice([0.8, 0.95, 0.99])
    elif sched == "cosine":
        spec = rng.choice(["cosine", "cosine:%d:%r" % (c["T"], mn)])
    elif sched == "warmup":
        w = rng.randint(1, min(5, c["T"] - 1))
        spec = "warmup:%d,cosine:%d:%r" % (w, c["T"], mn)
    else:
        spec = "plateau:%r:%d:%r:%r" % (rng.choice([0.1, 0.5]), rng.randint(0, 3),
                                         rng.choice([0.0, 1e-4, 0.1]), mn)
    c["sched"] = spec
    # validation losses that improve, stall and climb, now and then by less
    # than the threshold
    loss, losses = rng.uniform(0.5, 3), []
    for _ in range(epochs):
        r = rng.random()
        loss = loss * (rng.uniform(0.8, 0.99) if r < 0.4 else
                       rng.uniform(0.99995, 1.0) if r < 0.6 else
                       1.0 if r < 0.8 else rng.uniform(1.0, 1.2))
        losses.append(loss)
    c["losses"] = losses
    return c


def driver_input(cases):
    out = []
    for c in cases:
        out.append("case %s %d %r %r %r %r %r %r %r %r %d %d %s %d %d %d" % (
            c["kind"], c["dtype"], c["lr"], c["momentum"], c["rho"], c["beta1"], c["beta2"],
            c["eps"], c["wd"], c["clip"], len(c["params"]), len(c["grads"]), c["sched"],
            c["T"], c["spe"], c["resume"]))
        for d, v in c["params"]:
            out.append("%d %d %s" % (d, len(v), " ".join(repr(x) for x in v)))
        if c["sched"] != "none":
            out.append(" ".join(repr(x) for x in c["losses"]))
        for step in c["grads"]:
            for g in step:
                out.append("-" if g is None else " ".join(repr(x) for x in g))
    return "\n".join(out) + "\n"


def run_driver(driver, cases):
    """[(lrs, steps)] per case, or (None, message)"""
    r = subprocess.run([driver, CKPT_DIR], input=driver_input(cases), capture_output=True,
                       text=True)
    if r.returncode != 0 or "error" in r.stdout:
        return None, (r.stdout[-500:] + r.stderr[-500:]).strip()
    lines = r.stdout.split("\n")
    res, i = [], 0
    for c in cases:
        lrs, out = [], []
        while lines[i].startswith("step"):
            lrs.append(float(lines[i].split()[2]))
            i += 1
            vals = []
            for _ in c["params"]:
                vals.append([float(x) for x in lines[i].split()])
                i += 1
            out.append(vals)
        if lines[i] != "end":
            return None, "output out of step at line %d: %s" % (i, lines[i])
        i += 1
        res.append((lrs, out))
    return res, None


# ---- the reference ----------------------------------------------------------------

def epoch_rates(c, epochs):
    """The rate of each epoch, from torch's schedulers where there is one."""
    spec, base = c["sched"], c["lr"]
    if spec == "none":
        return [base] * epochs
    f = spec.replace(",", ":").split(":")
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    name = f[0]
    rates = []
    if name == "constant":
        return [base] * epochs
    if name in ("step", "exp"):
        if name == "step":
            s = torch.optim.lr_scheduler.StepLR(dummy, int(f[1]), float(f[2]))
        else:
            s = torch.optim.lr_scheduler.ExponentialLR(dummy, float(f[1]))
        for _ in range(epochs):
            rates.append(dummy.param_groups[0]["lr"])
            s.step()
        return rates
    if name == "plateau":
        s = torch.optim.lr_scheduler.ReduceLROnPlateau(
            dummy, mode="min", factor=float(f[1]), patience=int(f[2]), threshold=float(f[3]),
            threshold_mode="rel", cooldown=0, min_lr=float(f[4]))
        for e in range(epochs):
            rates.append(dummy.param_groups[0]["lr"])
            s.step(c["losses"][e])
        return rates
    # cosine, or warm-up then cosine
    w = 0
    if name == "warmup":
        w, f = int(f[1]), f[2:]
    t = int(f[1]) if len(f) > 1 else c["T"]
    mn = float(f[2]) if len(f) > 2 else 0.0
    s = torch.optim.lr_scheduler.CosineAnnealingLR(dummy, t - w, eta_min=mn)
    for e in range(epochs):
        if e < w:
            rates.append(base * (e + 1) / (w + 1))  # the documented warm-up
            continue
        # torch's rate after T climbs back; the library's stays at min_lr
        rates.append(dummy.param_groups[0]["lr"] if e < t else mn)
        s.step()
    return rates


def global_norm(gs):
    """sqrt of the sum of squares, in f64, scaled against overflow"""
    flat = [abs(x) for g in gs if g is not None for x in g.double().tolist()]
    m = max(flat, default=0.0)
    if m == 0 or math.isinf(m) or math.isnan(m):
        return m
    return m * math.sqrt(sum((x / m) ** 2 for x in flat))


def run_torch(c, rates):
    dt = torch.float64 if c["dtype"] == 64 else torch.float32
    P = [torch.tensor(v, dtype=dt, requires_grad=True) for _, v in c["params"]]
    dec = [eff(d) for d, _ in c["params"]]
    k, lr, wd, clip = c["kind"], c["lr"], c["wd"], c["clip"]
    by_hand = k in HANDWRITTEN or (k == "momentum" and c["sched"] != "none")
    # decay added by the reference itself (clipping; the rules written out)
    manual = k != "adamw" and (clip > 0 or by_hand)
    groups = [{"params": [p for p, d in zip(P, dec) if d],
               "weight_decay": 0.0 if manual else wd},
              {"params": [p for p, d in zip(P, dec) if not d], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    opt = None
    if k == "sgd":
        opt = torch.optim.SGD(groups, lr=lr)
    elif k == "momentum" and not by_hand:
        opt = torch.optim.SGD(groups, lr=lr, momentum=c["momentum"])
    elif k == "adagrad":
        opt = torch.optim.Adagrad(groups, lr=lr, eps=c["eps"])
    elif k == "rmsprop":
        opt = torch.optim.RMSprop(groups, lr=lr, alpha=c["rho"], eps=c["eps"])
    elif k == "adam":
        opt = torch.optim.Adam(groups, lr=lr, betas=(c["beta1"], c["beta2"]), eps=c["eps"])
    elif k == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr, betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                                amsgrad=False)
    vel = [torch.zeros_like(p) for p in P]
    updated = [False] * len(P)
    out, lrs = [], []
    mu = c["momentum"]
    for s, step in enumerate(c["grads"]):
        lr_s = rates[s // c["spe"]]
        lrs.append(lr_s)
        G = []
        for i, (p, g) in enumerate(zip(P, step)):
            if g is None:
                G.append(torch.zeros_like(p) if updated[i] else None)
            else:
                G.append(torch.tensor(g, dtype=dt))
                updated[i] = True
        with torch.no_grad():
            if manual:
                G = [g if g is None or not d else g + wd * p.detach()
                     for g, d, p in zip(G, dec, P)]
            if clip > 0:
                norm = global_norm(G)
                if norm > clip:
                    G = [g if g is None else g * (clip / norm) for g in G]
            if by_hand:
                # the constants in the parameters' dtype, as the library's
                m_t, lr_t = torch.tensor(mu, dtype=dt), torch.tensor(lr_s, dtype=dt)
                for i, (p, g) in enumerate(zip(P, G)):
                    if g is None:
                        continue
                    vel[i] = m_t * vel[i] - lr_t * g
                    if k == "momentum":
                        p += vel[i]
                    else:
                        p += m_t * m_t * vel[i] - (1 + m_t) * lr_t * g
            else:
                for grp in opt.param_groups:
                    grp["lr"] = lr_s
                for p, g in zip(P, G):
                    p.grad = g
                opt.step()
        out.append([p.detach().double().tolist() for p in P])
    return lrs, out


# ---- comparing ----------------------------------------------------------------------

class Tally:
    def __init__(self):
        self.bad = self.checks = self.cases = self.lr_checks = self.exact = 0

    def fail(self, msg, always=False):
        self.bad += 1
        if self.bad <= 20 or always:
            print("FAIL " + msg)


def close(x, y, rtol, atol):
    if x == y or (math.isnan(x) and math.isnan(y)):
        return True
    return abs(x - y) <= atol + rtol * abs(y)


def compare(tally, name, n, c, ours, want):
    rtol, atol = TOL[c["dtype"]]
    worst = 0.0
    (o_lrs, o_out), (w_lrs, w_out) = ours, want
    if len(o_out) != len(w_out):
        tally.fail("%s case %d: %d steps, torch %d" % (name, n, len(o_out), len(w_out)))
        return worst
    for s, (x, y) in enumerate(zip(o_lrs, w_lrs)):
        tally.lr_checks += 1
        if not abs(x - y) <= LR_TOL * c["lr"]:
            tally.fail("%s case %d (%s) step %d: lr %.17g, torch %.17g"
                       % (name, n, c["sched"], s + 1, x, y))
    for s, (o_s, w_s) in enumerate(zip(o_out, w_out)):
        for i, (o, w) in enumerate(zip(o_s, w_s)):
            for j, (x, y) in enumerate(zip(o, w)):
                tally.checks += 1
                if not close(x, y, rtol, atol):
                    tally.fail("%s f%d wd %g clip %g %s case %d step %d param %d[%d]: "
                               "%.17g, torch %.17g" % (name, c["dtype"], c["wd"], c["clip"],
                                                       c["sched"], n, s + 1, i, j, x, y))
                elif x != y and not math.isinf(y):
                    worst = max(worst, abs(x - y) / (atol + rtol * abs(y)))
    return worst


def check(tally, driver, name, cases, resume=False):
    """Runs cases (and, with resume, each again resumed from a checkpoint
    after a step in the middle) and compares them with torch."""
    runs = list(cases)
    if resume:
        for c in cases:
            r = dict(c)
            r["resume"] = random.Random(len(c["grads"]) * 7919 + len(runs)).randint(
                1, len(c["grads"]) - 1)
            runs.append(r)
    res, err = run_driver(driver, runs)
    if res is None:
        tally.fail("%s: the driver: %s" % (name, err), True)
        return
    worst, bad0 = 0.0, tally.bad
    for n, c in enumerate(cases):
        tally.cases += 1
        epochs = -(-len(c["grads"]) // c["spe"])
        want = run_torch(c, epoch_rates(c, epochs))
        worst = max(worst, compare(tally, name, n, c, res[n], want))
        if resume:
            a, b = res[n], res[len(cases) + n]
            tally.cases += 1
            tally.exact += sum(len(v) for s in b[1] for v in s) + len(b[0])
            if a != b:
                tally.fail("%s case %d: resumed after step %d, not the uninterrupted run"
                           % (name, n, runs[len(cases) + n]["resume"]))
    print("%-34s %3d cases%s, worst error %.3g of the tolerance%s"
          % (name, len(cases), " (and resumed)" if resume else "", worst,
             ", %d MISMATCHES" % (tally.bad - bad0) if tally.bad > bad0 else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--cases", type=int, default=12, help="cases per optimizer and setting")
    a = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    rng = random.Random(a.seed)
    t = Tally()
    N = a.cases
    # every optimizer, decay off and on, clipping off and on, f64 and f32
    for dtype in (64, 32):
        for k in KINDS:
            for decay_on in (False, True):
                for clip in (0.0, 1.0):
                    cases = [make_case(rng, k, decay_on, clip, dtype)
                             for _ in range(N if dtype == 64 else max(1, N // 2))]
                    check(t, a.driver, "%s f%d decay %s clip %g"
                          % (k, dtype, "on" if decay_on else "off", clip), cases)
    # schedules over up to 50 steps, with a checkpoint mid-run resumed
    for sched in SCHEDULES:
        for k in KINDS:
            cases = []
            for _ in range(max(1, N // 4)):
                c = make_case(rng, k, rng.random() < 0.5, rng.choice([0.0, 0.0, 1.0]),
                              rng.choice([64, 64, 32]), steps=rng.randint(10, 50))
                cases.append(add_schedule(rng, c, sched))
            check(t, a.driver, "%s %s" % (k, sched), cases, resume=True)
    # edges: lr 0; huge gradients; parameters of one element
    for k in KINDS:
        cases = []
        for dtype in (64, 32):
            c = make_case(rng, k, True, rng.choice([0.0, 1.0]), dtype)
            c["lr"] = 0.0
            cases.append(c)
            for clip in (0.0, 1.0):
                c = make_case(rng, k, rng.random() < 0.5, clip, dtype)
                # squares near and past the dtype's largest number (1e160: the
                # sum of squares overflows, and the norm is taken scaled)
                big = rng.choice([1e150, 1e160] if dtype == 64 else [1e18, 1e25])
                c["grads"] = make_grads(rng, c["params"], len(c["grads"]), scale=big)
                cases.append(c)
            cases.append(make_case(rng, k, rng.random() < 0.5, rng.choice([0.0, 1.0]),
                                   dtype, steps=20, size=1))
        check(t, a.driver, "%s lr 0, huge, size 1" % k, cases, resume=True)
    # long runs, where the bias corrections reach 1 (beta2 0.9) or nearly (0.99)
    for k in ("adam", "adamw"):
        cases = []
        for beta2 in (0.9, 0.99):
            c = make_case(rng, k, True, rng.choice([0.0, 1.0]), 64, steps=1000, size=2)
            c["beta2"] = beta2
            cases.append(c)
        check(t, a.driver, "%s 1000 steps" % k, cases, resume=True)
    print("%d cases; %d values and %d rates compared with torch, %d values of resumed "
          "runs with the uninterrupted ones; %d mismatches"
          % (t.cases, t.checks, t.lr_checks, t.exact, t.bad))
    return 1 if t.bad else 0


if __name__ == "__main__":
    sys.exit(main())
