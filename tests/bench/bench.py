#!/usr/bin/python3
"""bench.py - runs tests/bench's workloads and reports speed and memory.

Called by tests/bench/run after it has built tg_bench (bench.c). Every
repetition of every workload is a fresh process, so peak RSS is per
workload; the repetitions of tapegrad, PyTorch and the GEMM floor are
interleaved (tg, torch, floor, tg, torch, floor, ...) so that a change of
machine load hits all three alike. Prints markdown tables, writes them into
tests/bench/results.md between markers (the rest of that file is kept) and
appends one CSV row per workload and side to tests/bench/history.csv.
Standard library only; the PyTorch side runs in its own interpreter.
"""
import argparse
import csv
import datetime
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# key, description, tapegrad/torch workload, floor workload, BLAS threads, size
WORKLOADS = [
    ("w1", "W1 784-50-10 sigmoid, SGD 0.1, batch 100 (replacement), f32",
     "w1", "floor-w1", 1, "small"),
    ("w1-f64", "W1 the same in f64", "w1-f64", "floor-w1-f64", 1, "small"),
    ("w2", "W2 784-[100]x5-10 affine-BN-ReLU, Adam 0.001, batch 100, f32",
     "w2", "floor-w2", 1, "small"),
    ("w3-t1", "W3 784-1024-1024-10 ReLU, Momentum 0.9, batch 512, 1 thread",
     "w3", "floor-w3", 1, "big"),
    ("w3-t2", "W3 the same, 2 threads", "w3", "floor-w3", 2, "big"),
    ("w4-scalar", "W4 (x+y)*z on scalars, forward+backward+reset",
     "w4-scalar", None, 1, "small"),
    ("w4-sigmoid", "W4 sigmoid(w.x + b) on 64-vectors, forward+backward+reset",
     "w4-sigmoid", None, 1, "small"),
    ("cnn-t1", "CNN conv32 3x3 p1-ReLU-pool2-conv64 3x3 p1-ReLU-pool2-128-10, Adam 1e-3, "
     "batch 64 (replacement), (64,1,28,28) f32, 1 thread", "cnn", None, 1, "big"),
    ("cnn-t2", "CNN the same, 2 threads", "cnn", None, 2, "big"),
]

CNN_DESC = ("conv32 3x3 p1-ReLU-pool2-conv64 3x3 p1-ReLU-pool2-128-10, Adam 1e-3, batch 64, "
            "(64,1,28,28) f32, CE")
# The CNN rows of the suite: key, workload, threads, description (bench.c
# cnn_train and img_cnn_train, torch_bench.py cnn_train and img_cnn_train)
SUITE_CNN = [
    ("s-cnn", "cnn", 1, CNN_DESC),
    ("s-cnn-t2", "cnn", 2, CNN_DESC),
    ("s-cnn-bn", "cnn-bn", 1,
     "conv32 3x3-BN-ReLU, conv64 3x3 s2-ReLU, conv128 3x3 s2-ReLU, global avg pool, fc 10, "
     "Momentum 0.9, batch 32, (32,3,32,32) f32, CE"),
    ("s-cnn-dws", "cnn-dws", 1,
     "conv32 3x3 s2-BN-ReLU, depthwise 3x3-BN-ReLU, 1x1 128-BN-ReLU, depthwise 3x3 s2-BN-ReLU, "
     "1x1 256-BN-ReLU, global avg pool, fc 10, Momentum 0.9, batch 32, (32,3,32,32) f32, CE"),
]

MARK = "<!-- bench:{}:{} -->"


def fmt_t(s):
    if s is None or s != s:
        return "–"
    s = float(f"{s:.3g}")  # 0.9996e-3 s is "1 ms", not "1e+03 µs"
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def fmt_mb(kb):
    return "–" if kb is None or kb < 0 else f"{kb / 1024:.0f} MB"


def fmt_bytes(b):
    if b is None:
        return "–"
    return f"{b} B" if b < 10240 else f"{b / 1024:.0f} kB"


def fmt_n(x):
    if x is None or x != x:
        return "–"
    return f"{x:.3g}" if x != int(x) else f"{int(x)}"


def load_avg():
    return os.getloadavg()[0]


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


def parse(stdout):
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            d = {}
            for kv in line[7:].split():
                k, _, v = kv.partition("=")
                try:
                    d[k] = int(v)
                except ValueError:
                    try:
                        d[k] = float(v)
                    except ValueError:
                        d[k] = v
            steady = d.get("steady_sec_per_iter")
            if isinstance(steady, float) and steady == steady and d.get("iters"):
                # time per iteration from iteration WARM on, on both sides:
                # the first iterations' one-time costs (oneDNN generating
                # its kernels, PyTorch's allocator) are not a step's
                d["sec_per_iter"] = steady
                d["cpu"] = d["steady_cpu_per_iter"] * d["iters"]
                if isinstance(d.get("steady_gemm_share"), float):
                    d["gemm_share"] = d["steady_gemm_share"]
            return d
    return None


def run_one(cmd, env, log):
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    r = parse(p.stdout)
    if p.returncode or r is None or r.get("error") != "none":
        log(f"  FAILED ({p.returncode}): {' '.join(map(shlex.quote, cmd))}\n"
            f"{p.stdout[-2000:]}{p.stderr[-2000:]}")
        return None
    r["process_seconds"] = time.time() - t0
    return r


class Stat:
    """Repetitions of one workload on one side."""

    def __init__(self, results):
        self.r = [r for r in results if r]
        t = [r["sec_per_iter"] for r in self.r]
        self.n = len(t)
        self.med = statistics.median(t) if t else None
        self.lo = min(t) if t else None
        self.hi = max(t) if t else None
        c = [r["cpu"] / r["iters"] for r in self.r if r.get("iters")]
        self.cpu = statistics.median(c) if c else None

    def get(self, key):
        v = [r[key] for r in self.r if isinstance(r.get(key), (int, float))]
        return statistics.median(v) if v else None

    def first(self, key, default="–"):
        for r in self.r:
            if key in r:
                return r[key]
        return default


def usage_error(prog, msg):
    """A mistake on the command line: the message, exit status 2 (as argparse)."""
    print(f"{prog}: {msg}", file=sys.stderr)
    sys.exit(2)


def check_only(prog, only, valid):
    """--only's names, a set; a usage error naming those that are not in valid."""
    names = {n for n in only.split(",") if n}
    bad = sorted(names - set(valid))
    if bad or not names:
        usage_error(prog, f"--only: unknown workload{'s' if len(bad) > 1 else ''} "
                          f"{', '.join(bad) or repr(only)}; valid: {', '.join(valid)}")
    return names


def positive(text):
    """argparse type: a whole number from 1 to 2^31 - 1 (the C programs' int)."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if not 1 <= v <= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {2**31 - 1}, not {text!r}")
    return v


def write_results(path, section, text):
    """Replaces the section's part of path (between its markers), or adds it.
    The new text goes to a file beside it, renamed over it once written, so
    that a failed write leaves the old file whole."""
    begin, end = MARK.format(section, "begin"), MARK.format(section, "end")
    body = f"{begin}\n## Latest {section} run\n\n{text}\n{end}\n"
    path = os.path.realpath(path)
    try:
        old = open(path).read()
    except FileNotFoundError:
        old = "# tests/bench results\n\n"
    if begin in old and end in old:
        i, j = old.index(begin), old.index(end) + len(end)
        new = old[:i] + body.rstrip("\n") + old[j:]
    else:
        new = old.rstrip("\n") + "\n\n" + body
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".results-",
                                   suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        if tmp:
            os.unlink(tmp)
        sys.exit(f"{os.path.basename(sys.argv[0])}: writing {path}: {e.strerror or e}; "
                 "left as it was")


# Both sides run with glibc's heap kept: without these two settings glibc
# hands every large block back to the kernel when it is freed, and PyTorch,
# which allocates each step's activations anew, pays page faults on every
# step (its CNN step ran 3x slower, most of it in the kernel). tapegrad
# allocates nothing per step, so the settings change nothing for it.
MALLOC_KEEP = {"MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 36)}


def bench_env(threads):
    return dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                **MALLOC_KEEP)


# ---- the workload suite (bench.c SUITE, torch_bench.py suite_train) --------------------

OPT_NAMES = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "AdamW"]
LOSS_NAMES = ["CE", "MSE", "BCE"]


def geomean(v):
    v = [x for x in v if x and x > 0]
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else None


def suite_main(a):
    """--suite: every suite workload, tapegrad and PyTorch interleaved in fresh
    processes (and --before's tapegrad build beside them), 1 thread; writes
    the "suite" section of results.md and history.csv rows."""
    reps = a.reps or (1 if a.quick else 3)
    scale = 0.2 if a.quick else 1.0
    lines = subprocess.run([a.bin, "suite-list"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    # --spec: workloads of the command line, in suite-list's form (tg_bench
    # checks and normalises them), alone unless --only names others too
    spec_args = {}
    for sp in a.spec or []:
        r = subprocess.run([a.bin, "suite-list", "--spec", sp], capture_output=True, text=True)
        if r.returncode:
            usage_error("bench.py", f"--spec {sp!r}: {r.stderr.strip()}")
        ln = r.stdout.strip()
        spec_args[ln.split()[0]] = (ln, ["--spec", sp])
    valid = [ln.split()[0] for ln in lines] + [k for k, _, _, _ in SUITE_CNN] + list(spec_args)
    only = check_only("bench.py", a.only, valid) if a.only else None
    if a.spec and not only:
        only = set()
    specs = [ln for ln in lines if only is None or ln.split()[0] in only]
    specs += [f"{k} cnn {w} {t}" for k, w, t, _ in SUITE_CNN if only is None or k in only]
    specs += [ln for ln, _ in spec_args.values()]
    datadir = os.path.join(os.path.dirname(os.path.abspath(a.bin)), "suite-data")
    os.makedirs(datadir, exist_ok=True)
    torch_ok = not a.no_torch and subprocess.run(
        [a.python, "-c", "import torch"], capture_output=True).returncode == 0
    log = lambda s="": print(s, flush=True)
    started, start_uptime = time.time(), uptime()
    log(f"tests/bench: suite run, {start_uptime}; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    rows = []
    for spec in specs:
        threads = 1
        if spec.split()[1] == "cnn":
            name, _, cw, threads = spec.split()
            threads = int(threads)
            iters = 20 if a.quick else 60
            targs = [cw, "--threads", str(threads), "--iters", str(iters)]
            sides = [("tapegrad", [a.bin] + targs)]
            if torch_ok:
                sides.append(("torch", [a.python, os.path.join(HERE, "torch_bench.py")] + targs))
            if a.before:
                sides.append(("before", [a.before] + targs))
            cdesc = next(d for k, _, _, d in SUITE_CNN if k == name)
            desc = f"CNN {cdesc}, {threads} thread{'s' if threads > 1 else ''}"
        else:
            name, arch, act, optk, batch, dt, lossk, iters = spec.split()
            iters = max(20, int(int(iters) * scale))
            data = os.path.join(datadir, name + ".bin")
            extra = spec_args[name][1] if name in spec_args else []
            subprocess.run([a.bin, "suite-data", name, data] + extra, check=True)
            sides = [("tapegrad", [a.bin, name, "--iters", str(iters)] + extra)]
            if torch_ok:
                sides.append(("torch", [a.python, os.path.join(HERE, "torch_bench.py"), name,
                                        "--suite-spec", spec, "--data", data,
                                        "--iters", str(iters)]))
            if a.before:
                sides.append(("before", [a.before, name, "--iters", str(iters)] + extra))
            desc = (f"{arch} {act}, {OPT_NAMES[int(optk)]}, batch {batch}, {dt}, "
                    f"{LOSS_NAMES[int(lossk)]}")
        env = bench_env(threads)
        got = {s: [] for s, _ in sides}
        l0 = load_avg()
        for i in range(reps):
            for side, cmd in sides:
                r = run_one(cmd, env, log)
                got[side].append(r)
                if r:
                    log(f"  {name} {i + 1}/{reps} {side:8s} {fmt_t(r['sec_per_iter'])}/iter "
                        f"(cpu {fmt_t(r['cpu'] / r['iters'])}), loss {r['loss']:.4g}")
        rows.append((name, desc, iters, {s: Stat(v) for s, v in got.items()},
                     (l0, load_avg()), threads))
    elapsed = time.time() - started

    def ratio(th, tg, cpu=False):
        if not th or not tg or not th.n or not tg.n:
            return None
        return (th.cpu / tg.cpu) if cpu else (th.med / tg.med)

    def kernels(st):
        # the GEMMs' and oneDNN's primitives' share; the GEMMs' alone from
        # a tg_bench that does not time the primitives
        v = st.get("steady_kernel_share") if st and st.n else None
        return v if v is not None and v == v else st.get("gemm_share") if st and st.n else None

    def share(st):
        v = st.get("gemm_share") if st and st.n else None
        if v is None or v != v:
            return "–"
        k = kernels(st)
        if k is not None and k == k and k > v + 0.005:
            return f"{100 * v:.0f}% (with oneDNN's {100 * k:.0f}%)"
        return f"{100 * v:.0f}%"

    def bound(th, tg):
        # PyTorch's time over tapegrad's time inside the GEMMs and oneDNN's
        # primitives: the ratio tapegrad would reach if everything but
        # those kernels, which PyTorch runs too, took no time
        v = kernels(tg)
        if not v or v != v or not th or not th.n:
            return None
        return th.med / (tg.med * v)

    def allocs(st):
        if not st or not st.n:
            return "–"
        return (f"{fmt_n(st.get('ctx_allocs_per_iter'))} ctx, "
                f"{fmt_n(st.get('wrap_allocs_per_iter'))} malloc")

    core = "unknown"
    md = []
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                      if ln.startswith("model name")), "unknown")
    for _, _, _, st, _, _ in rows:
        core = st["tapegrad"].first("openblas_corename", core)
    md.append(f"Run of {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, commit "
              f"{commit}; {cpu_model}, {os.cpu_count()} CPUs; OpenBLAS kernel {core} "
              f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}); 1 thread "
              f"(the CNN also 2); "
              f"{reps} repetitions each, fresh processes, interleaved; total "
              f"{elapsed / 60:.1f} min.")
    md.append("")
    md.append(f"Load: start `{start_uptime}`; end `{uptime()}`.")
    md.append("")
    head = ("| workload | tapegrad | PyTorch | PyTorch / tapegrad | same, CPU time | "
            "loss tg, torch | GEMM share (tg) | bound | allocs / iter (tg) |")
    sep = "|---|---|---|---|---|---|---|---|---|"
    if a.before:
        head += " before (tapegrad) | PyTorch / before, CPU time |"
        sep += "---|---|"
    md += [head, sep]
    rw, rc, rb = [], [], []
    for name, desc, iters, st, (l0, l1), threads in rows:
        tg, th = st["tapegrad"], st.get("torch")
        w, c = ratio(th, tg), ratio(th, tg, True)
        rw.append(w)
        rc.append(c)
        f = lambda x: f"{x:.2f}×" if x else "–"
        cell = lambda s: f"{fmt_t(s.med)} [{fmt_t(s.lo)}–{fmt_t(s.hi)}]" if s and s.n else "–"
        line = (f"| {name}: {desc}, {iters} it | {cell(tg)} | {cell(th)} | {f(w)} | {f(c)} | "
                f"{tg.get('loss') or float('nan'):.3g}, "
                f"{(th.get('loss') if th else None) or float('nan'):.3g} | "
                f"{share(tg)} | {f(bound(th, tg))} | {allocs(tg)} |")
        if a.before:
            b = st["before"]
            rb.append(ratio(th, b, True))
            line += f" {cell(b)} | {f(rb[-1])} |"
        md.append(line)
    g = lambda v: f"{geomean(v):.2f}×" if geomean(v) else "–"
    m = lambda v: f"{min(x for x in v if x):.2f}×" if any(v) else "–"
    tail = f"| **geometric mean** | | | {g(rw)} | {g(rc)} | | | | |"
    tail2 = f"| **minimum** | | | {m(rw)} | {m(rc)} | | | | |"
    if a.before:
        tail += f" | {g(rb)} |"
        tail2 += f" | {m(rb)} |"
    md += [tail, tail2, ""]
    md.append("PyTorch / tapegrad above 1 means tapegrad is faster (medians of time per "
              "iteration; the CPU-time ratio is less disturbed by other load, and counts "
              "both threads' time in the 2-thread rows). Synthetic "
              "data made by tg_bench suite-data, the same file for both sides; the CNN "
              "trains on Fashion-MNIST (synthetic images of that shape when it is not "
              "installed). Batches drawn with replacement inside the timed loop, timed from its 6th "
              "iteration on, on both sides (the first five carry one-time costs: oneDNN "
              "generating its kernels, PyTorch's allocator). GEMM share: "
              "the wall time inside the cblas_sgemm/dgemm and oneDNN sgemm calls made by "
              "libtapegrad.a (timed through -Wl,--wrap) over the loop's wall time; with "
              "oneDNN's: with every oneDNN primitive it runs as well (the convolutions, and the "
              "reorders it leaves to oneDNN). Bound: PyTorch's time over "
              "tapegrad's time in those GEMMs and primitives, the ratio tapegrad would reach if all "
              "else took no time. "
              "Allocations per steady-state "
              "iteration: through the context's allocator, and every malloc, calloc, "
              "realloc and aligned allocation of the process, shared libraries "
              "(OpenBLAS, oneDNN, libc) included.")
    text = "\n".join(md)
    log(text)
    if not a.no_save:
        # a --spec run is printed, not the suite's table; a quick smoke run
        # only goes to the history, as in the default mode
        if not a.spec and not a.quick:
            write_results(a.results, "suite", text)
        stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        with open(a.history, "a", newline="") as fh:
            wr = csv.writer(fh)
            for name, desc, iters, st, (l0, l1), threads in rows:
                for side, s in st.items():
                    if s.n:
                        wr.writerow([stamp, commit, 0, "suite-quick" if a.quick else "suite",
                                     platform.node() and "vm",
                                     a.cflags, name, side, threads, s.first("dtype"), iters,
                                     s.n,
                                     f"{s.med:.6g}", f"{s.lo:.6g}", f"{s.hi:.6g}",
                                     f"{1 / s.med:.6g}", f"{s.cpu:.6g}",
                                     s.get("rss_start_kb"), s.get("loop_peak_kb"),
                                     s.get("maxrss_kb"), s.get("arena_high_water") or "",
                                     s.get("ctx_allocs_per_iter") if side != "torch" else "",
                                     s.get("wrap_allocs_per_iter") if side != "torch" else "",
                                     f"{l0:.2f}", f"{l1:.2f}"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="tg_bench")
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter with torch")
    ap.add_argument("--cflags", default="", help="recorded in the report")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=positive, help="repetitions of small workloads (5)")
    ap.add_argument("--big-reps", type=positive, help="repetitions of big workloads (3)")
    ap.add_argument("--only", help="comma-separated keys: " +
                    ",".join(w[0] for w in WORKLOADS) + "; with --suite, s-* keys "
                    "(tg_bench suite-list), s-cnn, s-cnn-t2, s-cnn-bn, s-cnn-dws")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--w1-iters", type=positive)
    ap.add_argument("--w2-epochs", type=positive)
    ap.add_argument("--w3-epochs", type=positive)
    ap.add_argument("--max-iters", type=positive,
                    help="cap on iterations of the epoch workloads W2 and W3")
    ap.add_argument("--w4-reps", type=positive, help="tiny-graph repetitions (10^6)")
    ap.add_argument("--torch-w4-reps", type=positive,
                    help="PyTorch's tiny-graph repetitions (as --w4-reps)")
    ap.add_argument("--results", default=os.path.join(HERE, "results.md"))
    ap.add_argument("--history", default=os.path.join(HERE, "history.csv"))
    ap.add_argument("--no-save", action="store_true", help="stdout only")
    ap.add_argument("--suite", action="store_true",
                    help="the workload suite (s-*) instead of W1-W4; --only names s-* keys")
    ap.add_argument("--before", help="--suite: another tg_bench to time beside (tapegrad only)")
    ap.add_argument("--spec", action="append", metavar="LINE",
                    help="--suite: a workload of your own instead of the suite's (repeatable), "
                         "\"NAME ARCH ACT OPTIMIZER BATCH DTYPE LOSS [ITERATIONS]\", e.g. "
                         "\"x-silu 784-64-64-10 silu adam 32 f32 ce 300\" (tg_bench --help); "
                         "printed and added to history.csv, results.md unchanged")
    ap.add_argument("--check-args", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.check_args:  # tests/bench/run, before it builds anything
        return 0
    if a.suite:
        return suite_main(a)

    small = a.reps or (1 if a.quick else 5)
    big = a.big_reps or (1 if a.quick else 3)
    q = a.quick
    w1_iters = a.w1_iters or (500 if q else 10000)
    w2_epochs = a.w2_epochs or 3
    w3_epochs = a.w3_epochs or 2
    cap = a.max_iters or (200 if q else 0)
    w3_cap = a.max_iters or (10 if q else 0)
    w4 = a.w4_reps or (20000 if q else 1000000)
    tw4 = a.torch_w4_reps or a.w4_reps or (5000 if q else 1000000)
    only = check_only("bench.py", a.only, [w[0] for w in WORKLOADS]) if a.only else None
    mode = "quick" if q else ("partial" if only or a.no_torch else "full")

    torch_ok = False
    if not a.no_torch:
        p = subprocess.run([a.python, "-c", "import torch, numpy; print(torch.__version__)"],
                           capture_output=True, text=True)
        torch_ok = p.returncode == 0
        torch_version = p.stdout.strip() if torch_ok else None
        if not torch_ok:
            print(f"bench.py: no PyTorch for {a.python}; tapegrad only", file=sys.stderr)

    out_lines = []

    def log(s=""):
        print(s, flush=True)

    def args_for(key, w):
        if w.startswith("w1"):
            return ["--iters", str(w1_iters)]
        if w == "w2":
            return ["--epochs", str(w2_epochs)] + (["--iters", str(cap)] if cap else [])
        if w == "w3":
            return ["--epochs", str(w3_epochs)] + (["--iters", str(w3_cap)] if w3_cap else [])
        if w == "cnn":
            return ["--iters", str(20 if q else 100)]
        return []

    started = time.time()
    start_uptime = uptime()
    log(f"tests/bench: {mode} run, {start_uptime}")
    log(f"  OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')} "
        f"OPENBLAS_NUM_THREADS/OMP_NUM_THREADS set per workload for both sides")
    results = {}
    loads = {}
    for key, desc, w, fw, threads, size in WORKLOADS:
        if only and key not in only:
            continue
        reps = small if size == "small" else big
        env = bench_env(threads)
        extra = args_for(key, w)
        tg_cmd = [a.bin, w, "--threads", str(threads)] + extra
        th_cmd = [a.python, os.path.join(HERE, "torch_bench.py"), w,
                  "--threads", str(threads)] + extra
        fl_cmd = [a.bin, fw, "--threads", str(threads)] + extra if fw else None
        if w.startswith("w4"):
            tg_cmd += ["--iters", str(w4)]
            th_cmd += ["--iters", str(tw4)]
        l0 = load_avg()
        log(f"{key}: {desc}; {reps} repetitions; load {l0:.2f}")
        got = {"tapegrad": [], "torch": [], "floor": []}
        for i in range(reps):
            sides = [("tapegrad", tg_cmd)]
            if torch_ok:
                sides.append(("torch", th_cmd))
            if fl_cmd and not a.no_floor:
                sides.append(("floor", fl_cmd))
            for side, cmd in sides:
                r = run_one(cmd, env, log)
                got[side].append(r)
                if r:
                    log(f"  {i + 1}/{reps} {side:8s} {fmt_t(r['sec_per_iter'])}/iter "
                        f"(cpu {fmt_t(r['cpu'] / r['iters'])}), {r['iters']} iters, "
                        f"loss {r.get('loss', float('nan')):.4g}, "
                        f"load {load_avg():.2f}")
        results[key] = {s: Stat(v) for s, v in got.items()}
        loads[key] = (l0, load_avg())
    elapsed = time.time() - started
    end_uptime = uptime()

    # ---- the report ------------------------------------------------------------------
    md = []
    now = datetime.datetime.now().astimezone()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip() != ""
    cpu_model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    md.append(f"Run of {now:%Y-%m-%d %H:%M %Z} ({mode}), commit {commit}"
              f"{' with local changes' if dirty else ''}; {cpu_model}, {os.cpu_count()} CPUs; "
              f"tapegrad built with `{a.cflags}`; "
              f"{f'PyTorch {torch_version} eager' if torch_ok else 'PyTorch not run'}; "
              f"total {elapsed / 60:.1f} min.")
    md.append("")
    md.append(f"Load: start `{start_uptime}`; end `{end_uptime}`.")
    md.append("")
    md.append(f"Repetitions: {small} per small workload, {big} per big one (W3), each a fresh "
              f"process. Iterations: W1 {w1_iters}, W2 {w2_epochs} epochs"
              f"{f' (capped at {cap})' if cap else ''}, W3 {w3_epochs} epochs"
              f"{f' (capped at {w3_cap})' if w3_cap else ''}, W4 {w4} (tapegrad) and "
              f"{tw4} (PyTorch) repetitions.")
    md.append("")
    md.append("### Speed (time per iteration: median [min–max] over repetitions)")
    md.append("")
    md.append("| workload | tapegrad | tapegrad it/s | PyTorch | PyTorch it/s | "
              "PyTorch / tapegrad | same, CPU time (tg vs torch) | GEMM floor | floor / tapegrad | "
              "cpu/wall tg, torch | load before→after |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for key, desc, w, fw, threads, size in WORKLOADS:
        if key not in results:
            continue
        s = results[key]
        tg, th, fl = s["tapegrad"], s["torch"], s["floor"]

        def cell(st):
            if not st.n:
                return "–"
            return f"{fmt_t(st.med)} [{fmt_t(st.lo)}–{fmt_t(st.hi)}]"

        def ips(st):
            return f"{1 / st.med:,.0f}" if st.n else "–"

        ratio = f"{th.med / tg.med:.2f}×" if tg.n and th.n else "–"
        cratio = (f"{th.cpu / tg.cpu:.2f}× ({fmt_t(tg.cpu)} vs {fmt_t(th.cpu)})"
                  if tg.n and th.n and tg.cpu and th.cpu and threads == 1 else "–")
        share = f"{100 * fl.med / tg.med:.0f}%" if tg.n and fl.n else "–"
        if not fl.n and tg.n and isinstance(tg.get("gemm_share"), float) and w == "cnn":
            share = f"{100 * tg.get('gemm_share'):.0f}% (in run)"

        def cw(st):
            return f"{st.cpu / st.med:.2f}" if st.n and st.cpu else "–"

        l0, l1 = loads[key]
        md.append(f"| {desc} | {cell(tg)} | {ips(tg)} | {cell(th)} | {ips(th)} | {ratio} | "
                  f"{cratio} | {cell(fl)} | {share} | {cw(tg)}, {cw(th)} | {l0:.1f}→{l1:.1f} |")
    if "w3-t1" in results and "w3-t2" in results:
        t1, t2 = results["w3-t1"], results["w3-t2"]
        if t1["tapegrad"].n and t2["tapegrad"].n and t1["torch"].n and t2["torch"].n:
            tg_best = min(t1["tapegrad"].med, t2["tapegrad"].med)
            th_best = min(t1["torch"].med, t2["torch"].med)
            th_which = 1 if t1["torch"].med <= t2["torch"].med else 2
            tg_which = 1 if t1["tapegrad"].med <= t2["tapegrad"].med else 2
            md.append(f"| W3 best of 1 and 2 threads | {fmt_t(tg_best)} ({tg_which} thr) | "
                      f"{1 / tg_best:,.0f} | {fmt_t(th_best)} ({th_which} thr) | "
                      f"{1 / th_best:,.0f} | {th_best / tg_best:.2f}× | | | | | |")
    md.append("")
    md.append("PyTorch / tapegrad above 1 means tapegrad is faster. floor / tapegrad is the "
              "share of tapegrad's time that the same GEMM calls alone take (the library's "
              "own, OpenBLAS or oneDNN's sgemm); for the "
              "CNN, \"in run\" is the time inside its GEMM calls during the run itself. "
              "The CPU-time ratio (one-thread rows only) is less disturbed by other load "
              "on the machine than the wall-time one. Times per iteration are counted from "
              "the 6th iteration on, on both sides. "
              "cpu/wall is process CPU time over wall time in the loop (below 1 for one "
              "thread: the process waited for a CPU; above 1: more than one thread ran).")
    md.append("")
    md.append("### Memory (medians over repetitions)")
    md.append("")
    md.append("| workload | side | RSS at loop start | peak RSS in loop | process peak RSS | "
              "arena high-water | ctx allocs / iter | malloc calls / iter (process-wide) |")
    md.append("|---|---|---|---|---|---|---|---|")
    for key, desc, w, fw, threads, size in WORKLOADS:
        if key not in results:
            continue
        for side in ("tapegrad", "torch", "floor"):
            st = results[key][side]
            if not st.n:
                continue
            tg = side != "torch"
            arena = st.get("arena_high_water")
            md.append(f"| {key} | {side} | {fmt_mb(st.get('rss_start_kb'))} | "
                      f"{fmt_mb(st.get('loop_peak_kb'))} | {fmt_mb(st.get('maxrss_kb'))} | "
                      f"{fmt_bytes(arena) if side == 'tapegrad' else '–'} | "
                      f"{fmt_n(st.get('ctx_allocs_per_iter')) if side == 'tapegrad' else '–'} | "
                      f"{fmt_n(st.get('wrap_allocs_per_iter')) if tg else 'not counted'} |")
    md.append("")
    md.append("RSS includes the training set held as f32 (60000 × 784 × 4 B = 180 MB) by "
              "both sides; the peak in the loop is VmHWM after resetting it at the loop's "
              "start (/proc/self/clear_refs). Allocation counts are over the steady state "
              "(after 5 warm-up iterations): ctx allocs through the context's tg_allocator; "
              "malloc calls are every malloc/calloc/realloc/aligned allocation of the "
              "process, those inside OpenBLAS, oneDNN and libc included (tg_bench "
              "defines them, counting, over glibc's).")
    md.append("")
    md.append("### Thread settings as each process saw them")
    md.append("")
    md.append("| workload | side | OPENBLAS_CORETYPE | OpenBLAS core | OpenBLAS threads | "
              "OPENBLAS_NUM_THREADS | OMP_NUM_THREADS | OPENBLAS_THREAD_TIMEOUT | "
              "torch threads (intra, interop) |")
    md.append("|---|---|---|---|---|---|---|---|---|")
    for key, desc, w, fw, threads, size in WORKLOADS:
        if key not in results:
            continue
        for side in ("tapegrad", "torch"):
            st = results[key][side]
            if not st.n:
                continue
            tt = (f"{st.first('torch_threads')}, {st.first('torch_interop_threads')}"
                  if side == "torch" else "–")
            md.append(f"| {key} | {side} | {st.first('env_OPENBLAS_CORETYPE')} | "
                      f"{st.first('openblas_corename')} | {st.first('blas_threads')} | "
                      f"{st.first('env_OPENBLAS_NUM_THREADS')} | "
                      f"{st.first('env_OMP_NUM_THREADS')} | "
                      f"{st.first('env_OPENBLAS_THREAD_TIMEOUT')} | {tt} |")
    md.append("")
    md.append("Final training loss (mean of the last 50 iterations; W4: dz per repetition "
              "= 5 and the last sigmoid output) as a check that both sides do the same "
              "work: " + "; ".join(
                  f"{k} tapegrad {results[k]['tapegrad'].get('loss') or float('nan'):.4g}"
                  + (f", torch {results[k]['torch'].get('loss'):.4g}"
                     if results[k]['torch'].n else "")
                  for k in results) + ".")
    md.append("")
    md.append("Both sides do the same maths: the same layer sizes, activations, init "
              "(N(0, 0.01^2) for W1, He for W2 and W3, zero biases), batch size and "
              "optimizer rule, batches drawn inside the timed loop (tapegrad's batcher; "
              "torch.randint/randperm and index_select), forward, cross-entropy, zero_grad, "
              "backward, step. Differences that do not change the work: nn.Linear stores W "
              "as (out,in) and multiplies by W^T; torch.optim.SGD(momentum=0.9) is the book's "
              "Momentum for a constant lr; torch.optim.Adam puts eps outside the "
              "bias-corrected sqrt (nn/optim.c folds the corrections into lr_t), same work "
              "per element; BatchNorm1d (eps 1e-6) is one fused kernel where tapegrad "
              "composes mean_axis, sub, mul, sqrt, div, mul and add; zero_grad keeps "
              "torch 1.13's default set_to_none=False. W1-f64 converts each batch from the "
              "f32 data set in tapegrad (tg_batch_next) and gathers from an f64 copy in "
              "PyTorch. The W4 inputs are the same fixed values on both sides.")
    text = "\n".join(md)
    log("")
    log(text)

    if a.no_save:
        return
    # results.md: replace this mode's section, keep everything else; a quick
    # smoke run only goes to the history
    section = mode
    if mode != "quick":
        write_results(a.results, section, text)
    # history.csv: one row per workload and side
    fields = ["date", "commit", "dirty", "mode", "host", "cflags", "workload", "side",
              "threads", "dtype", "iters", "reps", "median_s_per_iter", "min_s_per_iter",
              "max_s_per_iter", "iters_per_s", "cpu_s_per_iter", "rss_start_kb",
              "loop_peak_kb", "maxrss_kb", "arena_high_water", "ctx_allocs_per_iter",
              "wrap_allocs_per_iter", "load_before", "load_after"]
    new_file = not os.path.exists(a.history)
    with open(a.history, "a", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=fields)
        if new_file:
            wr.writeheader()
        for key, desc, w, fw, threads, size in WORKLOADS:
            if key not in results:
                continue
            for side, st in results[key].items():
                if not st.n:
                    continue
                wr.writerow({
                    "date": now.isoformat(timespec="seconds"), "commit": commit,
                    "dirty": int(dirty), "mode": mode, "host": platform.node(),
                    "cflags": a.cflags, "workload": key, "side": side, "threads": threads,
                    "dtype": st.first("dtype"), "iters": st.get("iters"), "reps": st.n,
                    "median_s_per_iter": f"{st.med:.6g}", "min_s_per_iter": f"{st.lo:.6g}",
                    "max_s_per_iter": f"{st.hi:.6g}", "iters_per_s": f"{1 / st.med:.6g}",
                    "cpu_s_per_iter": f"{st.cpu:.6g}" if st.cpu else "",
                    "rss_start_kb": st.get("rss_start_kb"),
                    "loop_peak_kb": st.get("loop_peak_kb"), "maxrss_kb": st.get("maxrss_kb"),
                    "arena_high_water": st.get("arena_high_water") if side != "torch" else "",
                    "ctx_allocs_per_iter": st.get("ctx_allocs_per_iter") if side != "torch" else "",
                    "wrap_allocs_per_iter": st.get("wrap_allocs_per_iter") if side != "torch" else "",
                    "load_before": f"{loads[key][0]:.2f}", "load_after": f"{loads[key][1]:.2f}",
                })
    wrote = (f"wrote {os.path.relpath(a.results, ROOT)} ({section} section) and "
             if mode != "quick" else "")
    log(f"\n{wrote}appended to {os.path.relpath(a.history, ROOT)}")


if __name__ == "__main__":
    main()
