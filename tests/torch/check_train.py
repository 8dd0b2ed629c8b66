#!/usr/bin/python3
"""check_train.py - models built by hand from tapegrad's nn API, trained
several steps, against torch in f64.

Seeded random cases. Each is a model written as a user writes one in C
(tg_sequential, tg_linear, tg_conv2d_layer, tg_batchnorm1d, tg_layernorm,
tg_activation, tg_dropout_layer, tg_maxpool2d_layer, tg_avgpool2d_layer,
tg_flatten, and two modules of the user's own: a residual block x + f(x)
and one running its child twice, f(f(x)), the same parameters used twice
in one forward), in f32 or f64, trained 3 to 8 steps with an optimizer
(SGD, momentum, Adam, AdamW; weight decay and clipping sometimes) on one
batch, in training mode (batch statistics, running statistics updated,
dropout drawn from tapegrad's generator as check_models.py draws it), by a
hand-written loop (forward, loss, tg_optim_zero_grad, tg_backward,
tg_optim_step, tg_reset) or by tg_fit with on_step (no dropout: tg_fit
draws its shuffles from the same generator); then one forward in
evaluation mode with grad mode off. The driver is
tests/torch/train_driver.c. Compared after every step: the loss, every
parameter and every running statistic; then the evaluation's output.

torch's side runs in f64 on the same values (an f32 case's inputs and
initial values rounded to f32 first), with the update rules written
tapegrad's way (tapegrad_nn.h: W (in, out), running_var from the biased
batch variance, avg_decay the old value's weight, decay only on the
weights, coupled but for AdamW, clipping of the decayed gradients). Each
value must agree as
	|ours - torch| <= ATOL scale + RTOL |torch| + NOISE noise
with scale the largest magnitude of its tensor (at least 1) and noise the
largest difference in that tensor between torch's run in f32 and in f64
(times 2^-29 for an f64 case): the rounding of the model itself, large
where a gradient is rounding alone (a bias before a batch norm, whose
Adam step divides it by sqrt(v) + eps: Adam's eps is 1e-3, and 0.1 in f32
models with a batch norm) or a ReLU's input is near 0. Learning rates are
small enough that no run diverges.

f32 cases exercise oneDNN's convolutions (and im2col, asked for with
tg_set_conv_kernels) and the fused pairs tg_sequential runs: linear+relu,
conv+relu, batch norm+relu and relu+max pool; a case may break a pair by
an identity module between or write relu as leaky_relu:0, so that both the
fused and the unfused paths run. Odd shapes: batch 1, width 1, 1x1
images, many classes; a batch norm in training over one value per feature
must be refused (TG_ESHAPE), and is checked so.

	check_train.py --driver PATH [--seed S] [--cases N]

Exit 0 when everything agrees, 1 on a mismatch, 77 (skip) without torch.
"""
import argparse
import math
import random
import subprocess
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIP: PyTorch is not importable by %s (apt-get install python3-torch)"
          % sys.executable)
    sys.exit(77)

TOL = {"f64": (1e-9, 1e-10, 4.0), "f32": (5e-5, 5e-6, 16.0)}  # rtol, atol, noise factor
from xoshiro import Xoshiro  # noqa: E402 (tests/torch/xoshiro.py)


# ---- the recipe: a list of (word, numbers...) or (word, list) ---------------------

def words(recipe):
    out = []
    for m in recipe:
        if m[0] in ("seq", "res", "twice"):
            out += [m[0], "("] + words(m[1]) + [")"]
        else:
            out += [str(v) if not isinstance(v, float) else repr(v) for v in m]
    return out


def leaves(recipe):
    """The modules holding tensors, in the order tg_module_tensors meets them."""
    out = []
    for m in recipe:
        if m[0] in ("seq", "res", "twice"):
            out += leaves(m[1])
        elif m[0] in ("linear", "conv", "bn", "ln"):
            out.append(m)
    return out


def tensor_shapes(recipe):
    """(shape, kind) of each tensor in tapegrad's order: params, then state;
    kind "W" (decays), "b", "gamma", "beta", "mean", "var"."""
    params, state = [], []
    for m in leaves(recipe):
        if m[0] == "linear":
            params += [((m[1], m[2]), "W"), ((m[2],), "b")]
        elif m[0] == "conv":
            params += [((m[2], m[1] // m[7], m[3], m[3]), "W"), ((m[2],), "b")]
        else:
            params += [((m[1],), "gamma"), ((m[1],), "beta")]
            if m[0] == "bn":
                state += [((m[1],), "mean"), ((m[1],), "var")]
    return params, state


class Run:
    """One forward of the recipe in torch over the tensors T (tapegrad's order)."""

    def __init__(self, recipe, T, training, rng):
        self.T, self.training, self.rng = T, training, rng
        # each leaf's index of its first tensor, and of its state
        self.at, self.st = {}, {}
        k = 0
        for m in leaves(recipe):
            self.at[id(m)] = k
            k += 2
        for m in leaves(recipe):
            if m[0] == "bn":
                self.st[id(m)] = k
                k += 2

    def run(self, recipe, x):
        for m in recipe:
            x = self.one(m, x)
        return x

    def one(self, m, x):
        w, T = m[0], self.T
        if w == "seq":
            return self.run(m[1], x)
        if w == "res":
            return x + self.run(m[1], x)
        if w == "twice":
            return self.run(m[1], self.run(m[1], x))
        if w == "linear":
            k = self.at[id(m)]
            return (x.flatten(1) if x.dim() > 2 else x) @ T[k] + T[k + 1]
        if w == "conv":
            k = self.at[id(m)]
            return F.conv2d(x, T[k], T[k + 1], m[4], m[5], m[6], m[7])
        if w == "bn":
            k, s = self.at[id(m)], self.st[id(m)]
            eps, decay = m[2], m[3]
            shape = [1, -1] + [1] * (x.dim() - 2)
            if self.training:
                dims = [0] + list(range(2, x.dim()))
                mean = x.mean(dims)
                var = ((x - mean.reshape(shape)) ** 2).mean(dims)
                with torch.no_grad():
                    T[s].copy_(decay * T[s] + (1 - decay) * mean)
                    T[s + 1].copy_(decay * T[s + 1] + (1 - decay) * var)
            else:
                mean, var = T[s], T[s + 1]
            return ((x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
                    * T[k].reshape(shape) + T[k + 1].reshape(shape))
        if w == "ln":
            k = self.at[id(m)]
            return F.layer_norm(x, (m[1],), T[k], T[k + 1], 1e-5)
        if w == "act":
            a = m[1].split(":")
            if a[0] == "identity":
                return x
            if a[0] == "relu":
                return F.relu(x)
            if a[0] == "leaky_relu":
                return F.leaky_relu(x, float(a[1]) if len(a) > 1 else 0.01)
            if a[0] == "elu":
                return F.elu(x, float(a[1]) if len(a) > 1 else 1.0)
            if a[0] == "tanh":
                return torch.tanh(x)
            return torch.sigmoid(x)
        if w == "drop":
            if not self.training or m[1] == 0:
                return x
            u = torch.tensor(self.rng.uniforms(x.numel()), dtype=x.dtype).reshape(x.shape)
            return x * ((u >= m[1]).to(x.dtype) / (1 - m[1]))
        if w == "maxpool":
            return F.max_pool2d(x, m[1], m[2], m[3])
        if w == "avgpool":
            return F.avg_pool2d(x, m[1], m[2], m[3], count_include_pad=True)
        if w == "flatten":
            return x.flatten(1)
        raise ValueError(w)


def train_torch(c, dtype, rngs):
    """torch's run in dtype: per step (loss, every tensor), then the evaluation."""
    params, state = tensor_shapes(c["recipe"])
    T = [torch.tensor(v, dtype=dtype).reshape(s) for v, (s, _) in
         zip(c["tensors"], params + state)]
    P = T[:len(params)]
    for p in P:
        p.requires_grad_(True)
    decays = [k == "W" for _, k in params]
    o = c["optim"]
    kind, lr, wd = o["kind"], o["lr"], o["wd"]
    S1 = [torch.zeros_like(p) for p in P]
    S2 = [torch.zeros_like(p) for p in P]

    def update(t):
        """tapegrad's rules (tapegrad_nn.h), step t from 1."""
        g = [p.grad.clone() if p.grad is not None else None for p in P]
        if any(v is None for v in g):
            raise RuntimeError("no gradient for tensor %d" % [v is None for v in g].index(True))
        if kind != "adamw":  # decay coupled: into the gradient, before clipping
            for i, d in enumerate(decays):
                if d and wd:
                    g[i] += wd * P[i].detach()
        if o["clip"] > 0:
            norm = math.sqrt(sum((v * v).sum().item() for v in g))
            if norm > o["clip"]:
                g = [v * (o["clip"] / norm) for v in g]
        b1, b2 = o["beta1"], o["beta2"]
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for i, p in enumerate(P):
            p = p.data
            if kind == "sgd":
                p -= lr * g[i]
            elif kind == "momentum":
                S1[i].copy_(o["momentum"] * S1[i] - lr * g[i])
                p += S1[i]
            else:
                if kind == "adamw" and decays[i] and wd:
                    p *= 1 - lr * wd
                S1[i] += (1 - b1) * (g[i] - S1[i])
                S2[i] += (1 - b2) * (g[i] * g[i] - S2[i])
                p -= lr_t * S1[i] / (torch.sqrt(S2[i]) + o["eps"])

    x = torch.tensor(c["x"], dtype=dtype).reshape(c["in_shape"])
    out = []
    rng = Xoshiro()
    for k in range(c["steps"]):
        rng.s = list(rngs[k]) if rngs else [1, 2, 3, 4]
        y = Run(c["recipe"], T, True, rng).run(c["recipe"], x)
        if c["loss"] == "ce":
            loss = F.cross_entropy(y, torch.tensor(c["targets"], dtype=torch.long))
        else:
            loss = F.mse_loss(y, torch.tensor(c["targets"], dtype=dtype).reshape(y.shape))
        for p in P:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            update(k + 1)
        out.append((loss.item(), [t.detach().flatten().tolist() for t in T]))
    with torch.no_grad():
        y = Run(c["recipe"], T, False, rng).run(c["recipe"], x)
    return out, y.flatten().tolist()


# ---- cases ------------------------------------------------------------------------

def f32(v):
    return torch.tensor(v, dtype=torch.float32).tolist()


def relu_word(rng):
    """relu, or the same function another way: a pair that does not fuse."""
    return rng.choice([[("act", "relu")], [("act", "relu")],
                       [("act", "identity"), ("act", "relu")], [("act", "leaky_relu:0")]])


def case_mlp(rng, c):
    n = rng.choice([2, 3, 5, 8])
    d = rng.randint(1, 6)
    cur = d
    recipe = []
    for _ in range(rng.randint(1, 3)):
        m = rng.randint(1, 7)
        recipe.append(("linear", cur, m))
        r = rng.random()
        if r < 0.4 and m >= 2:
            recipe.append(("bn", m, rng.choice([1e-5, 1e-3]), rng.choice([0.9, 0.7])))
        elif r < 0.5 and m > 2:
            recipe.append(("ln", m))
        recipe += relu_word(rng) if rng.random() < 0.6 else \
            [("act", rng.choice(["tanh", "sigmoid", "elu", "leaky_relu:0.2"]))]
        cur = m
        p = rng.random()
        if p < 0.2:
            recipe.append(("res", [("linear", m, m)] + relu_word(rng) + [("linear", m, m)]))
        elif p < 0.35:
            recipe.append(("twice", [("linear", m, m), ("act", "tanh")]))
        elif p < 0.45 and m >= 2:
            recipe.append(("seq", [("linear", m, m), ("bn", m, 1e-5, 0.9)] + relu_word(rng)))
        if rng.random() < 0.3:
            recipe.append(("drop", rng.choice([0.2, 0.5])))
    k = rng.randint(2, 6)
    recipe.append(("linear", cur, k))
    c.update(recipe=recipe, in_shape=[n, d], classes=k)


def conv_block(rng, ch, h, w, recipe):
    o = rng.choice([1, 2, 3, 4, 6])
    k = rng.choice([1, 1, 2, 3, 3])
    s = rng.choice([1, 1, 2])
    p = rng.randint(0, k // 2)
    dl = 2 if k > 1 and rng.random() < 0.15 else 1
    g = 1
    r = rng.random()
    if r < 0.15:
        g, o = ch, ch  # depthwise
    elif r < 0.25 and ch % 2 == 0 and o % 2 == 0:
        g = 2
    oh = (h + 2 * p - dl * (k - 1) - 1) // s + 1
    ow = (w + 2 * p - dl * (k - 1) - 1) // s + 1
    if oh < 1 or ow < 1:
        return ch, h, w
    recipe.append(("conv", ch, o, k, s, p, dl, g))
    if rng.random() < 0.35:
        recipe.append(("bn", o, rng.choice([1e-5, 1e-3]), 0.9))
    recipe += relu_word(rng)
    ch, h, w = o, oh, ow
    if rng.random() < 0.5 and min(h, w) >= 2:
        pk = 2
        recipe.append((rng.choice(["maxpool", "maxpool", "avgpool"]), pk, pk, 0))
        h, w = h // 2, w // 2
    return ch, h, w


def case_cnn(rng, c):
    n = rng.choice([2, 3, 4])
    ch, h, w = rng.randint(1, 3), rng.randint(3, 9), rng.randint(3, 9)
    in_shape = [n, ch, h, w]
    recipe = []
    for _ in range(rng.randint(1, 3)):
        ch, h, w = conv_block(rng, ch, h, w, recipe)
    if not recipe:
        return case_cnn(rng, c)
    if rng.random() < 0.2:
        recipe.append(("res", [("conv", ch, ch, 3, 1, 1, 1, 1)] + relu_word(rng)))
    if rng.random() < 0.5:
        recipe.append(("flatten",))
    k = rng.randint(2, 5)
    if rng.random() < 0.3:
        recipe.append(("linear", ch * h * w, 5))
        recipe += relu_word(rng)
        recipe.append(("drop", 0.3))
        recipe.append(("linear", 5, k))
    else:
        recipe.append(("linear", ch * h * w, k))
    c.update(recipe=recipe, in_shape=in_shape, classes=k)


def case_wide(rng, c):
    """Enough rows and channels for oneDNN's blocked kernels and threads."""
    n = rng.choice([4, 8])
    ch = rng.choice([3, 8, 16])
    o = rng.choice([16, 32])
    recipe = [("conv", ch, o, 3, 1, 1, 1, 1), ("bn", o, 1e-5, 0.9)] + relu_word(rng) + \
        [("maxpool", 2, 2, 0), ("conv", o, o, 3, 1, 1, 1, 1)] + relu_word(rng) + \
        [("avgpool", 2, 2, 0), ("flatten",), ("linear", o * 4, 32)] + relu_word(rng) + \
        [("linear", 32, 10)]
    c.update(recipe=recipe, in_shape=[n, ch, 8, 8], classes=10)
    c["threads"] = rng.choice([1, 2])


def case_odd(rng, c):
    """Batch 1, width 1, 1x1 images, many classes."""
    r = rng.randrange(7)
    if r == 0:  # batch 1, no batch norm
        d = rng.randint(1, 4)
        c.update(recipe=[("linear", d, 3)] + relu_word(rng) + [("drop", 0.5), ("linear", 3, 4)],
                 in_shape=[1, d], classes=4)
    elif r == 1:  # width 1 throughout
        c.update(recipe=[("linear", 1, 1), ("bn", 1, 1e-5, 0.9)] + relu_word(rng) +
                 [("twice", [("linear", 1, 1)]), ("linear", 1, 2)], in_shape=[4, 1], classes=2)
    elif r == 2:  # 1x1 images, batch norm over N values per channel
        c.update(recipe=[("conv", 2, 3, 1, 1, 0, 1, 1), ("bn", 3, 1e-5, 0.9)] + relu_word(rng) +
                 [("flatten",), ("linear", 3, 3)], in_shape=[3, 2, 1, 1], classes=3)
    elif r == 3:  # many classes
        k = rng.choice([300, 1000])
        c.update(recipe=[("linear", 5, 16)] + relu_word(rng) + [("linear", 16, k)],
                 in_shape=[4, 5], classes=k)
    elif r == 4:  # batch norm in training over one value per feature: refused
        d = rng.randint(1, 4)
        c.update(recipe=[("linear", d, 3), ("bn", 3, 1e-5, 0.9)] + relu_word(rng) +
                 [("linear", 3, 2)], in_shape=[1, d], classes=2)
    elif r == 5:  # likewise one 1x1 image per channel
        c.update(recipe=[("conv", 2, 3, 1, 1, 0, 1, 1), ("bn", 3, 1e-5, 0.9)] + relu_word(rng) +
                 [("flatten",), ("linear", 3, 3)], in_shape=[1, 2, 1, 1], classes=3)
    else:  # one image of a few pixels trains batch norm
        c.update(recipe=[("conv", 1, 2, 2, 1, 0, 1, 1), ("bn", 2, 1e-5, 0.9)] + relu_word(rng) +
                 [("maxpool", 2, 2, 0), ("flatten",), ("linear", 2, 3)],
                 in_shape=[1, 1, 4, 4], classes=3)


def distinct(recipe):
    """The recipe with a new list for each module: Run keys them by id, and
    equal tuples may be one object."""
    return [[m[0], distinct(m[1])] if m[0] in ("seq", "res", "twice") else list(m)
            for m in recipe]


def finish(rng, c):
    c["recipe"] = distinct(c["recipe"])
    dt = c["dtype"]
    rnd = f32 if dt == "f32" else (lambda v: v)
    c.setdefault("threads", rng.choice([1, 1, 2]))
    c["kernels"] = rng.choice(["onednn", "onednn", "im2col"])
    c["steps"] = rng.randint(3, 8)
    has_drop = any(w == "drop" for w in words(c["recipe"]))
    c["loop"] = "hand" if has_drop or rng.random() < 0.6 else "fit"
    kind = rng.choice(["sgd", "momentum", "adam", "adamw"])
    c["optim"] = {"kind": kind, "lr": rng.choice([0.01, 0.03]) if kind in
                  ("sgd", "momentum") else rng.choice([1e-3, 0.01]),
                  "momentum": 0.9, "rho": 0.99, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3,
                  "wd": rng.choice([0.0, 0.0, 0.01, 0.1]),
                  "clip": rng.choice([0.0, 0.0, 0.0, 0.5])}
    if dt == "f32" and any(w == "bn" for w in words(c["recipe"])):
        # a bias before a batch norm has a gradient of rounding alone, which
        # Adam's step divides by sqrt(v) + eps: that eps keeps it small
        c["optim"]["eps"] = 0.1
    c["loss"] = "ce" if rng.random() < 0.75 else "mse"
    params, state = tensor_shapes(c["recipe"])
    tensors = []
    for shape, kind_ in params:
        fan = math.prod(shape[1:]) if kind_ == "W" and len(shape) == 4 else shape[0]
        std = math.sqrt(2.0 / fan) if kind_ == "W" else 0.3
        v = [rng.gauss(0, std) + (1.0 if kind_ == "gamma" else 0.0)
             for _ in range(math.prod(shape))]
        tensors.append(rnd(v))
    for shape, kind_ in state:
        tensors.append(rnd([rng.gauss(0, 0.5) if kind_ == "mean" else rng.uniform(0.3, 2.0)
                            for _ in range(math.prod(shape))]))
    c["tensors"] = tensors
    # f32 data: tg_fit's data sets hold floats
    c["x"] = f32([rng.gauss(0, 1) for _ in range(math.prod(c["in_shape"]))])
    n = c["in_shape"][0]
    if c["loss"] == "ce":
        # every class of the data set below K, as tg_fit's check wants; the
        # largest present so that the data set's classes are the model's
        c["targets"] = [rng.randrange(c["classes"]) for _ in range(n)]
        c["targets"][rng.randrange(n)] = c["classes"] - 1
    else:
        c["targets"] = f32([rng.gauss(0, 1) for _ in range(n * c["classes"])])
    return c


def refused(c):
    """A batch norm in training over one value per feature or channel."""
    n = c["in_shape"][0]
    hw = math.prod(c["in_shape"][2:]) if len(c["in_shape"]) > 2 else 1
    first = leaves(c["recipe"])
    return n * hw < 2 and any(m[0] == "bn" for m in first)


# ---- running both sides -----------------------------------------------------------

def driver_input(c):
    o = c["optim"]
    out = [c["dtype"] + " " + " ".join(words(c["recipe"])) + " end",
           "%s %d %d %s" % (c["loop"], c["steps"], c["threads"], c["kernels"]),
           "%s %r %r %r %r %r %r %r %r" % (o["kind"], o["lr"], o["momentum"], o["rho"],
                                         o["beta1"], o["beta2"], o["eps"], o["wd"], o["clip"]),
           "%s %d %s" % (c["loss"], len(c["in_shape"]), " ".join(map(str, c["in_shape"]))),
           " ".join(repr(v) for v in c["x"]),
           "%d %s" % (len(c["targets"]), " ".join(repr(v) for v in c["targets"])),
           str(len(c["tensors"]))]
    for t in c["tensors"]:
        out.append("%d %s" % (len(t), " ".join(repr(v) for v in t)))
    return "\n".join(out) + "\n"


def run_driver(driver, c):
    r = subprocess.run([driver], input=driver_input(c), capture_output=True, text=True)
    if r.returncode != 0 or "\nerror" in "\n" + r.stdout:
        return None, (r.stdout.split("error", 1)[-1] + r.stderr).strip()
    lines = r.stdout.split("\n")
    got = {"steps": [], "rng": [], "eval": None}
    ntens = len(lines[0].split()) // 2
    i = 1
    while i < len(lines) and lines[i]:
        w = lines[i].split()
        if w[0] == "rng":
            got["rng"].append([int(s) for s in w[1:]])
            i += 1
        elif w[0] == "step":
            ts = [[float(v) for v in lines[i + 1 + j].split()] for j in range(ntens)]
            got["steps"].append((float(w[2]), ts))
            i += 1 + ntens
        elif w[0] == "eval":
            got["eval"] = [float(v) for v in lines[i + 1].split()]
            i += 2
        else:
            return None, "unexpected line " + lines[i]
    return got, None


def compare(what, g, w, alt, dt, bad):
    """Counts the values, records a mismatch; returns the worst ratio."""
    rtol, atol, nf = TOL[dt]
    if len(g) != len(w):
        bad.append("%s: %d values, torch %d" % (what, len(g), len(w)))
        return math.inf
    if not g:
        return 0.0
    scale = max([1.0] + [abs(v) for v in w])
    noise = max(abs(a - b) for a, b in zip(alt, w))
    if not math.isfinite(noise):
        noise = 0.0
    if dt == "f64":
        noise *= 2.0 ** -29
    worst, at = 0.0, 0
    for j, (x, y) in enumerate(zip(g, w)):
        tol = atol * scale + rtol * abs(y) + nf * noise
        r = abs(x - y) / tol if not math.isnan(x - y) else math.inf
        if r > worst:
            worst, at = r, j
    if worst > 1:
        bad.append("%s[%d]: ours %.10g, torch %.10g (%.3g x tol)" % (what, at, g[at], w[at], worst))
    return worst


def check_case(driver, c, names_out):
    got, err = run_driver(driver, c)
    if refused(c):
        if got is None and "variance" in err and "training" in err:
            return [], 0.0, 0
        return ["a batch norm in training over one value was not refused: %s"
                % (err or "it trained")], math.inf, 0
    if got is None:
        return ["the driver: " + err], math.inf, 0
    rngs = got["rng"] if c["loop"] == "hand" else None
    want, weval = train_torch(c, torch.float64, rngs)
    alt, aeval = train_torch(c, torch.float32, rngs)
    bad, worst, n = [], 0.0, 0
    if len(got["steps"]) != c["steps"]:
        return ["%d steps, expected %d" % (len(got["steps"]), c["steps"])], math.inf, 0
    params, state = tensor_shapes(c["recipe"])
    kinds = [k for _, k in params + state]
    for k, ((gl, gt), (wl, wt), (al, at)) in enumerate(zip(got["steps"], want, alt)):
        worst = max(worst, compare("step %d loss" % (k + 1), [gl], [wl], [al], c["dtype"], bad))
        n += 1
        for j, (g, w, a) in enumerate(zip(gt, wt, at)):
            worst = max(worst, compare("step %d tensor %d (%s)" % (k + 1, j, kinds[j]),
                                       g, w, a, c["dtype"], bad))
            n += len(g)
    worst = max(worst, compare("eval output", got["eval"], weval, aeval, c["dtype"], bad))
    n += len(got["eval"])
    return bad, worst, n


GENERATORS = [("mlp", case_mlp), ("cnn", case_cnn), ("wide", case_wide), ("odd", case_odd)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--cases", type=int, default=24, help="cases per kind of model")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(a.seed)
    failed = total = values = refusals = 0
    print("tapegrad models trained by hand-built nn modules against torch %s, seed %d"
          % (torch.__version__, a.seed))
    for kind, gen in GENERATORS:
        nbad, worst, tally = 0, {"f32": 0.0, "f64": 0.0}, {}
        ncases = a.cases if kind != "wide" else max(1, a.cases // 4)
        for i in range(ncases):
            c = {"dtype": rng.choice(["f32", "f32", "f64"])}
            gen(rng, c)
            finish(rng, c)
            key = "%s %s %s" % (c["dtype"], c["loop"], c["optim"]["kind"])
            tally[key] = tally.get(key, 0) + 1
            total += 1
            refusals += refused(c)
            bad, w, n = check_case(a.driver, c, None)
            values += n
            if bad:
                nbad += 1
                failed += 1
                if failed <= 20:
                    print("FAIL %s case %d: %s %s %s %s loss %s steps %d threads %d %s: %s"
                          % (kind, i, c["dtype"], c["loop"], c["optim"], c["kernels"],
                             c["loss"], c["steps"], c["threads"], c["in_shape"],
                             " ".join(words(c["recipe"]))))
                    for line in bad[:6]:
                        print("    " + line)
            else:
                worst[c["dtype"]] = max(worst[c["dtype"]], w)
        print("%-5s %3d cases, %d failed, worst agreeing error f32 %.3g, f64 %.3g of the "
              "tolerance; %s" % (kind, ncases, nbad, worst["f32"], worst["f64"],
                                  ", ".join("%s %d" % kv for kv in sorted(tally.items()))))
    print("%d models (%d refused as they must be), %d values compared, %d failed"
          % (total, refusals, values, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
