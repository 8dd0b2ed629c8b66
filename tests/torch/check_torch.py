#!/usr/bin/python3
"""check_torch.py - tapegrad's ops against PyTorch, in f64, on random expressions.

Generates seeded random expressions, one or a few per case, over every public
op of engine/tapegrad.h, with random shapes (broadcasting up to 5-D) and
inputs kept away from the points where a derivative is a matter of convention
(ties, relu and abs at 0, clamp's bounds), except in a small set of
convention cases that check the documented rule there. Each case goes to
torch_driver (tests/torch/torch_driver.c) as text and is evaluated by
PyTorch; with y = f(x) and L = sum(y * w) for random w, v:

  value              y
  grad, gradof, vjp  dL/dx        (tg_backward; tg_grad_of, douts = w; tg_vjp)
  hvp, fhvp          d2L/dx2 v    (tg_grad_of twice with TG_CREATE_GRAPH; tg_hvp)
  jvp                dy/dx v      (tg_jvp)
  jac, hess          dy/dx, d2L/dx2 on small cases (tg_jacobian, tg_hessian)

(and bwex, hvpbw: tg_backward_ex(y, w, TG_CREATE_GRAPH) and its gradient
differentiated again) are compared with torch.autograd (grad with
create_graph, and torch.autograd.functional) elementwise: |ours - torch| <=
atol + rtol |torch|, rtol 1e-10 and atol 1e-12 (1e-9 and 1e-10 for the long
reductions, see gen_long). Prints cases and checks per op, the worst error (as
a fraction of the tolerance) and every mismatch with its inputs.

Where the reference is not PyTorch's own function, and why:
  - softplus: F.softplus with threshold 50; the default 20 returns x above 20.
  - batch_norm_backward, layer_norm_backward: the gradient of batch and layer
    norm written out in elementary ops; PyTorch 1.13's fused F.batch_norm and
    F.layer_norm give wrong third derivatives (central differences agree
    with the composite form and with tapegrad).
  - huber at |d| = delta (a convention case): the documented rule, the
    quadratic side (second derivative 1 / n); PyTorch's is 0 there. The
    same case against F.huber_loss is checked to first order.

	check_torch.py --driver PATH [--seed S] [--rounds R] [--keep DIR]

Exit 0 when everything agrees, 1 on a mismatch, 77 (skip) without torch.
"""
import argparse
import math
import os
import random
import subprocess
import sys
import time
from collections import defaultdict

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIP: PyTorch is not importable by %s (apt-get install python3-torch)"
          % sys.executable)
    sys.exit(77)

torch.set_default_dtype(torch.float64)
RTOL, ATOL = 1e-10, 1e-12

# ---- cases -------------------------------------------------------------------


class Case:
    """An expression: tensors and ops in slots, as the driver numbers them."""

    def __init__(self, op, rng):
        self.op, self.rng = op, rng
        self.items = []   # ('T', kind, shape, values) or ('O', name, args, attrs, nout)
        self.nslots = 0
        self.result = None
        self.flags = None   # 1: Jacobian, 2: Hessian; None: by size
        self.note = ""
        self.first_order_only = False
        self.rtol, self.atol = RTOL, ATOL
        self.override = {}  # op name -> reference, for the convention cases

    def _slot(self, n=1):
        s = self.nslots
        self.nslots += n
        return s if n == 1 else list(range(s, s + n))

    def x(self, shape, values):
        """An input x_k: differentiated."""
        self.items.append(('T', 'x', list(shape), list(values)))
        return self._slot()

    def const(self, shape, values):
        self.items.append(('T', 'c', list(shape), list(values)))
        return self._slot()

    def idx(self, shape, values, dtype='i64'):
        self.items.append(('T', dtype, list(shape), [int(v) for v in values]))
        return self._slot()

    def o(self, name, args, attrs=(), nout=1):
        self.items.append(('O', name, list(args), [float(a) for a in attrs], nout))
        return self._slot(nout)

    def inputs(self):
        return [it for it in self.items if it[0] == 'T' and it[1] == 'x']


def numel(shape):
    return math.prod(shape) if shape else 1


def fmt(v):
    return repr(float(v))


# ---- PyTorch's side ------------------------------------------------------------


def t_sum_to(x, shape):
    lead = x.dim() - len(shape)
    if lead > 0:
        x = x.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, (a, b) in enumerate(zip(x.shape, shape)) if b == 1 and a != 1)
    return x.sum(dim=dims, keepdim=True) if dims else x


def t_slice(x, axis, start, length):
    n = x.shape[axis]
    return x.narrow(axis, start + n if start < 0 else start, length)


def t_pad(x, axis, before, after):
    def zeros(k):
        s = list(x.shape)
        s[axis] = k
        return torch.zeros(s)
    return torch.cat([zeros(before), x, zeros(after)], dim=axis)


def t_split(x, axis, parts, sizes):
    if not sizes:
        sizes = [x.shape[axis] // parts] * parts
    return list(torch.split(x, sizes, dim=axis))


def t_clamp(x, lo, hi):
    if not math.isfinite(lo) and not math.isfinite(hi):
        return x * 1.0
    return torch.clamp(x, min=lo if math.isfinite(lo) else None,
                       max=hi if math.isfinite(hi) else None)


def need_grad(t):
    return t if t.requires_grad else t.detach().requires_grad_()


# The fused ops' references differentiate batch and layer norm written out
# in elementary ops: PyTorch 1.13's own F.batch_norm and F.layer_norm give
# wrong third derivatives (the derivative of their double backward), which
# central differences of the gradient confirm; their first and second
# derivatives agree with the composite forms.
def bn_dims(x):
    """batch norm's axes of x (N,C,...): N and those after C"""
    return [0] + list(range(2, x.dim()))


def per_channel(v, x):
    """a (C) tensor shaped to broadcast along axis 1 of x (N,C,...)"""
    return v.reshape([-1] + [1] * (x.dim() - 2))


def bn_composite(x, gamma, eps):
    m = x.mean(bn_dims(x), keepdim=True)
    v = ((x - m) ** 2).mean(bn_dims(x), keepdim=True)
    return (x - m) / torch.sqrt(v + eps) * per_channel(gamma, x)


def ln_composite(x, gamma, eps):
    m = x.mean(-1, keepdim=True)
    return (x - m) / torch.sqrt(((x - m) ** 2).mean(-1, keepdim=True) + eps) * gamma


def t_bn_backward(dout, x, gamma, eps):
    xg = need_grad(x)
    return torch.autograd.grad(bn_composite(xg, gamma, eps), xg, dout, create_graph=True)[0]


def t_ln_backward(dout, x, gamma, eps):
    xg = need_grad(x)
    return torch.autograd.grad(ln_composite(xg, gamma, eps), xg, dout, create_graph=True)[0]


def t_batch_norm(x, g, b, eps):
    y = F.batch_norm(x, None, None, g, b, training=True, momentum=0.0, eps=eps)
    return [y, x.detach().mean(bn_dims(x)), x.detach().var(bn_dims(x), unbiased=False)]


def t_batch_norm_relu(x, g, b, eps):
    y, mean, var = t_batch_norm(x, g, b, eps)
    return [torch.relu(y), mean, var]


def t_gelu_backward(dout, x):
    phi = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    return dout * (Phi + x * phi)


def t_act_backward(f, dout, x):
    """dout times f's derivative at x, by differentiating f."""
    xg = need_grad(x)
    return torch.autograd.grad(f(xg), xg, dout, create_graph=True)[0]


def t_ce_backward(dout, logits, labels):
    n, k = logits.shape
    return dout * (torch.softmax(logits, -1) - F.one_hot(labels, k).double()) / n


def t_pick(x, idx):
    return x[torch.arange(x.shape[0]), idx]


def conv_opts(at):
    """stride, padding, dilation (h, w each) and groups from 7 attrs."""
    i = [int(v) for v in at]
    return dict(stride=(i[0], i[1]), padding=(i[2], i[3]), dilation=(i[4], i[5]), groups=i[6])


def t_conv_input_grad(dout, w, at):
    """d <conv2d(x, w), dout> / dx for x of size at[0] x at[1], itself
    differentiable (create_graph) in dout and w."""
    o = conv_opts(at[2:])
    x = torch.zeros(dout.shape[0], w.shape[1] * o['groups'], int(at[0]), int(at[1]),
                    requires_grad=True)
    return torch.autograd.grad(F.conv2d(x, w, None, **o), x, dout, create_graph=True)[0]


def t_conv_weight_grad(x, dout, at):
    o = conv_opts(at[2:])
    w = torch.zeros(dout.shape[1], x.shape[1] // o['groups'], int(at[0]), int(at[1]),
                    requires_grad=True)
    return torch.autograd.grad(F.conv2d(x, w, None, **o), w, dout, create_graph=True)[0]


TORCH = {
    'add': lambda a, at: a[0] + a[1],
    'sub': lambda a, at: a[0] - a[1],
    'mul': lambda a, at: a[0] * a[1],
    'div': lambda a, at: a[0] / a[1],
    'maximum': lambda a, at: torch.maximum(a[0], a[1]),
    'minimum': lambda a, at: torch.minimum(a[0], a[1]),
    'where': lambda a, at: torch.where(a[0] != 0, a[1], a[2]),
    'pow': lambda a, at: torch.pow(a[0], at[0]),
    'add_scalar': lambda a, at: a[0] + at[0],
    'mul_scalar': lambda a, at: a[0] * at[0],
    'neg': lambda a, at: -a[0],
    'exp': lambda a, at: torch.exp(a[0]),
    'log': lambda a, at: torch.log(a[0]),
    'sqrt': lambda a, at: torch.sqrt(a[0]),
    'abs': lambda a, at: torch.abs(a[0]),
    'sigmoid': lambda a, at: torch.sigmoid(a[0]),
    'tanh': lambda a, at: torch.tanh(a[0]),
    'relu': lambda a, at: torch.relu(a[0]),
    'leaky_relu': lambda a, at: F.leaky_relu(a[0], at[0]),
    'elu': lambda a, at: F.elu(a[0], at[0]),
    # PyTorch's default threshold 20 returns x (and gradient 1) above 20,
    # off by e^-20 relative; tapegrad's ln(1 + e^x) is exact there
    'softplus': lambda a, at: F.softplus(a[0], threshold=50.0),
    'log1p': lambda a, at: torch.log1p(a[0]),
    'expm1': lambda a, at: torch.expm1(a[0]),
    'sin': lambda a, at: torch.sin(a[0]),
    'cos': lambda a, at: torch.cos(a[0]),
    'erf': lambda a, at: torch.erf(a[0]),
    'gelu': lambda a, at: F.gelu(a[0]),
    'silu': lambda a, at: F.silu(a[0]),
    'clamp': lambda a, at: t_clamp(a[0], at[0], at[1]),
    'sigmoid_backward': lambda a, at: a[0] * a[1] * (1 - a[1]),
    'relu_backward': lambda a, at: torch.where(a[1] > 0, a[0], torch.zeros_like(a[0])),
    'tanh_backward': lambda a, at: a[0] * (1 - a[1] * a[1]),
    'leaky_relu_backward': lambda a, at: a[0] * torch.where(a[1] > 0, torch.ones_like(a[1]),
                                                            at[0] * torch.ones_like(a[1])),
    'elu_backward': lambda a, at: a[0] * torch.where(
        a[1] > 0, torch.ones_like(a[1]),
        at[0] * torch.exp(torch.where(a[1] < 0, a[1], torch.zeros_like(a[1])))),
    'gelu_backward': lambda a, at: t_gelu_backward(a[0], a[1]),
    'pow_backward': lambda a, at: t_act_backward(lambda x: torch.pow(x, at[0]), a[0], a[1]),
    'softplus_backward': lambda a, at: t_act_backward(
        lambda x: F.softplus(x, threshold=50.0), a[0], a[1]),
    'silu_backward': lambda a, at: t_act_backward(F.silu, a[0], a[1]),
    'addmm': lambda a, at: torch.addmm(a[2], a[0], a[1]),
    'addmm_relu': lambda a, at: torch.relu(torch.addmm(a[2], a[0], a[1])),
    'detach': lambda a, at: a[0].detach(),
    'sum': lambda a, at: a[0].sum(),
    'mean': lambda a, at: a[0].mean(),
    'max': lambda a, at: a[0].reshape(-1).amax(0),
    'sum_axis': lambda a, at: a[0].sum(int(at[0]), keepdim=bool(at[1])),
    'mean_axis': lambda a, at: a[0].mean(int(at[0]), keepdim=bool(at[1])),
    'max_axis': lambda a, at: a[0].amax(int(at[0]), keepdim=bool(at[1])),
    'sum_to': lambda a, at: t_sum_to(a[0], [int(d) for d in at[1:]]),
    'expand': lambda a, at: a[0].expand([int(d) for d in at[1:]]),
    'reshape': lambda a, at: a[0].reshape([int(d) for d in at[1:]]),
    'matmul': lambda a, at: a[0] @ a[1],
    'matmul_t': lambda a, at: (a[0].t() if at[0] else a[0]) @ (a[1].t() if at[1] else a[1]),
    'transpose': lambda a, at: a[0].t(),
    'bmm': lambda a, at: torch.matmul(a[0], a[1]),
    'bmm_t': lambda a, at: torch.matmul(a[0].transpose(-1, -2) if at[0] else a[0],
                                        a[1].transpose(-1, -2) if at[1] else a[1]),
    'permute': lambda a, at: a[0].permute([int(p) for p in at]),
    'squeeze': lambda a, at: a[0].squeeze(int(at[0])),
    'unsqueeze': lambda a, at: a[0].unsqueeze(int(at[0])),
    'slice': lambda a, at: t_slice(a[0], int(at[0]), int(at[1]), int(at[2])),
    'pad_axis': lambda a, at: t_pad(a[0], int(at[0]), int(at[1]), int(at[2])),
    'concat': lambda a, at: torch.cat(a, dim=int(at[0])),
    'stack': lambda a, at: torch.stack(a, dim=int(at[0])),
    'split': lambda a, at: t_split(a[0], int(at[0]), int(at[1]), [int(s) for s in at[2:]]),
    'index_select': lambda a, at: torch.index_select(a[0], int(at[0]), a[1]),
    'gather_rows': lambda a, at: a[0][a[1]],
    'embedding': lambda a, at: F.embedding(a[1], a[0]),
    'pick': lambda a, at: t_pick(a[0], a[1]),
    'one_hot': lambda a, at: F.one_hot(a[0], int(at[0])).double(),
    'softmax': lambda a, at: torch.softmax(a[0], -1),
    'log_softmax': lambda a, at: torch.log_softmax(a[0], -1),
    'softmax_axis': lambda a, at: torch.softmax(a[0], int(at[0])),
    'logsumexp': lambda a, at: torch.logsumexp(a[0], int(at[0]), keepdim=bool(at[1])),
    'log_softmax_axis': lambda a, at: torch.log_softmax(a[0], int(at[0])),
    'cross_entropy': lambda a, at: F.cross_entropy(a[0], a[1]),
    'cross_entropy_i32': lambda a, at: F.cross_entropy(a[0], a[1]),
    'nll': lambda a, at: F.nll_loss(a[0], a[1]),
    'cross_entropy_backward': lambda a, at: t_ce_backward(a[0], a[1], a[2]),
    'mse': lambda a, at: F.mse_loss(a[0], a[1]),
    'l1': lambda a, at: F.l1_loss(a[0], a[1]),
    'huber': lambda a, at: F.huber_loss(a[0], a[1], delta=at[0]),
    'bce_with_logits': lambda a, at: F.binary_cross_entropy_with_logits(a[0], a[1]),
    'batch_norm': lambda a, at: t_batch_norm(a[0], a[1], a[2], at[0]),
    'batch_norm_relu': lambda a, at: t_batch_norm_relu(a[0], a[1], a[2], at[0]),
    'batch_norm_backward': lambda a, at: t_bn_backward(a[0], a[1], a[2], at[0]),
    'layer_norm': lambda a, at: F.layer_norm(a[0], (a[0].shape[-1],), a[1], a[2], at[0]),
    'layer_norm_backward': lambda a, at: t_ln_backward(a[0], a[1], a[2], at[0]),
    'conv2d': lambda a, at: F.conv2d(a[0], a[1], a[2] if len(a) > 2 else None, **conv_opts(at)),
    'conv2d_relu': lambda a, at: torch.relu(
        F.conv2d(a[0], a[1], a[2] if len(a) > 2 else None, **conv_opts(at))),
    'conv2d_input_grad': lambda a, at: t_conv_input_grad(a[0], a[1], at),
    'conv2d_weight_grad': lambda a, at: t_conv_weight_grad(a[0], a[1], at),
    'max_pool2d': lambda a, at: F.max_pool2d(a[0], int(at[0]), int(at[1]), int(at[2])),
    'relu_max_pool2d': lambda a, at: F.max_pool2d(torch.relu(a[0]), int(at[0]), int(at[1]),
                                                  int(at[2])),
    'avg_pool2d': lambda a, at: F.avg_pool2d(a[0], int(at[0]), int(at[1]), int(at[2]),
                                             count_include_pad=True),
}


def t_huber_closed(p, t, delta):
    """Huber with |d| <= delta on the quadratic side, as tapegrad documents it
    (d pred = clamp(d, -delta, delta) / n, clamp's bounds included)."""
    d = p - t
    return torch.where(d.abs() <= delta, 0.5 * d * d, delta * (d.abs() - 0.5 * delta)).mean()


def torch_fn(case):
    """The case as a function of its inputs x_k, in PyTorch."""
    table = dict(TORCH, **case.override)

    def f(*xs):
        vals, k = [], 0
        for it in case.items:
            if it[0] == 'T':
                if it[1] == 'x':
                    vals.append(xs[k])
                    k += 1
                elif it[1] == 'c':
                    vals.append(torch.tensor(it[3]).reshape(it[2]))
                else:
                    vals.append(torch.tensor(it[3], dtype=torch.int64).reshape(it[2]))
            else:
                out = table[it[1]]([vals[s] for s in it[2]], it[3])
                if isinstance(out, list):
                    vals.extend(out)
                else:
                    vals.append(out)
        return vals[case.result]
    return f


def flat(t):
    return t.detach().contiguous().clone().reshape(-1)


def zeros_if_none(gs, xs):
    return [torch.zeros_like(x) if g is None else g for g, x in zip(gs, xs)]


def expected(case, w, v):
    """PyTorch's values for every key the driver prints."""
    f = torch_fn(case)
    xs = [torch.tensor(it[3]).reshape(it[2]).requires_grad_() for it in case.inputs()]
    exp = {}
    y = f(*xs)
    exp['value'] = flat(y)
    if not xs:
        return exp
    wt = torch.tensor(w).reshape(y.shape)
    vt = [torch.tensor(vk).reshape(x.shape) for vk, x in zip(v, xs)]
    L = (y * wt).sum()
    if not L.requires_grad:
        for k, x in enumerate(xs):
            exp['grad %d' % k] = torch.zeros(x.numel())
        return exp
    gs = zeros_if_none(torch.autograd.grad(L, xs, create_graph=True, allow_unused=True), xs)
    for k, g in enumerate(gs):
        for key in ('grad', 'bwex', 'gradof', 'vjp'):
            exp['%s %d' % (key, k)] = flat(g)
    if case.first_order_only:
        return exp
    s = sum((g * vk).sum() for g, vk in zip(gs, vt))
    if s.requires_grad:
        hs = zeros_if_none(torch.autograd.grad(s, xs, allow_unused=True), xs)
    else:
        hs = [torch.zeros_like(x) for x in xs]
    for k, h in enumerate(hs):
        for key in ('hvp', 'hvpbw', 'fhvp'):
            exp['%s %d' % (key, k)] = flat(h)
    xd = [x.detach() for x in xs]
    exp['jvp'] = flat(torch.autograd.functional.jvp(f, tuple(xd), tuple(vt))[1])
    if case.flags & 1:
        jac = torch.autograd.functional.jacobian(f, tuple(xd))
        for k, j in enumerate(jac):
            exp['jac %d' % k] = flat(j)
    if case.flags & 2:
        def Lf(*a):
            return (f(*a) * wt).sum()
        hess = torch.autograd.functional.hessian(Lf, tuple(xd))
        for i, row in enumerate(hess):
            for j, blk in enumerate(row):
                exp['hess %d %d' % (i, j)] = flat(blk)
    return exp


# ---- the driver's side ------------------------------------------------------------


def spec(case, w, v):
    lines = []
    for it in case.items:
        if it[0] == 'T':
            kind, shape, vals = it[1], it[2], it[3]
            if kind in ('x', 'c'):
                head = ['T', 'f64', '1' if kind == 'x' else '0']
                body = [fmt(a) for a in vals]
            else:
                head = ['T', kind]
                body = [str(a) for a in vals]
            lines.append(' '.join(head + [str(len(shape))] + [str(d) for d in shape] + body))
        else:
            _, name, args, attrs, _ = it
            lines.append(' '.join(['O', name, str(len(args))] + [str(a) for a in args]
                                  + [str(len(attrs))] + [fmt(a) for a in attrs]))
    lines.append('R %d' % case.result)
    lines.append('W ' + ' '.join(fmt(a) for a in w))
    for k, vk in enumerate(v):
        lines.append('V %d ' % k + ' '.join(fmt(a) for a in vk))
    lines.append('F %d' % case.flags)
    lines.append('E')
    return '\n'.join(lines) + '\n'


KEY_INDICES = {'grad': 1, 'bwex': 1, 'hvpbw': 1, 'gradof': 1, 'hvp': 1, 'fhvp': 1, 'vjp': 1, 'jac': 1, 'hess': 2}


def parse_output(text):
    """The driver's output, one dict of key -> list (or an error string) per case."""
    cases, cur = [], {}
    for line in text.splitlines():
        if line == 'end':
            cases.append(cur)
            cur = {}
            continue
        if line.startswith('error '):
            cur.setdefault('errors', []).append(line[6:])
            continue
        parts = line.split()
        nkey = 1 + KEY_INDICES.get(parts[0], 0)
        key = ' '.join(parts[:nkey])
        if parts[nkey] == 'none':
            cur[key] = None
        else:
            cur[key] = [float(a) for a in parts[nkey + 1:]]
    return cases


# ---- random inputs ------------------------------------------------------------


def away(rng, lo=0.1, hi=2.0):
    """A value with lo <= |value| < hi: never at a kink at 0."""
    return rng.choice((-1, 1)) * rng.uniform(lo, hi)


def vals(rng, n, kind='any'):
    if kind == 'any':
        return [away(rng) for _ in range(n)]
    if kind == 'pos':
        return [rng.uniform(0.3, 2.5) for _ in range(n)]
    if kind == 'unit':
        return [rng.uniform(0.05, 0.95) for _ in range(n)]
    if kind == 'distinct':
        # a permutation of well separated values: no ties for max
        base = list(range(n))
        rng.shuffle(base)
        off = rng.uniform(-1, 1)
        return [off + 0.37 * b + rng.uniform(0, 0.2) for b in base]
    raise ValueError(kind)


def rand_shape(rng, ndim, cap=96, maxdim=4):
    while True:
        s = [rng.randint(1, maxdim) for _ in range(ndim)]
        if numel(s) <= cap:
            return s


def bcast_variant(rng, shape):
    """A shape that broadcasts to shape: leading axes dropped, some set to 1."""
    k = rng.randint(0, len(shape)) if rng.random() < 0.4 else 0
    return [1 if rng.random() < 0.3 else d for d in shape[k:]]


def post(c, s):
    """A nonlinear function after the op under test, so that the second order
    goes through the op's backward rule. Far-out values get only y^3, which
    keeps their relative precision (sin of e^30 would not) and cancels with
    no op (y^2 of sqrt would make a Hessian of 0 out of terms of 1 / x)."""
    p = c.rng.choice(('none', 'cube') if c.note.startswith('range') else
                     ('none', 'sin', 'sq', 'tanh', 'sin'))
    if p == 'cube':
        return c.o('mul', [c.o('mul', [s, s]), s])
    if p == 'sin':
        return c.o('sin', [s])
    if p == 'sq':
        return c.o('mul', [s, s])
    if p == 'tanh':
        return c.o('tanh', [s])
    return s


# ---- one generator per op ------------------------------------------------------

UNARY = {  # op: (value kind, attrs)
    'neg': 'any', 'exp': 'any', 'log': 'pos', 'sqrt': 'pos', 'abs': 'any', 'sigmoid': 'any',
    'tanh': 'any', 'relu': 'any', 'leaky_relu': 'any', 'elu': 'any', 'softplus': 'any',
    'log1p': 'any1', 'expm1': 'any', 'sin': 'any', 'cos': 'any', 'erf': 'any', 'gelu': 'any',
    'silu': 'any', 'clamp': 'any', 'pow': 'any', 'add_scalar': 'any', 'mul_scalar': 'any',
}


# op: choices of (lo, hi, mag): values uniform in [lo, hi), each scaled by
# 10^-u for u uniform in [0, mag) (mag 0: not scaled), away from kinks
RANGES = {
    'exp': [(-30, 30, 0), (-1, 1, 9)],
    'log': [(1e3, 1e8, 0), (1e-8, 1e-3, 0)],
    'sqrt': [(1e3, 1e8, 0), (1e-8, 1e-3, 0)],
    'sigmoid': [(-40, 40, 0), (-1, 1, 9)],
    'tanh': [(-25, 25, 0), (-1, 1, 9)],
    'softplus': [(-40, 45, 0), (-1, 1, 9)],
    'log1p': [(-1, 1, 12), (1e3, 1e9, 0), (-0.999999, -0.9, 0)],
    'expm1': [(-1, 1, 12), (-40, 30, 0)],
    'sin': [(-1, 1, 9), (-100, 100, 0)],
    'cos': [(-1, 1, 9), (-100, 100, 0)],
    'erf': [(-1, 1, 9), (-6, 6, 0)],
    'gelu': [(-1, 1, 9), (-6, 6, 0)],
    'silu': [(-1, 1, 9), (-40, 40, 0)],
    'elu': [(-1, -0.001, 9), (-40, 40, 0)],
    'neg': [(-1e8, 1e8, 0), (-1, 1, 12)],
    'mul_scalar': [(-1e8, 1e8, 0), (-1, 1, 12)],
}


def gen_unary(c, name):
    rng = c.rng
    shape = rand_shape(rng, rng.randint(0, 5))
    n = numel(shape)
    kind = UNARY[name]
    attrs = []
    if kind == 'any1':
        xv = [rng.uniform(-0.7, 2.0) for _ in range(n)]
    else:
        xv = vals(rng, n, kind)
    if name in RANGES and rng.random() < 0.4:
        # far out or close to 0, where a formula can lose digits
        lo, hi, mag = rng.choice(RANGES[name])
        xv = [rng.uniform(lo, hi) * (10 ** rng.uniform(-mag, 0) if mag else 1)
              for _ in range(n)]
        c.note = 'range %g..%g%s' % (lo, hi, ' x 10^-%d..1' % mag if mag else '')
    if name in ('leaky_relu', 'elu'):
        attrs = [rng.choice((0.01, 0.1, 0.5, 1.0, 1.7))]
    elif name in ('add_scalar', 'mul_scalar'):
        attrs = [rng.uniform(-3, 3)]
    elif name == 'pow':
        p = rng.choice((2, 3, -1, -2, 0.5, 1.5, -0.5, 2.5, 1, 0))
        attrs = [p]
        if p != int(p):
            xv = vals(rng, n, 'pos')
        else:
            xv = [away(rng, 0.3, 2.0) for _ in range(n)]
    elif name == 'clamp':
        lo = rng.choice((-math.inf, -1.2, -0.6, 0.3))
        hi = rng.choice((math.inf, 1.1, 0.7)) if lo < 0.3 else rng.choice((math.inf, 1.3))
        attrs = [lo, hi]
        xv = [a for a in xv]
        for i, a in enumerate(xv):
            while min(abs(a - lo), abs(a - hi)) < 0.05:
                a = away(rng)
            xv[i] = a
    x = c.x(shape, xv)
    return post(c, c.o(name, [x], attrs))


def binary_shapes(rng, ndim=None):
    full = rand_shape(rng, rng.randint(0, 5) if ndim is None else ndim)
    a, b = bcast_variant(rng, full), bcast_variant(rng, full)
    if rng.random() < 0.5:
        a = full
    return a, b


def gen_binary(c, name):
    rng = c.rng
    sa, sb = binary_shapes(rng)
    for _ in range(50):
        av = vals(rng, numel(sa))
        bv = vals(rng, numel(sb)) if name != 'div' else [away(rng, 0.5, 2.0)
                                                         for _ in range(numel(sb))]
        if name not in ('maximum', 'minimum'):
            break
        d = torch.tensor(av).reshape(sa) - torch.tensor(bv).reshape(sb)
        if d.numel() == 0 or d.abs().min() > 0.05:
            break
    a, b = c.x(sa, av), c.x(sb, bv)
    if rng.random() < 0.15:   # the same tensor on both sides
        b = a
    return post(c, c.o(name, [a, b]))


def gen_where(c):
    rng = c.rng
    full = rand_shape(rng, rng.randint(0, 4))
    sm, sa, sb = (bcast_variant(rng, full) for _ in range(3))
    mv = [rng.choice((0, 1, 2.5, -1, 0)) for _ in range(numel(sm))]
    m = c.idx(sm, mv) if rng.random() < 0.3 and all(v == int(v) for v in mv) \
        else c.const(sm, mv)
    a, b = c.x(sa, vals(rng, numel(sa))), c.x(sb, vals(rng, numel(sb)))
    return post(c, c.o('where', [m, a, b]))


def gen_reduce(c, name):
    rng = c.rng
    nd = rng.randint(0 if name in ('sum', 'mean', 'max') else 1, 5)
    shape = rand_shape(rng, nd)
    kind = 'distinct' if name.startswith('max') else 'any'
    x = c.x(shape, vals(rng, numel(shape), kind))
    if name in ('sum', 'mean', 'max'):
        return post(c, c.o(name, [x]))
    axis = rng.randint(-nd, nd - 1)
    return post(c, c.o(name, [x], [axis, rng.randint(0, 1)]))


def gen_sum_to(c, name):
    rng = c.rng
    full = rand_shape(rng, rng.randint(1, 5))
    small = bcast_variant(rng, full)
    if name == 'sum_to':
        x = c.x(full, vals(rng, numel(full)))
        return post(c, c.o('sum_to', [x], [len(small)] + small))
    x = c.x(small, vals(rng, numel(small)))
    return post(c, c.o('expand', [x], [len(full)] + full))


def gen_matmul(c, name):
    rng = c.rng
    n, k, m = rng.randint(1, 5), rng.randint(1, 5), rng.randint(1, 5)
    ta, tb = rng.randint(0, 1), rng.randint(0, 1)
    if name == 'matmul':
        ta = tb = 0
    sa = [k, n] if ta else [n, k]
    sb = [m, k] if tb else [k, m]
    a, b = c.x(sa, vals(rng, numel(sa))), c.x(sb, vals(rng, numel(sb)))
    if name == 'transpose':
        return post(c, c.o('transpose', [a]))
    if name == 'matmul':
        return post(c, c.o('matmul', [a, b]))
    if name in ('addmm', 'addmm_relu'):   # the row b as (M,) or (1,M)
        sr = rng.choice([[m], [1, m]])
        a, b = c.x([n, k], vals(rng, n * k)), c.x([k, m], vals(rng, k * m))
        return post(c, c.o(name, [a, b, c.x(sr, vals(rng, m))]))
    return post(c, c.o('matmul_t', [a, b], [ta, tb]))


def gen_bmm(c, name):
    rng = c.rng
    batch = rand_shape(rng, rng.randint(0, 3), cap=12, maxdim=3)
    ba, bb = bcast_variant(rng, batch), bcast_variant(rng, batch)
    n, k, m = rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 4)
    ta, tb = (rng.randint(0, 1), rng.randint(0, 1)) if name == 'bmm_t' else (0, 0)
    sa = ba + ([k, n] if ta else [n, k])
    sb = bb + ([m, k] if tb else [k, m])
    a, b = c.x(sa, vals(rng, numel(sa))), c.x(sb, vals(rng, numel(sb)))
    if name == 'bmm':
        return post(c, c.o('bmm', [a, b]))
    return post(c, c.o('bmm_t', [a, b], [ta, tb]))


def gen_shape(c, name):
    rng = c.rng
    nd = rng.randint(1, 5)
    shape = rand_shape(rng, nd)
    x = c.x(shape, vals(rng, numel(shape)))
    if name == 'reshape':
        n = numel(shape)
        divs = [d for d in range(1, n + 1) if n % d == 0]
        new, rest = [], n
        for _ in range(rng.randint(0, 4)):
            d = rng.choice([d for d in divs if rest % d == 0])
            new.append(d)
            rest //= d
        new.append(rest)
        rng.shuffle(new)
        if rng.random() < 0.4:
            new[rng.randrange(len(new))] = -1
        return post(c, c.o('reshape', [x], [len(new)] + new))
    if name == 'permute':
        perm = list(range(nd))
        rng.shuffle(perm)
        perm = [p - nd if rng.random() < 0.3 else p for p in perm]
        return post(c, c.o('permute', [x], perm))
    if name == 'squeeze':
        ax = rng.randint(0, nd)
        s1 = shape[:ax] + [1] + shape[ax:]
        c.items.pop()
        c.nslots -= 1
        x = c.x(s1, vals(rng, numel(s1)))
        axis = ax if rng.random() < 0.5 else ax - (nd + 1)
        return post(c, c.o('squeeze', [x], [axis]))
    if name == 'unsqueeze':
        axis = rng.randint(-(nd + 1), nd)
        return post(c, c.o('unsqueeze', [x], [axis]))
    if name in ('slice', 'pad_axis'):
        axis = rng.randint(-nd, nd - 1)
        size = shape[axis]
        if name == 'slice':
            start = rng.randint(0, size - 1)
            length = rng.randint(1, size - start)
            if rng.random() < 0.3:
                start -= size
            return post(c, c.o('slice', [x], [axis, start, length]))
        return post(c, c.o('pad_axis', [x], [axis, rng.randint(0, 2), rng.randint(0, 2)]))
    if name == 'split':
        axis = rng.randint(-nd, nd - 1)
        size = shape[axis]
        if rng.random() < 0.5:
            parts = rng.choice([d for d in range(1, size + 1) if size % d == 0])
            sizes = []
        else:
            cuts = sorted(rng.sample(range(1, size), rng.randint(0, size - 1))) if size > 1 else []
            sizes = [b - a for a, b in zip([0] + cuts, cuts + [size])]
            parts = len(sizes)
        outs = c.o('split', [x], [axis, parts] + sizes, nout=parts)
        outs = outs if isinstance(outs, list) else [outs]
        # parts in another order, each through its own function
        rng.shuffle(outs)
        fs = [c.o(rng.choice(('sin', 'tanh', 'exp')), [o]) for o in outs]
        return c.o('concat', fs, [axis]) if len(fs) > 1 else fs[0]
    if name == 'detach':
        return c.o('mul', [c.o('sin', [x]), c.o('detach', [x])])
    raise ValueError(name)


def gen_join(c, name):
    rng = c.rng
    nd = rng.randint(1, 4)
    shape = rand_shape(rng, nd, cap=24)
    n = rng.randint(1, 7)
    axis = rng.randint(-nd, nd - 1) if name == 'concat' else rng.randint(-(nd + 1), nd)
    xs = []
    for _ in range(n):
        s = list(shape)
        if name == 'concat':
            s[axis] = rng.randint(1, 3)
        if xs and rng.random() < 0.2 and c.items[-1][2] == s:
            xs.append(xs[-1])   # a tensor twice in the list
            continue
        xs.append(c.x(s, vals(rng, numel(s))))
    return post(c, c.o(name, xs, [axis]))


def idx_dtype(rng):
    return 'i32' if rng.random() < 0.3 else 'i64'


def gen_index(c, name):
    rng = c.rng
    if name in ('index_select', 'gather_rows'):
        nd = rng.randint(1, 4) if name == 'index_select' else rng.randint(1, 3)
        shape = rand_shape(rng, nd, cap=48)
        axis = rng.randint(-nd, nd - 1) if name == 'index_select' else 0
        x = c.x(shape, vals(rng, numel(shape)))
        m = rng.randint(1, 6)
        i = c.idx([m], [rng.randrange(shape[axis]) for _ in range(m)], idx_dtype(rng))
        if name == 'gather_rows':
            return post(c, c.o('gather_rows', [x, i]))
        return post(c, c.o('index_select', [x, i], [axis]))
    if name == 'embedding':
        V, D = rng.randint(1, 6), rng.randint(1, 4)
        table = c.x([V, D], vals(rng, V * D))
        ishape = rand_shape(rng, rng.randint(0, 3), cap=12)
        i = c.idx(ishape, [rng.randrange(V) for _ in range(numel(ishape))], idx_dtype(rng))
        return post(c, c.o('embedding', [table, i]))
    N, K = rng.randint(1, 5), rng.randint(1, 5)
    labels = [rng.randrange(K) for _ in range(N)]
    lab = c.idx([N], labels, idx_dtype(rng))
    scale = rng.choice((1, 1, 1, 40))   # far-out logits now and then
    x = c.x([N, K], [scale * a for a in vals(rng, N * K)])
    if name == 'pick':
        return post(c, c.o('pick', [x, lab]))
    if name == 'one_hot':
        k = K + rng.randint(0, 2)
        if k != K:
            c.items.pop()
            c.nslots -= 1
            x = c.x([N, k], vals(rng, N * k))
        return post(c, c.o('mul', [c.o('one_hot', [lab], [k]), x]))
    if name in ('nll', 'cross_entropy', 'cross_entropy_i32'):
        rest = [N]
        if rng.random() < 0.4:   # one sample (K), or (N,K,d1[,d2]) as a segmentation's
            c.items.pop()
            c.items.pop()
            c.nslots -= 2
            rest = [] if rng.random() < 0.3 else [N] + rand_shape(rng, rng.randint(1, 2), cap=12)
            shape = rest[:1] + [K] + rest[1:]
            x = c.x(shape, [scale * a for a in vals(rng, numel(shape))])
            lab = c.idx(rest, [rng.randrange(K) for _ in range(numel(rest))], idx_dtype(rng))
        if name != 'nll':
            return post(c, c.o(name, [x, lab]))
        logp = c.o('log_softmax_axis', [x], [1 if len(rest) else 0]) if rng.random() < 0.6 else x
        return post(c, c.o('nll', [logp, lab]))
    if name == 'cross_entropy_backward':
        dout = c.x([], [away(rng)])
        return post(c, c.o(name, [dout, x, lab]))
    raise ValueError(name)


def gen_softmax(c, name):
    rng = c.rng
    shape = rand_shape(rng, rng.randint(1, 4))
    scale = rng.choice((3, 3, 50, 1e-6))
    x = c.x(shape, [rng.uniform(-scale, scale) for _ in range(numel(shape))])
    if name.endswith('_axis'):  # any axis, counted from either end
        return post(c, c.o(name, [x], [rng.randint(-len(shape), len(shape) - 1)]))
    if name == 'logsumexp':
        axis = rng.randint(-len(shape), len(shape) - 1)
        return post(c, c.o(name, [x], [axis, rng.randint(0, 1)]))
    return post(c, c.o(name, [x]))


def gen_loss(c, name):
    rng = c.rng
    shape = rand_shape(rng, rng.randint(0, 4), cap=48)
    n = numel(shape)
    if name == 'bce_with_logits':
        scale = rng.choice((1, 1, 1, 40))
        p = c.x(shape, [scale * a for a in vals(rng, n)])
        tv = vals(rng, n, 'unit')
        t = c.x(shape, tv) if rng.random() < 0.7 else c.const(shape, tv)
        return post(c, c.o(name, [p, t]))
    tv = vals(rng, n)
    pv = []
    delta = rng.uniform(0.4, 1.5)
    for a in tv:
        while True:
            d = away(rng, 0.05, 2.5)
            if name != 'huber' or abs(abs(d) - delta) > 0.05:
                break
        pv.append(a + d)
    p = c.x(shape, pv)
    t = c.x(shape, tv) if rng.random() < 0.6 else c.const(shape, tv)
    attrs = [delta] if name == 'huber' else []
    return post(c, c.o(name, [p, t], attrs))


def gen_norm(c, name):
    rng = c.rng
    eps = rng.choice((1e-5, 1e-3, 0.1))
    if name.startswith('batch_norm'):
        N, D = rng.randint(2, 6), rng.randint(1, 4)
        shape = [N, D]
        if rng.random() < 0.5:
            # (N,C,...), per channel over N and the axes after C; N may be
            # 1 when they hold 2 values or more
            shape += [rng.randint(1, 5) for _ in range(rng.randint(1, 3))]
            if numel(shape[2:]) > 1:
                shape[0] = rng.randint(1, 4)
    else:
        shape = rand_shape(rng, rng.randint(1, 4), cap=48)
        D = shape[-1]
        if D == 1:
            shape[-1] = D = rng.randint(2, 4)
    x = c.x(shape, vals(rng, numel(shape)))
    g = c.x([D], [rng.uniform(0.5, 1.5) for _ in range(D)])
    if name.endswith('_backward'):
        dout = c.x(shape, vals(rng, numel(shape)))
        # dout first, as the driver's argument order
        return post(c, c.o(name, [dout, x, g], [eps]))
    b = c.x([D], vals(rng, D))
    if name == 'layer_norm':
        return post(c, c.o(name, [x, g, b], [eps]))
    y, mean, var = c.o(name, [x, g, b], [eps], nout=3)
    y = post(c, y)
    if rng.random() < 0.3:
        # the statistics, without history, beside y (flattened when (N,C,...))
        rows = [c.o('unsqueeze', [mean], [0]), c.o('unsqueeze', [var], [0])]
        if len(shape) > 2:
            flat = c.o('reshape', [y], [2, 1, numel(shape)])
            return c.o('concat', [flat] + rows, [1])
        return c.o('concat', [y] + rows, [0])
    return y


def conv_side(n, k, s, p, d):
    span = n + 2 * p - d * (k - 1) - 1
    return span // s + 1 if span >= 0 else 0


def gen_conv(c, name):
    """conv2d and conv2d_relu (with or without bias) and conv2d's gradient ops on random NCHW
    shapes: stride 1-2, padding 0-2, dilation 1-2, groups 1-2 and kernels
    1-3 per axis, each drawn alone; a third of the cases on images of 64 or
    more output positions (conv2d's one-GEMM-per-image path), the others
    small (the batched path, and small enough for Jacobians)."""
    rng = c.rng
    while True:
        G = rng.choice((1, 2))
        N, C, O = rng.randint(1, 3), G * rng.randint(1, 2), G * rng.randint(1, 2)
        KH, KW = rng.randint(1, 3), rng.randint(1, 3)
        st = [rng.choice((1, 2)), rng.choice((1, 2))]
        pd = [rng.randint(0, 2), rng.randint(0, 2)]
        dl = [rng.choice((1, 2)), rng.choice((1, 2))]
        big = rng.random() < 0.33
        H, W = (rng.randint(8, 18), rng.randint(8, 18)) if big else \
            (rng.randint(1, 6), rng.randint(1, 6))
        OH, OW = conv_side(H, KH, st[0], pd[0], dl[0]), conv_side(W, KW, st[1], pd[1], dl[1])
        if OH >= 1 and OW >= 1 and (not big or OH * OW >= 64):
            break
    opts = st + pd + dl + [G]
    c.note = 'x (%d,%d,%d,%d) w (%d,%d,%d,%d) stride %s padding %s dilation %s groups %d' % (
        N, C, H, W, O, C // G, KH, KW, st, pd, dl, G)
    xs, ws, ys = [N, C, H, W], [O, C // G, KH, KW], [N, O, OH, OW]
    if name in ('conv2d', 'conv2d_relu'):
        args = [c.x(xs, vals(rng, numel(xs))), c.x(ws, vals(rng, numel(ws)))]
        if rng.random() < 0.7:
            args.append(c.x([O], vals(rng, O)))
        return post(c, c.o(name, args, opts))
    if name == 'conv2d_input_grad':
        args = [c.x(ys, vals(rng, numel(ys))), c.x(ws, vals(rng, numel(ws)))]
        return post(c, c.o(name, args, [H, W] + opts))
    args = [c.x(xs, vals(rng, numel(xs))), c.x(ys, vals(rng, numel(ys)))]
    return post(c, c.o(name, args, [KH, KW] + opts))


def gen_pool(c, name):
    """max_pool2d and relu_max_pool2d (distinct values: no ties) and avg_pool2d,
    kernel 1-3, stride 1-3, padding up to kernel / 2, on small random NCHW
    shapes."""
    rng = c.rng
    while True:
        k, s = rng.randint(1, 3), rng.randint(1, 3)
        p = rng.randint(0, k // 2)
        N, C, H, W = rng.randint(1, 2), rng.randint(1, 3), rng.randint(1, 9), rng.randint(1, 9)
        OH, OW = conv_side(H, k, s, p, 1), conv_side(W, k, s, p, 1)
        if OH >= 1 and OW >= 1:
            break
    c.note = 'x (%d,%d,%d,%d) kernel %d stride %d padding %d' % (N, C, H, W, k, s, p)
    shape = [N, C, H, W]
    x = c.x(shape, vals(rng, numel(shape), 'any' if name == 'avg_pool2d' else 'distinct'))
    return post(c, c.o(name, [x], [k, s, p]))


def gen_act_backward(c, name):
    rng = c.rng
    shape = rand_shape(rng, rng.randint(0, 4), cap=48)
    n = numel(shape)
    dout = c.x(shape, vals(rng, n))
    p = rng.choice([2.0, 3.0, -1.0, 0.0, 0.5, 1.5, 2.5])
    if name in ('sigmoid_backward', 'tanh_backward'):
        y = c.x(shape, vals(rng, n, 'unit'))
    elif name == 'pow_backward' and p != int(p):   # x^p is NaN for a negative x
        y = c.x(shape, vals(rng, n, 'pos'))
    else:
        y = c.x(shape, vals(rng, n))
    if name in ('leaky_relu_backward', 'elu_backward'):
        return post(c, c.o(name, [dout, y], [rng.choice([0.01, 0.2, 1.0, 1.7])]))
    if name == 'pow_backward':
        return post(c, c.o(name, [dout, y], [p]))
    return post(c, c.o(name, [dout, y]))


# ---- long reductions ---------------------------------------------------------

LONG = ('sum', 'mean', 'max', 'sum_axis', 'mean_axis', 'max_axis', 'sum_to', 'softmax',
        'log_softmax', 'matmul', 'bmm', 'layer_norm', 'batch_norm', 'cross_entropy', 'mse',
        'bce_with_logits')


def gen_long(c, name):
    """One axis of 1000 to 4000 elements: summation order shows."""
    rng = c.rng
    n = rng.randint(1000, 4000)
    # n terms of size ~1 summed in another order than PyTorch's: rounding up
    # to about n eps sum|terms|, in a result that may be near 0 (an entry of
    # a product of random matrices, a gradient summed over the long axis)
    c.rtol, c.atol = 1e-9, 1e-10
    if name in ('sum', 'mean', 'max'):
        x = c.x([n], vals(rng, n, 'distinct' if name == 'max' else 'any'))
        return post(c, c.o(name, [x]))
    if name in ('sum_axis', 'mean_axis', 'max_axis', 'softmax', 'log_softmax', 'sum_to'):
        r = rng.randint(1, 3)
        shape = [r, n] if rng.random() < 0.5 else [n, r]
        kind = 'distinct' if name == 'max_axis' else 'any'
        x = c.x(shape, vals(rng, r * n, kind))
        if name in ('softmax', 'log_softmax'):
            return post(c, c.o(name, [x]))
        if name == 'sum_to':
            return post(c, c.o('sum_to', [x], [2] + [1 if d == n else d for d in shape]))
        return post(c, c.o(name, [x], [shape.index(n), rng.randint(0, 1)]))
    if name in ('matmul', 'bmm'):
        a, b = rng.randint(1, 3), rng.randint(1, 3)
        batch = [2] if name == 'bmm' else []
        x = c.x(batch + [a, n], vals(rng, numel(batch) * a * n))
        y = c.x([n, b], vals(rng, n * b))
        return post(c, c.o(name, [x, y]))
    if name in ('layer_norm', 'batch_norm'):
        shape = [2, n] if name == 'layer_norm' else [n, 2]
        D = shape[-1]
        x = c.x(shape, vals(rng, 2 * n))
        g = c.x([D], [rng.uniform(0.5, 1.5) for _ in range(D)])
        b = c.x([D], vals(rng, D))
        if name == 'layer_norm':
            return post(c, c.o(name, [x, g, b], [1e-5]))
        return post(c, c.o(name, [x, g, b], [1e-5], nout=3)[0])
    if name == 'cross_entropy':
        N, K = (n, 3) if rng.random() < 0.5 else (2, n)
        x = c.x([N, K], vals(rng, N * K))
        lab = c.idx([N], [rng.randrange(K) for _ in range(N)])
        return post(c, c.o(name, [x, lab]))
    p = c.x([n], vals(rng, n))
    t = c.x([n], vals(rng, n, 'unit' if name == 'bce_with_logits' else 'any'))
    return post(c, c.o(name, [p, t]))


# ---- random expressions of several ops ------------------------------------------

SMOOTH = ('sin', 'cos', 'tanh', 'sigmoid', 'softplus', 'erf', 'gelu', 'silu', 'exp_t',
          'sq', 'div_sp', 'log_sp', 'sqrt_exp', 'mul_scalar', 'add_scalar', 'pow3')


def gen_chain(c):
    """Several ops on broadcast inputs: smooth unary ops, binary ops with other
    inputs, reductions and axis moves, in random order."""
    rng = c.rng
    full = rand_shape(rng, rng.randint(1, 5), cap=64, maxdim=3)
    cur = c.x(full, vals(rng, numel(full)))
    shape = list(full)
    used = []
    for _ in range(rng.randint(2, 7)):
        r = rng.random()
        if r < 0.45:
            u = rng.choice(SMOOTH)
            used.append(u)
            if u == 'exp_t':
                cur = c.o('exp', [c.o('tanh', [cur])])
            elif u == 'sq':
                cur = c.o('mul', [cur, cur])
            elif u == 'div_sp':
                cur = c.o('div', [cur, c.o('add_scalar', [c.o('softplus', [cur])], [0.5])])
            elif u == 'log_sp':
                cur = c.o('log', [c.o('add_scalar', [c.o('softplus', [cur])], [0.1])])
            elif u == 'sqrt_exp':
                cur = c.o('sqrt', [c.o('exp', [c.o('tanh', [cur])])])
            elif u == 'pow3':
                cur = c.o('pow', [c.o('tanh', [cur])], [3])
            elif u in ('mul_scalar', 'add_scalar'):
                cur = c.o(u, [cur], [rng.uniform(-2, 2)])
            else:
                cur = c.o(u, [cur])
        elif r < 0.75:
            op = rng.choice(('add', 'sub', 'mul', 'mul', 'div'))
            used.append(op)
            os_ = bcast_variant(rng, shape)
            other = c.x(os_, vals(rng, numel(os_)))
            args = [cur, other] if rng.random() < 0.5 else [other, cur]
            if op == 'div':   # the denominator kept in [0.57, 2.9]
                args[1] = c.o('add_scalar', [c.o('exp', [c.o('tanh', [args[1]])])], [0.2])
            cur = c.o(op, args)
        elif r < 0.87 and len(shape) >= 1:
            op = rng.choice(('sum_axis', 'mean_axis', 'softmax', 'log_softmax'))
            used.append(op)
            if op in ('softmax', 'log_softmax'):
                cur = c.o(op, [cur])
            else:
                axis = rng.randint(-len(shape), len(shape) - 1)
                keep = rng.randint(0, 1)
                cur = c.o(op, [cur], [axis, keep])
                if keep:
                    shape[axis] = 1
                else:
                    shape.pop(axis)
        elif len(shape) >= 2:
            perm = list(range(len(shape)))
            rng.shuffle(perm)
            used.append('permute')
            cur = c.o('permute', [cur], perm)
            shape = [shape[p] for p in perm]
    c.note = ' '.join(used)
    return cur


# ---- convention cases ------------------------------------------------------------


def convention_cases(rng):
    """The documented rules at kinks, where PyTorch 1.13 agrees."""
    out = []

    def case(op, build):
        c = Case('conv:' + op, rng)
        c.result = build(c)
        out.append(c)

    case('relu', lambda c: c.o('relu', [c.x([4], [0.0, -1.0, 1.0, 0.0])]))
    case('relu_backward', lambda c: c.o('relu_backward', [c.x([3], [1.5, -2.0, 0.7]),
                                                          c.x([3], [0.0, 1.0, -1.0])]))
    case('abs', lambda c: c.o('abs', [c.x([3], [0.0, -2.0, 3.0])]))
    case('leaky_relu', lambda c: c.o('leaky_relu', [c.x([2], [0.0, 1.0])], [0.2]))
    case('elu', lambda c: c.o('elu', [c.x([2], [0.0, -1.0])], [0.7]))
    case('maximum', lambda c: c.o('maximum', [c.x([3], [1.0, 2.0, -1.0]),
                                              c.x([3], [1.0, 0.0, -1.0])]))
    case('minimum', lambda c: c.o('minimum', [c.x([3], [1.0, 2.0, -1.0]),
                                              c.x([3], [1.0, 0.0, -1.0])]))
    case('maximum_same', lambda c: (lambda a: c.o('maximum', [a, a]))(c.x([2], [1.0, -3.0])))
    case('max', lambda c: c.o('max', [c.x([2, 3], [1.0, 3.0, 3.0, 0.0, 3.0, -1.0])]))
    case('max_axis', lambda c: c.o('max_axis', [c.x([2, 3], [2.0, 2.0, 1.0, 5.0, 5.0, 5.0])],
                                   [1, 0]))
    case('clamp', lambda c: c.o('clamp', [c.x([4], [-1.0, 1.0, 0.0, 2.0])], [-1.0, 1.0]))
    case('l1', lambda c: c.o('l1', [c.x([3], [1.0, 2.0, 0.5]), c.x([3], [1.0, 1.0, 1.0])]))
    def huber_kink(c):
        # |d| = delta: PyTorch's second derivative there is 0, tapegrad's
        # rule takes the quadratic side (1 / n); checked against the rule
        c.override['huber'] = lambda a, at: t_huber_closed(a[0], a[1], at[0])
        return c.o('huber', [c.x([3], [2.0, 0.0, -1.0]), c.x([3], [1.0, 1.0, 0.0])], [1.0])

    case('huber', huber_kink)
    def huber_torch(c):
        # the same against PyTorch's own huber_loss: first order only
        c.first_order_only = True
        return c.o('huber', [c.x([3], [2.0, 0.0, -1.0]), c.x([3], [1.0, 1.0, 0.0])], [1.0])

    case('huber_torch', huber_torch)
    case('where_same', lambda c: (lambda a: c.o('where', [c.const([2], [1, 0]), a, a]))(
        c.x([2], [1.0, 2.0])))
    for c in out:
        c.flags = 3
    return out


# ---- the run ------------------------------------------------------------------

OPS = {}
for _n in UNARY:
    OPS[_n] = lambda c, n=_n: gen_unary(c, n)
for _n in ('add', 'sub', 'mul', 'div', 'maximum', 'minimum'):
    OPS[_n] = lambda c, n=_n: gen_binary(c, n)
OPS['where'] = gen_where
for _n in ('sum', 'mean', 'max', 'sum_axis', 'mean_axis', 'max_axis'):
    OPS[_n] = lambda c, n=_n: gen_reduce(c, n)
for _n in ('sum_to', 'expand'):
    OPS[_n] = lambda c, n=_n: gen_sum_to(c, n)
for _n in ('matmul', 'matmul_t', 'transpose', 'addmm', 'addmm_relu'):
    OPS[_n] = lambda c, n=_n: gen_matmul(c, n)
for _n in ('bmm', 'bmm_t'):
    OPS[_n] = lambda c, n=_n: gen_bmm(c, n)
for _n in ('reshape', 'permute', 'squeeze', 'unsqueeze', 'slice', 'pad_axis', 'split',
           'detach'):
    OPS[_n] = lambda c, n=_n: gen_shape(c, n)
for _n in ('concat', 'stack'):
    OPS[_n] = lambda c, n=_n: gen_join(c, n)
for _n in ('index_select', 'gather_rows', 'embedding', 'pick', 'one_hot', 'nll',
           'cross_entropy', 'cross_entropy_i32', 'cross_entropy_backward'):
    OPS[_n] = lambda c, n=_n: gen_index(c, n)
for _n in ('softmax', 'log_softmax', 'softmax_axis', 'log_softmax_axis', 'logsumexp'):
    OPS[_n] = lambda c, n=_n: gen_softmax(c, n)
for _n in ('mse', 'l1', 'huber', 'bce_with_logits'):
    OPS[_n] = lambda c, n=_n: gen_loss(c, n)
for _n in ('batch_norm', 'batch_norm_relu', 'batch_norm_backward', 'layer_norm',
           'layer_norm_backward'):
    OPS[_n] = lambda c, n=_n: gen_norm(c, n)
for _n in ('sigmoid_backward', 'tanh_backward', 'relu_backward', 'leaky_relu_backward',
           'elu_backward', 'gelu_backward', 'pow_backward', 'softplus_backward',
           'silu_backward'):
    OPS[_n] = lambda c, n=_n: gen_act_backward(c, n)
for _n in ('conv2d', 'conv2d_relu', 'conv2d_input_grad', 'conv2d_weight_grad'):
    OPS[_n] = lambda c, n=_n: gen_conv(c, n)
for _n in ('max_pool2d', 'relu_max_pool2d', 'avg_pool2d'):
    OPS[_n] = lambda c, n=_n: gen_pool(c, n)


def small_enough(c, ndim_y, numel_y):
    ins = c.inputs()
    if sum(numel(it[2]) for it in ins) > 40 or numel_y > 40:
        return 0
    flags = 0
    if all(ndim_y + len(it[2]) <= 8 for it in ins):
        flags |= 1
    if numel_y >= 0 and all(len(a[2]) + len(b[2]) <= 8 for a in ins for b in ins):
        flags |= 2
    return flags


def make_cases(seed, rounds):
    rng = random.Random(seed)
    cases = []
    for r in range(rounds):
        for name, gen in OPS.items():
            c = Case(name, rng)
            c.result = gen(c)
            cases.append(c)
    for name in LONG:
        c = Case('long:' + name, rng)
        c.result = gen_long(c, name)
        c.flags = 0   # no Jacobian or Hessian: too big
        cases.append(c)
    for _ in range(rounds * 12):
        c = Case('chain', rng)
        c.result = gen_chain(c)
        cases.append(c)
    cases.extend(convention_cases(rng))
    return cases


def compare(got, want, rtol, atol):
    """The worst error as a fraction of the tolerance, and where."""
    worst, at = 0.0, -1
    for i, (a, e) in enumerate(zip(got, want)):
        if a == e or (math.isnan(e) and math.isnan(a)):
            continue
        ratio = abs(a - e) / (atol + rtol * abs(e))
        if not ratio <= worst:
            worst, at = ratio if not math.isnan(ratio) else math.inf, i
    return worst, at


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--driver', required=True)
    ap.add_argument('--seed', type=int, default=20261201)
    ap.add_argument('--rounds', type=int, default=8)
    ap.add_argument('--keep', help='write the driver input here')
    ap.add_argument('--max-report', type=int, default=40)
    args = ap.parse_args()
    t0 = time.time()
    torch.manual_seed(args.seed)
    cases = make_cases(args.seed, args.rounds)
    rng = random.Random(args.seed + 1)

    specs, exps = [], []
    for c in cases:
        f = torch_fn(c)
        xs = [torch.tensor(it[3]).reshape(it[2]) for it in c.inputs()]
        y = f(*xs)
        if c.flags is None:
            c.flags = small_enough(c, y.dim(), y.numel()) & rng.choice((0, 1, 2, 3, 3))
        w = [rng.uniform(-1, 1) for _ in range(y.numel())]
        v = [[rng.uniform(-1, 1) for _ in range(x.numel())] for x in xs]
        try:
            exps.append(expected(c, w, v))
        except RuntimeError as e:
            exps.append({'torch_error': str(e).split('\n')[0]})
        specs.append(spec(c, w, v))
    text = ''.join(specs)
    if args.keep:
        with open(args.keep, 'w') as fh:
            fh.write(text)
    t1 = time.time()
    run = subprocess.run([args.driver], input=text, capture_output=True, text=True)
    if run.returncode != 0:
        print("FAIL: torch_driver exited %d: %s" % (run.returncode, run.stderr[-2000:]))
        return 1
    results = parse_output(run.stdout)
    if len(results) != len(cases):
        print("FAIL: %d cases sent, %d answered" % (len(cases), len(results)))
        return 1
    t2 = time.time()

    per_op = defaultdict(lambda: {'cases': 0, 'checks': 0, 'worst': 0.0, 'where': '',
                                  'bad': 0})
    per_key = defaultdict(lambda: [0, 0.0])
    failures = []
    for i, (c, exp, got) in enumerate(zip(cases, exps, results)):
        row = per_op[c.op]
        row['cases'] += 1
        problems = []
        if 'torch_error' in exp:
            problems.append(('torch', 'PyTorch failed: ' + exp['torch_error']))
        for e in got.get('errors', []):
            problems.append(('error', e))
        for key, want in exp.items():
            if key == 'torch_error':
                continue
            if key not in got:
                problems.append((key, 'missing from the driver output'))
                continue
            g = got[key]
            want = want.tolist()
            if g is None:
                g = [0.0] * len(want)
            if len(g) != len(want):
                problems.append((key, '%d values, PyTorch %d' % (len(g), len(want))))
                continue
            worst, at = compare(g, want, c.rtol, c.atol)
            row['checks'] += 1
            kk = key.split()[0]
            per_key[kk][0] += 1
            per_key[kk][1] = max(per_key[kk][1], worst)
            if worst > row['worst']:
                row['worst'], row['where'] = worst, key
            if worst > 1:
                problems.append((key, 'element %d: ours %.17g, PyTorch %.17g (%.3g x tol)'
                                 % (at, g[at], want[at], worst)))
        if problems:
            row['bad'] += 1
            failures.append((i, c, problems))

    print("tapegrad against PyTorch %s, f64, seed %d: %d cases (%d rounds), rtol %g, atol %g"
          % (torch.__version__, args.seed, len(cases), args.rounds, RTOL, ATOL))
    print("%-24s %6s %7s %6s  %-12s" % ('op', 'cases', 'checks', 'bad', 'worst err/tol'))
    for name in sorted(per_op):
        r = per_op[name]
        print("%-24s %6d %7d %6d  %9.3g  %s" % (name, r['cases'], r['checks'], r['bad'],
                                               r['worst'], r['where']))
    print("by quantity: " + ', '.join('%s %d (worst %.3g)' % (k, n, w)
                                      for k, (n, w) in sorted(per_key.items())))
    nchecks = sum(r['checks'] for r in per_op.values())
    print("%d checks in %d cases; PyTorch %.1f s, tapegrad %.1f s"
          % (nchecks, len(cases), t1 - t0, t2 - t1))
    if failures:
        print("\n%d cases disagree:" % len(failures))
        for i, c, problems in failures[:args.max_report]:
            print("case %d (%s%s):" % (i, c.op, ', ' + c.note if c.note else ''))
            for key, msg in problems[:6]:
                print("   %s: %s" % (key, msg))
            print('   ' + specs[i].replace('\n', '\n   ').rstrip())
        return 1
    print("every value and derivative agrees")
    return 0


if __name__ == '__main__':
    sys.exit(main())
