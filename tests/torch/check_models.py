#!/usr/bin/python3
"""check_models.py - whole models of tapegrad's nn layer against torch.nn, in f64.

Seeded random cases, each one model built from a spec string and one step
of it: forward, loss, backward. The model goes to model_driver
(tests/torch/model_driver.c) as text, with its input, targets and the
values of every parameter and state tensor; the same values go into the
torch.nn model this script builds from the same spec. Compared: the
output, the loss, every parameter's gradient (and its name and shape), and
the running statistics after the step, each value as
	|ours - torch| <= ATOL scale + RTOL |torch|
where scale is the largest of 1, the case's largest value and NOISE times
the rounding error of the model in f64 (torch's results in f32 and f64
differ by about 2^29 times it): a gradient that is 0 in exact arithmetic,
such as a bias's before a batch norm in training, is rounding alone, and
batch norms over nearly alike values make that large. Models whose output
does not depend on their input in exact arithmetic (layer norm over one or
two features, batch norm in training over two values) are not made.

Models:
  mlp      "4-8-3" through tg_mlp_new and tg_model_parse with tg_mlp_opts:
           every activation, batch norm on or off, dropout; some wide
           enough for products split across threads
  full     tg_model_parse's full form: linear, bn (own eps and avg_decay
           too), ln, activations, dropout, flatten, embedding
  conv     the full form with conv (kernel pairs "3x2", stride, padding,
           dilation, groups), bn over channels, maxpool and avgpool (stride,
           padding), flatten, linear
  image    tg_model_parse_image's short form: convO:K[pP][sS][b], poolK,
           avgpoolK, layer sizes
in training and evaluation mode, with each loss: cross entropy with i32
labels ("ce") and with soft targets ("soft"), mse, l1, huber (delta) and
bce with logits; or ("none") the forward alone with gradients off, the
paths of inference (batch norm and relu in one pass).

Where the documented semantics differ from torch's, torch's side is made
to follow tapegrad's (tapegrad_nn.h):
  - batch norm's running variance takes the BIASED batch variance (torch's
    the unbiased one), so the expected running_var is computed here from the
    batch; running_mean is torch's own. avg_decay is the weight of the old
    value: torch's momentum = 1 - avg_decay.
  - batch norm's default eps is 1e-6 (torch's 1e-5): torch gets the eps the
    model has.
  - a linear layer's W is (in, out), torch's weight (out, in): transposed
    both ways; a linear layer flattens an input of more than two dims.
  - dropout draws from tapegrad's own generator (xoshiro256**): the driver
    prints its state before the forward, and torch's dropout here draws the
    same numbers, element i kept when the i-th uniform (r_i >> 11) 2^-53 >= p
    and scaled by 1 / (1 - p), each layer on from where the last stopped.

	check_models.py --driver PATH [--seed S] [--cases N]

Exit 0 when everything agrees, 1 on a mismatch, 77 (skip) without torch.
"""
import argparse
import math
import random
import subprocess
import sys

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("SKIP: PyTorch is not importable by %s (apt-get install python3-torch)"
          % sys.executable)
    sys.exit(77)

RTOL, ATOL, NOISE = 1e-9, 1e-10, 4
BN_EPS, BN_DECAY, LN_EPS = 1e-6, 0.9, 1e-5
ACTS = ["identity", "none", "relu", "sigmoid", "tanh", "leaky_relu", "leaky_relu:0.2",
        "leaky_relu:1.5", "leaky_relu:0", "elu", "elu:0.5", "elu:2"]
LOSSES = ["ce", "soft", "mse", "l1", "huber", "bce"]


# ---- the full form, parsed as tg_model_parse reads it -------------------------------

def pair(word):
    a = word.split("x")
    return (int(a[0]), int(a[1])) if len(a) == 2 else (int(a[0]), int(a[0]))


def act_module(kind, words):
    if kind in ("identity", "none"):
        return nn.Identity()
    if kind == "relu":
        return nn.ReLU()
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "tanh":
        return nn.Tanh()
    if kind == "leaky_relu":
        return nn.LeakyReLU(float(words[1]) if len(words) > 1 else 0.01)
    if kind == "elu":
        return nn.ELU(float(words[1]) if len(words) > 1 else 1.0)
    raise ValueError("unknown piece " + kind)


class Linear(nn.Linear):
    """tapegrad's linear: an input of more than two dims is flattened first."""

    def forward(self, x):
        return super().forward(x.flatten(1) if x.dim() > 2 else x)


class BatchNorm(nn.Module):
    """nn.BatchNorm1d over (N,D), nn.BatchNorm2d over (N,C,H,W), momentum
    1 - avg_decay. The batch it saw is kept to work out the running variance
    tapegrad documents (biased), which torch's (unbiased) is not."""

    def __init__(self, d, eps, decay):
        super().__init__()
        self.bn1 = nn.BatchNorm1d(d, eps=eps, momentum=1 - decay)
        self.bn2 = nn.BatchNorm2d(d, eps=eps, momentum=1 - decay)
        self.bn2.weight, self.bn2.bias = self.bn1.weight, self.bn1.bias
        self.decay = decay
        self.seen = None

    def set_state(self, mean, var):
        for b in (self.bn1, self.bn2):
            b.running_mean.copy_(mean)
            b.running_var.copy_(var)

    def forward(self, x):
        self.is_2d = x.dim() > 3
        b = self.bn2 if self.is_2d else self.bn1
        if self.training:
            self.seen = x.detach().clone()
            self.old_var = b.running_var.clone()
        return b(x)

    def expected_state(self):
        """running_mean (torch's) and running_var as tapegrad documents it."""
        b = self.bn2 if self.is_2d else self.bn1
        if not self.training:
            return b.running_mean, b.running_var
        dims = [0] + list(range(2, self.seen.dim()))
        biased = self.seen.var(dim=dims, unbiased=False)
        var = self.decay * self.old_var + (1 - self.decay) * biased
        return b.running_mean, var


from xoshiro import Xoshiro  # noqa: E402 (tests/torch/xoshiro.py)


RNG = Xoshiro()


class Dropout(nn.Module):
    """tapegrad's inverted dropout, with tapegrad's draws (RNG)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        u = torch.tensor(RNG.uniforms(x.numel()), dtype=x.dtype).reshape(x.shape)
        return x * ((u >= self.p).to(x.dtype) / (1 - self.p))


def parse_full(spec):
    """The torch model of a full-form spec, and the tensors in tapegrad's
    order as (name, shape, getter of the value as tapegrad lays it out,
    setter, getter of the gradient likewise); state entries have no grad."""
    count = {}
    mods, params, state = [], [], []

    def name(prefix):
        count[prefix] = count.get(prefix, 0) + 1
        return "%s%d" % (prefix, count[prefix])

    for piece in spec.split(","):
        w = piece.split(":")
        k = w[0]
        if k == "linear":
            m = Linear(int(w[1]), int(w[2]))
            n = name("fc")
            # W is (in, out) here, torch's weight (out, in)
            params.append((n + ".W", (int(w[1]), int(w[2])),
                           lambda m=m: m.weight.detach().t(),
                           lambda v, m=m: m.weight.data.copy_(v.t()),
                           lambda m=m: m.weight.grad.t()))
            params.append((n + ".b", (int(w[2]),), lambda m=m: m.bias.detach(),
                           lambda v, m=m: m.bias.data.copy_(v), lambda m=m: m.bias.grad))
        elif k == "bn":
            d = int(w[1])
            eps = float(w[2]) if len(w) > 2 else BN_EPS
            decay = float(w[3]) if len(w) > 3 else BN_DECAY
            m = BatchNorm(d, eps, decay)
            n = name("bn")
            g, b = m.bn1.weight, m.bn1.bias
            params.append((n + ".gamma", (d,), lambda g=g: g.detach(),
                           lambda v, g=g: g.data.copy_(v), lambda g=g: g.grad))
            params.append((n + ".beta", (d,), lambda b=b: b.detach(),
                           lambda v, b=b: b.data.copy_(v), lambda b=b: b.grad))
            state.append((n + ".running_mean", (d,), m, 0))
            state.append((n + ".running_var", (d,), m, 1))
        elif k == "ln":
            d = int(w[1])
            m = nn.LayerNorm(d, eps=float(w[2]) if len(w) > 2 else LN_EPS)
            n = name("ln")
            params.append((n + ".gamma", (d,), lambda m=m: m.weight.detach(),
                           lambda v, m=m: m.weight.data.copy_(v), lambda m=m: m.weight.grad))
            params.append((n + ".beta", (d,), lambda m=m: m.bias.detach(),
                           lambda v, m=m: m.bias.data.copy_(v), lambda m=m: m.bias.grad))
        elif k == "dropout":
            m = Dropout(float(w[1]))
            name("dropout")
        elif k == "embedding":
            v_, d = int(w[1]), int(w[2])
            m = nn.Embedding(v_, d)
            n = name("emb")
            params.append((n + ".weight", (v_, d), lambda m=m: m.weight.detach(),
                           lambda v, m=m: m.weight.data.copy_(v), lambda m=m: m.weight.grad))
        elif k == "flatten":
            m = nn.Flatten()
            name("flatten")
        elif k == "conv":
            c, o = int(w[1]), int(w[2])
            ks = pair(w[3])
            st = pair(w[4]) if len(w) > 4 else (1, 1)
            pd = pair(w[5]) if len(w) > 5 else (0, 0)
            dl = pair(w[6]) if len(w) > 6 else (1, 1)
            g = int(w[7]) if len(w) > 7 else 1
            m = nn.Conv2d(c, o, ks, st, pd, dl, g)
            n = name("conv")
            # the same (O, C/groups, kh, kw) layout
            params.append((n + ".W", tuple(m.weight.shape), lambda m=m: m.weight.detach(),
                           lambda v, m=m: m.weight.data.copy_(v), lambda m=m: m.weight.grad))
            params.append((n + ".b", (o,), lambda m=m: m.bias.detach(),
                           lambda v, m=m: m.bias.data.copy_(v), lambda m=m: m.bias.grad))
        elif k in ("maxpool", "avgpool"):
            kk = int(w[1])
            st = int(w[2]) if len(w) > 2 else kk
            pd = int(w[3]) if len(w) > 3 else 0
            # padding counts as zeros in the average (count_include_pad)
            m = nn.MaxPool2d(kk, st, pd) if k == "maxpool" else \
                nn.AvgPool2d(kk, st, pd, count_include_pad=True)
            name("pool")
        else:
            m = act_module(k, w)
            name("act")
        mods.append(m)
    return nn.Sequential(*mods), params, state


def mlp_full(sizes, act, bn, dropout, eps, decay):
    """The full form tg_mlp_new builds: fc<i> -> [bn<i>] -> act -> [dropout]."""
    out = []
    for i in range(1, len(sizes)):
        out.append("linear:%d:%d" % (sizes[i - 1], sizes[i]))
        if i == len(sizes) - 1:
            break
        if bn:
            out.append("bn:%d:%r:%r" % (sizes[i], eps, decay))
        out.append(act)
        if dropout > 0:
            out.append("dropout:%r" % dropout)
    return ",".join(out)


def out_side(n, k, s, p, d=1):
    span = n + 2 * p - d * (k - 1) - 1
    return -1 if span < 0 else span // s + 1


def image_full(spec, c, h, w):
    """tg_model_parse_image's full form of a short one (tapegrad_nn.h)."""
    if spec == "cnn":
        spec = "conv32:3p1-pool2-conv64:3p1-pool2-128-10"
    out, flat = [], False
    pieces = spec.split("-")
    for i, q in enumerate(pieces):
        last = i == len(pieces) - 1
        if q.startswith("conv"):
            o, rest = q[4:].split(":")
            o = int(o)
            digits = ""
            while rest and rest[0].isdigit():
                digits, rest = digits + rest[0], rest[1:]
            k, p, s, b = int(digits), 0, 1, False
            while rest:
                opt, rest = rest[0], rest[1:]
                num = ""
                while rest and rest[0].isdigit():
                    num, rest = num + rest[0], rest[1:]
                if opt == "p":
                    p = int(num)
                elif opt == "s":
                    s = int(num)
                else:
                    b = True
            out.append("conv:%d:%d:%d:%d:%d" % (c, o, k, s, p))
            if b:
                out.append("bn:%d" % o)
            out.append("relu")
            c, h, w = o, out_side(h, k, s, p), out_side(w, k, s, p)
        elif q.startswith("pool") or q.startswith("maxpool") or q.startswith("avgpool"):
            k = int(q.lstrip("maxvgpol"))
            out.append("%s:%d" % ("avgpool" if q[0] == "a" else "maxpool", k))
            h, w = out_side(h, k, k, 0), out_side(w, k, k, 0)
        else:
            m = int(q)
            d = c if flat else c * h * w
            if not flat:
                out.append("flatten")
            out.append("linear:%d:%d" % (d, m) + ("" if last else ",relu"))
            flat, c = True, m
    return ",".join(out)


# ---- cases ------------------------------------------------------------------------

def vals(rng, n, scale=1.0):
    return [rng.gauss(0, scale) for _ in range(n)]


def rand_act(rng):
    return rng.choice(ACTS)


def finish(rng, c, full, in_shape, out_kind):
    """Fills in the case's loss, mode, input and targets; full is the full form
    the torch model is built from."""
    c["full"] = full
    c.setdefault("training", rng.random() < 0.6)
    losses = LOSSES if out_kind == 2 else ["mse", "l1", "huber", "bce"]
    c["loss"] = c.get("loss") or ("none" if rng.random() < 0.15 else rng.choice(losses))
    c["threads"] = rng.choice([1, 1, 2])
    c["delta"] = rng.choice([0.1, 0.5, 1.0, 2.0, 5.0])
    c["in_shape"] = in_shape
    if c.get("in_dt") == "i32":
        c["x"] = [rng.randrange(c["vocab"]) for _ in range(math.prod(in_shape))]
    else:
        c["in_dt"] = "f64"
        c["x"] = vals(rng, math.prod(in_shape), rng.choice([0.5, 1.0, 3.0]))
    return c


def case_mlp(rng):
    depth = rng.randint(1, 4)
    wide = rng.random() < 0.15  # products large enough to be split across threads
    sizes = [rng.randint(16, 80) if wide else rng.randint(1, 7) for _ in range(depth + 1)]
    sizes[-1] = rng.randint(2, 6)
    training = rng.random() < 0.6
    bn = rng.random() < 0.5
    dropout = 0.0 if rng.random() < 0.5 else rng.choice([0.1, 0.5])
    eps, decay = rng.choice([(BN_EPS, BN_DECAY), (1e-3, 0.8), (1e-5, 0.99)])
    act = rand_act(rng)
    spec = "-".join(str(s) for s in sizes)
    c = {"how": rng.choice(["mlp", "model"]), "spec": spec, "chw": (0, 0, 0), "act": act,
         "bn": bn, "dropout": dropout, "eps": eps, "decay": decay, "training": training}
    n = rng.randint(3 if training else 2, 6) if not wide else rng.randint(8, 40)
    # (N,1,D) is flattened to (N,D) as images are
    in_shape = [n, sizes[0]] if rng.random() < 0.8 else [n, 1, sizes[0]]
    return finish(rng, c, mlp_full(sizes, act, bn, dropout, eps, decay), in_shape, 2)


def case_full(rng):
    d = rng.randint(1, 6)
    training = rng.random() < 0.6
    pieces, emb = [], False
    # a batch norm in training over two values gives -1 and 1 whatever they
    # are: the gradients before it are rounding alone, 0 in exact arithmetic
    n = rng.randint(3 if training else 2, 5)
    extra = {}
    if rng.random() < 0.25:
        v, e, L = rng.randint(2, 6), rng.randint(1, 5), rng.randint(1, 3)
        pieces.append("embedding:%d:%d" % (v, e))
        if rng.random() < 0.3 and e > 1:
            pieces.append("bn:%d" % L)  # over (N,L,E): L channels
        # ln over 1 feature gives beta alone, over 2 -gamma and gamma (plus
        # beta) whatever comes in: rounding alone would pass through
        if e > 2 and rng.random() < 0.5:
            pieces.append("ln:%d" % e)
        if rng.random() < 0.3:
            pieces.append(rand_act(rng))
        if rng.random() < 0.5:
            pieces.append("flatten")
        d = e * L
        in_shape = [n, L]
        extra = {"in_dt": "i32", "vocab": v}
        emb = True
    else:
        in_shape = [n, d]
        if rng.random() < 0.2:
            in_shape = [n, 1, d]  # flattened by the first linear
        elif rng.random() < 0.15:
            d2 = rng.randint(3, 4)
            in_shape = [n, d, d2]  # bn over d channels of d2 values, ln over d2
            pieces.append(rng.choice(["bn:%d" % d, "ln:%d" % d2, "tanh"]))
            d *= d2
    for _ in range(rng.randint(1, 4)):
        m = rng.randint(1, 6)
        pieces.append("linear:%d:%d" % (d, m))
        d = m
        for _ in range(rng.randint(0, 3)):
            r = rng.random()
            if r < 0.3:
                if rng.random() < 0.5:
                    pieces.append("bn:%d" % d)
                else:
                    pieces.append("bn:%d:%r:%r" % (d, rng.choice([1e-5, 1e-3, 0.1]),
                                                   rng.choice([0.0, 0.5, 0.9, 1.0])))
            elif r < 0.5 and d > 2:
                pieces.append("ln:%d" % d if rng.random() < 0.5 else
                              "ln:%d:%r" % (d, rng.choice([1e-6, 1e-3])))
            elif r < 0.85:
                pieces.append(rand_act(rng))
            else:
                pieces.append("dropout:%r" % rng.choice([0.0, 0.3, 0.5]))
    k = rng.randint(2, 5)
    pieces.append("linear:%d:%d" % (d, k))
    if rng.random() < 0.3:
        pieces.append(rand_act(rng))
    spec = ",".join(pieces)
    c = {"how": "model", "spec": spec, "chw": (0, 0, 0), "act": "relu", "bn": False,
         "dropout": 0.0, "eps": BN_EPS, "decay": BN_DECAY, "training": training}
    c.update(extra)
    c["emb"] = emb
    return finish(rng, c, spec, in_shape, 2)


def case_conv(rng):
    """The full form with convolutions: shapes tracked so that every piece fits."""
    training = rng.random() < 0.6
    n = rng.randint(1, 3)
    ch, h, w = rng.randint(1, 3), rng.randint(4, 9), rng.randint(4, 9)
    if training and n == 1:
        n = 2
    in_shape = [n, ch, h, w]
    pieces = []
    for _ in range(rng.randint(1, 3)):
        g = rng.choice([1, 1, 1, 2 if ch % 2 == 0 else 1, ch])  # ch: depthwise
        o = rng.randint(1, 3) * g
        kh, kw = rng.randint(1, 3), rng.randint(1, 3)
        sq = rng.random() < 0.7  # else each of stride, padding, dilation as a pair
        s = (rng.choice([1, 1, 2]),) * 2 if sq else (rng.randint(1, 2), rng.randint(1, 2))
        p = (rng.randint(0, 2),) * 2 if sq else (rng.randint(0, 2), rng.randint(0, 2))
        dl = (rng.choice([1, 1, 2]),) * 2 if sq else (rng.randint(1, 2), rng.randint(1, 2))
        oh, ow = out_side(h, kh, s[0], p[0], dl[0]), out_side(w, kw, s[1], p[1], dl[1])
        if oh < 1 or ow < 1:
            break

        def side(a):
            return "%d" % a[0] if a[0] == a[1] else "%dx%d" % a
        words = ["conv", str(ch), str(o), side((kh, kw))]
        opt = [side(s), side(p), side(dl), str(g)]
        while opt and opt[-1] == ("0" if len(opt) == 2 else "1"):
            opt.pop()
        pieces.append(":".join(words + opt))
        ch, h, w = o, oh, ow
        if rng.random() < 0.4:
            pieces.append("bn:%d" % ch if rng.random() < 0.6 else
                          "bn:%d:%r:%r" % (ch, 1e-3, rng.choice([0.5, 0.9])))
        if rng.random() < 0.8:
            pieces.append(rng.choice(["relu", "relu", "tanh", "leaky_relu:0.1", "elu",
                                      "sigmoid"]))
        if rng.random() < 0.2:
            pieces.append("dropout:%r" % rng.choice([0.2, 0.5]))
        if rng.random() < 0.5 and min(h, w) >= 2:
            k = rng.choice([2, 2, 3]) if min(h, w) >= 3 else 2
            s = rng.choice([k, 1, 2])
            p = rng.randint(0, k // 2)
            oh, ow = out_side(h, k, s, p), out_side(w, k, s, p)
            if oh >= 1 and ow >= 1:
                word = rng.choice(["maxpool", "avgpool"])
                pw = [word, str(k)]
                if s != k or p:
                    pw.append(str(s))
                if p:
                    pw.append(str(p))
                pieces.append(":".join(pw))
                h, w = oh, ow
        if training and n * h * w < 2 and any(x.startswith("bn") for x in pieces):
            return case_conv(rng)
    if rng.random() < 0.75:
        if rng.random() < 0.7:
            pieces.append("flatten")
        d = ch * h * w
        k = rng.randint(2, 5)
        if rng.random() < 0.4:
            m = rng.randint(2, 6)
            pieces.append("linear:%d:%d" % (d, m))
            pieces.append(rand_act(rng))
            d = m
        pieces.append("linear:%d:%d" % (d, k))
        kind = 2
    else:
        kind = 4  # the loss on the images themselves
    if not pieces or not pieces[0].startswith("conv"):
        return case_conv(rng)
    spec = ",".join(pieces)
    c = {"how": "model", "spec": spec, "chw": (0, 0, 0), "act": "relu", "bn": False,
         "dropout": 0.0, "eps": BN_EPS, "decay": BN_DECAY, "training": training}
    return finish(rng, c, spec, in_shape, kind)


def case_image(rng):
    training = rng.random() < 0.6
    n = rng.randint(2 if training else 1, 3)
    ch, h, w = rng.randint(1, 3), rng.randint(5, 10), rng.randint(5, 10)
    c0, h0, w0 = ch, h, w
    pieces = []
    for _ in range(rng.randint(1, 3)):
        o, k = rng.randint(1, 4), rng.randint(1, 3)
        p, s = rng.randint(0, 1), rng.choice([1, 1, 2])
        oh, ow = out_side(h, k, s, p), out_side(w, k, s, p)
        if oh < 1 or ow < 1:
            break
        opts = []
        if p or rng.random() < 0.3:
            opts.append("p%d" % p)
        if s != 1 or rng.random() < 0.3:
            opts.append("s%d" % s)
        if rng.random() < 0.4:
            opts.append("b")
        rng.shuffle(opts)
        pieces.append("conv%d:%d%s" % (o, k, "".join(opts)))
        ch, h, w = o, oh, ow
        if rng.random() < 0.5 and min(h, w) >= 2:
            k = 2
            pieces.append(rng.choice(["pool", "maxpool", "avgpool"]) + str(k))
            h, w = out_side(h, k, k, 0), out_side(w, k, k, 0)
    if not pieces:
        return case_image(rng)
    for _ in range(rng.randint(0, 1)):
        pieces.append(str(rng.randint(2, 6)))
    pieces.append(str(rng.randint(2, 5)))
    spec = "-".join(pieces)
    if rng.random() < 0.03:  # the default network, on MNIST's shape
        spec, c0, h0, w0, n = "cnn", 1, 28, 28, 2
    c = {"how": "image", "spec": spec, "chw": (c0, h0, w0), "act": "relu", "bn": False,
         "dropout": 0.0, "eps": BN_EPS, "decay": BN_DECAY, "training": training}
    return finish(rng, c, image_full(spec, c0, h0, w0), [n, c0, h0, w0], 2)


# ---- running both sides -----------------------------------------------------------

def build(rng, c):
    """The torch model with random values, and the values in tapegrad's order."""
    model, params, state = parse_full(c["full"])
    model = model.double()
    tensors = []
    with torch.no_grad():
        for name, shape, get, put, _ in params:
            v = torch.tensor(vals(rng, math.prod(shape), rng.choice([0.3, 1.0])),
                             dtype=torch.float64).reshape(shape)
            if name.endswith(".gamma"):
                v = v + 1.0
            put(v)
            tensors.append(v.flatten().tolist())
        for i in range(0, len(state), 2):
            m = state[i][2]
            d = state[i][1][0]
            mean = torch.tensor(vals(rng, d, 0.5), dtype=torch.float64)
            var = torch.tensor([rng.uniform(0.2, 2.0) for _ in range(d)],
                               dtype=torch.float64)
            m.set_state(mean, var)
            tensors += [mean.tolist(), var.tolist()]
    c["tensors"] = tensors
    return model, params, state


def targets(rng, c, out_shape):
    n, numel = out_shape[0], math.prod(out_shape)
    if c["loss"] == "none":
        return []
    if c["loss"] == "ce":
        return [rng.randrange(out_shape[1]) for _ in range(n)]
    if c["loss"] == "soft":
        t = []
        for _ in range(n):
            row = [rng.random() for _ in range(out_shape[1])]
            if rng.random() < 0.3:
                row = [0.0] * out_shape[1]
                row[rng.randrange(out_shape[1])] = 1.0
            s = sum(row)
            t += [x / s for x in row]
        return t
    if c["loss"] == "bce":
        return [rng.choice([0.0, 1.0, rng.random()]) for _ in range(numel)]
    return vals(rng, numel, rng.choice([1.0, 3.0]))


def torch_loss(c, y, tt):
    if c["loss"] == "ce":
        return F.cross_entropy(y, tt)
    if c["loss"] == "soft":
        return F.cross_entropy(y, tt)
    if c["loss"] == "mse":
        return F.mse_loss(y, tt)
    if c["loss"] == "l1":
        return F.l1_loss(y, tt)
    if c["loss"] == "huber":
        return F.huber_loss(y, tt, delta=c["delta"])
    return F.binary_cross_entropy_with_logits(y, tt)


def build_state_again(c, state):
    with torch.no_grad():
        k = sum(1 for _ in c["tensors"]) - len(state)
        for i in range(0, len(state), 2):
            m = state[i][2]
            m.set_state(torch.tensor(c["tensors"][k + i], dtype=torch.float64),
                        torch.tensor(c["tensors"][k + i + 1], dtype=torch.float64))


def run_torch(c, model, params, state, dt=torch.float64):
    """torch's step, in f64, or in dt with a model made so."""
    model.train(c["training"])
    RNG.s = list(c["rng"])
    for p in model.parameters():
        p.grad = None
    build_state_again(c, state)
    if c["in_dt"] == "i32":
        x = torch.tensor(c["x"], dtype=torch.long).reshape(c["in_shape"])
    else:
        x = torch.tensor(c["x"], dtype=dt).reshape(c["in_shape"])
    if c["loss"] == "none":
        with torch.no_grad():
            y = model(x)
        loss = None
    else:
        y = model(x)
        if c["loss"] == "ce":
            t = torch.tensor(c["targets"], dtype=torch.long)
        else:
            t = torch.tensor(c["targets"], dtype=dt).reshape(y.shape)
        loss = torch_loss(c, y, t)
        loss.backward()
    want = {"output": (list(y.shape), y.detach().flatten().tolist()),
            "loss": None if loss is None else loss.item(), "params": [], "state": []}
    for name, shape, _, _, grad in params:
        g = None if loss is None else grad()
        want["params"].append((name, list(shape), None if g is None else
                               g.contiguous().flatten().tolist()))
    for name, shape, m, which in state:
        v = m.expected_state()[which]
        want["state"].append((name, list(shape), v.flatten().tolist()))
    return want


def driver_input(c):
    chw = c["chw"]
    out = ["%s %s %d %d %d" % (c["how"], c["spec"], chw[0], chw[1], chw[2]),
           "%s %d %r %r %r" % (c["act"], c["bn"], c["dropout"], c["eps"], c["decay"]),
           "%d %s %r %d" % (c["training"], c["loss"], c["delta"], c["threads"]),
           "%s %d %s" % (c["in_dt"], len(c["in_shape"]), " ".join(map(str, c["in_shape"]))),
           " ".join(repr(v) for v in c["x"]),
           "%d %s" % (len(c["targets"]), " ".join(repr(v) for v in c["targets"])),
           str(len(c["tensors"]))]
    for t in c["tensors"]:
        out.append("%d %s" % (len(t), " ".join(repr(v) for v in t)))
    return "\n".join(out) + "\n"


def run_driver(driver, c):
    r = subprocess.run([driver], input=driver_input(c), capture_output=True, text=True)
    if r.returncode != 0 or r.stdout.startswith("error"):
        return None, (r.stdout + r.stderr).strip()
    lines = r.stdout.split("\n")
    got = {"params": [], "state": [], "loss": None}
    i = 0
    while i < len(lines) and lines[i]:
        w = lines[i].split()
        if w[0] == "rng":
            got["rng"] = [int(s) for s in w[1:]]
            i += 1
        elif w[0] == "output":
            got["output"] = ([int(s) for s in w[2:]], [float(v) for v in lines[i + 1].split()])
            i += 2
        elif w[0] == "loss":
            got["loss"] = float(w[1])
            i += 1
        else:
            shape = [int(s) for s in w[3:]]
            v = None if lines[i + 1] == "none" else [float(s) for s in lines[i + 1].split()]
            got["params" if w[0] == "param" else "state"].append((w[1], shape, v))
            i += 2
    return got, None


def compare(got, want, scale):
    """The worst error as a fraction of the tolerance, and its index."""
    worst, at = 0.0, -1
    for j, (x, y) in enumerate(zip(got, want)):
        tol = ATOL * scale + RTOL * abs(y)
        r = abs(x - y) / tol if not math.isnan(x - y) else math.inf
        if r > worst:
            worst, at = r, j
    return worst, at


def all_values(r):
    return ([r["loss"] or 0.0] + r["output"][1] + [v for _, _, g in r["params"] for v in (g or [])]
            + [v for _, _, g in r["state"] for v in g])


def check(c, got, want, noise):
    """The mismatches as lines, and the worst error over the tolerance."""
    bad, worst = [], 0.0
    # the absolute part of the tolerance scales with the case's largest value
    # compared: a gradient that is 0 in exact arithmetic (a bias before a
    # batch norm in training) comes out as the rounding of sums of such terms
    # and is at least NOISE times the rounding error the model itself makes in
    # f64, estimated as the largest difference between torch's results in f32
    # and in f64, times 2^-29 (the ratio of the two dtypes' epsilons). A
    # gradient 0 in exact arithmetic is rounding alone: a bias before a batch
    # norm in training, whose sum over the batch cancels, all the more after
    # another batch norm (values almost alike, divided by sqrt(var + eps)).
    scale = max([1.0, abs(want["loss"] or 0)] + [abs(v) for v in want["output"][1]] +
                [abs(v) for _, _, g in want["params"] for v in (g or [])])
    widened = NOISE * noise / ATOL / scale
    scale = max(scale, NOISE * noise / ATOL)

    def values(what, g, w):
        nonlocal worst
        if g is None or w is None or len(g) != len(w):
            bad.append("%s: %s values, torch %s" % (
                what, "no" if g is None else len(g), "no" if w is None else len(w)))
            return
        r, at = compare(g, w, scale)
        worst = max(worst, r)
        if r > 1:
            bad.append("%s[%d]: ours %.17g, torch %.17g (%.3g x tol)"
                       % (what, at, g[at], w[at], r))

    if got["output"][0] != want["output"][0]:
        bad.append("output shape %s, torch %s" % (got["output"][0], want["output"][0]))
    else:
        values("output", got["output"][1], want["output"][1])
    if (got["loss"] is None) != (want["loss"] is None):
        bad.append("loss %s, torch %s" % (got["loss"], want["loss"]))
    elif want["loss"] is not None:
        values("loss", [got["loss"]], [want["loss"]])
    for kind in ("params", "state"):
        if [(n, s) for n, s, _ in got[kind]] != [(n, s) for n, s, _ in want[kind]]:
            bad.append("%s %s, expected %s" % (kind, [(n, s) for n, s, _ in got[kind]],
                                               [(n, s) for n, s, _ in want[kind]]))
            continue
        for (n, _, g), (_, _, w) in zip(got[kind], want[kind]):
            if g is None and w is None and c["loss"] == "none":
                continue  # no gradient without a backward
            values(("grad " if kind == "params" else "") + n, g, w)
    return bad, worst, widened


GENERATORS = [("mlp", case_mlp), ("full", case_full), ("conv", case_conv),
              ("image", case_image)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--cases", type=int, default=100, help="cases per kind of model")
    a = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    rng = random.Random(a.seed)
    torch.manual_seed(a.seed)
    failed = total = values = 0
    worst_noise = loosest = 0.0
    loose = 0
    print("tapegrad models against torch.nn %s, f64, seed %d, rtol %g, atol %g (x scale), noise x %g"
          % (torch.__version__, a.seed, RTOL, ATOL, NOISE))
    for kind, gen in GENERATORS:
        worst, nbad, tally = 0.0, 0, {}
        for n in range(a.cases):
            c = gen(rng)
            model, params, state = build(rng, c)
            model.train(c["training"])
            with torch.no_grad():  # for the output's shape; run_torch resets the state
                y = model(torch.tensor(c["x"], dtype=torch.long if c["in_dt"] == "i32"
                                       else torch.float64).reshape(c["in_shape"]))
            c["targets"] = targets(rng, c, list(y.shape))
            total += 1
            key = "%s %s" % (c["loss"], "train" if c["training"] else "eval")
            tally[key] = tally.get(key, 0) + 1
            got, err = run_driver(a.driver, c)
            if got is None:
                bad, w = ["the driver: " + err], math.inf
            else:
                c["rng"] = got["rng"]
                m32, params32, state32 = parse_full(c["full"])
                m32.load_state_dict(model.state_dict())
                m32.float()
                alt = run_torch(c, m32, params32, state32, torch.float32)
                want = run_torch(c, model, params, state)
                noise = max(abs(a - b) for a, b in zip(all_values(alt), all_values(want)))
                noise = noise * 2.0 ** -29 if math.isfinite(noise) else 0.0
                worst_noise = max(worst_noise, noise)
                bad, w, widened = check(c, got, want, noise)
                if widened > 1:
                    loose += 1
                    loosest = max(loosest, widened)
                values += 2 + sum(len(v or []) for _, _, v in got["params"] + got["state"]) \
                    + len(got["output"][1])
            worst = max(worst, w if bad == [] else 0.0)
            if bad:
                nbad += 1
                failed += 1
                if failed <= 25:
                    print("FAIL %s case %d: %s %r (%s, %s, %s, input %s)" % (
                        kind, n, c["how"], c["spec"], c["act"] if c["how"] == "mlp" or
                        c["spec"][0].isdigit() else "-", key, c["full"], c["in_shape"]))
                    for line in bad[:8]:
                        print("    " + line)
        print("%-6s %3d cases, %d failed, worst agreeing error %.3g of the tolerance; %s"
              % (kind, a.cases, nbad, worst,
                 ", ".join("%s %d" % kv for kv in sorted(tally.items()))))
    print("%d models, %d values compared, %d failed; the largest rounding error estimated %.3g"
          % (total, values, failed, worst_noise))
    print("%d models with the tolerance widened for their rounding, at most %.3g times"
          % (loose, loosest))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
