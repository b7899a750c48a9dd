"""How often a 2-rank gloo DDP job aborts at exit, plain and under each of stepscope's collectors.

Why this exists (issue 19): a rank of a finished gloo job sometimes dies at interpreter exit
with ``terminate called without an active exception`` (SIGABRT). The native stack
(``../shared/evidence/collector-abort.md``) shows a gloo worker thread releasing the last
work item after ``Py_FinalizeEx`` began. That work captured the autograd engine's stashed
``contextvars.Context`` (``torch.autograd.graph._engine_run_backward`` puts it in the
thread-local state that every collective issued during backward copies), so its release
asks a finalizing interpreter for the GIL, and the thread is made to exit inside a
``noexcept`` destructor. The abort is rare, so only many runs say whether a collector adds to
it, and whether a teardown or the collector's exit guard takes it away.

Each run is the same tiny DDP job (the evidence's script: seven steps of a Linear layer, a
10 ms "data loader"), two ranks started directly (``RANK``/``WORLD_SIZE``/``MASTER_*``, as
torchrun sets them, without torchrun's agent so a run costs ~2 s, not ~5 s), in one of:

* ``plain``: no stepscope at all;
* ``run``: each rank under ``stepscope run`` (the launcher, its sampler, the trace recorder
  and the exit guard);
* ``helper``: the script wraps its loop in ``stepscope.collectors.profiling.profile_training``;

and with one of two teardowns: ``destroy`` (``dist.barrier()`` then
``dist.destroy_process_group()``, what scripts do) or ``exit`` (the same, then
``os._exit(0)`` after flushing: the project's own runs end this way, so no thread can meet
a finalizing interpreter). ``--load N`` keeps N busy processes running meanwhile (the
abort is a race, and CPU contention widens it).

Prints, per variant: runs, aborts, other failures, the abort rate and its exact 95 %
Clopper-Pearson interval; ``--jsonl FILE`` appends one line per run (variant, exit codes,
the abort seen) so long measurements can be made in parts and summed (``--summarise``).

    .venv-torch/bin/python bench/bench_exit_abort.py --runs 200 --variants plain:destroy run:destroy
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ABORT = "terminate called without an active exception"
KINDS = ("plain", "run", "helper")
TEARDOWNS = ("destroy", "exit")

_BODY = """\
import os, sys, time
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
{import_helper}
torch.set_num_threads(1)
dist.init_process_group("gloo")
model = DistributedDataParallel(nn.Linear(8, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)

def batches(n):
    for _ in range(n):
        time.sleep(0.01)
        yield torch.randn(4, 8)

{loop}
dist.barrier()
dist.destroy_process_group()
{teardown}"""

_PLAIN_LOOP = """\
for x in batches(7):
    loss = model(x).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()"""

_HELPER_LOOP = """\
with profile_training(out_dir=sys.argv[1], wait=1, warmup=1, active=3, host="algo-1") as prof:
    for x in prof.iterate(batches(7)):
        with prof.label("forward"):
            loss = model(x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        prof.step()"""

_EXIT = """\
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)"""


def script(kind: str, teardown: str) -> str:
    helper = kind == "helper"
    return _BODY.format(
        import_helper="from stepscope.collectors.profiling import profile_training"
        if helper
        else "",
        loop=_HELPER_LOOP if helper else _PLAIN_LOOP,
        teardown=_EXIT if teardown == "exit" else "",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_run(kind: str, teardown: str, work: Path, timeout_s: float) -> dict[str, object]:
    """Both ranks of one job; their exit codes and whether either printed the abort."""
    path = work / f"train_{kind}_{teardown}.py"
    if not path.exists():
        path.write_text(script(kind, teardown))
    out = Path(tempfile.mkdtemp(prefix="out", dir=work))
    port = free_port()
    procs = []
    for rank in (0, 1):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPSCOPE_", "SM_"))}
        env.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            PYTHONPATH=str(REPO),
        )
        argv = [sys.executable, str(path), str(out)]
        if kind == "run":
            argv = [
                sys.executable,
                "-m",
                "stepscope.collectors.launcher",
                "--out",
                str(out),
                "--steps",
                "1:1:3",
                "--",
                *argv,
            ]
        procs.append(
            subprocess.Popen(
                argv,
                env=env,
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    codes, aborted, tail = [], [], []
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        codes.append(p.returncode)
        aborted.append(ABORT in err)
        tail.append(err[-300:] if p.returncode else "")
    with contextlib.suppress(OSError):
        for f in sorted(out.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        out.rmdir()
    return {
        "kind": kind,
        "teardown": teardown,
        "codes": codes,
        "aborted": aborted,
        "stderr_tail": tail,
    }


def classify(row: dict[str, object]) -> str:
    codes = row["codes"]
    aborted = row["aborted"]
    assert isinstance(codes, list) and isinstance(aborted, list)
    if any(aborted):
        return "abort"
    return "ok" if all(c == 0 for c in codes) else "other"


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval, by bisection on the binomial tail (no scipy needed)."""
    if n == 0:
        return (0.0, 1.0)
    alpha = 1.0 - level

    def tail_ge(p: float, kk: int) -> float:  # P[X >= kk]
        return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(kk, n + 1))

    def solve(f: object, target: float) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if f(mid) < target:  # type: ignore[operator]
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    low = 0.0 if k == 0 else solve(lambda p: tail_ge(p, k), alpha / 2)
    high = 1.0 if k == n else solve(lambda p: tail_ge(p, k + 1), 1 - alpha / 2)
    return low, high


@contextlib.contextmanager
def cpu_load(n: int) -> Iterator[None]:
    """N busy-looping processes for the duration (the 'with CPU load' runs)."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for b in burners:
            b.kill()
            b.wait()


def fisher_two_sided(k1: int, n1: int, k2: int, n2: int) -> float:
    """Fisher's exact test on two abort counts: how likely a difference at least this large
    is if both variants abort at the same rate (the sum of the hypergeometric probabilities
    no larger than the one observed)."""
    total, aborts = n1 + n2, k1 + k2

    def prob(k: int) -> float:
        return math.comb(aborts, k) * math.comb(total - aborts, n1 - k) / math.comb(total, n1)

    observed = prob(k1)
    low, high = max(0, aborts - n2), min(aborts, n1)
    return min(
        1.0, sum(q for q in (prob(k) for k in range(low, high + 1)) if q <= observed * (1 + 1e-9))
    )


def summarise(rows: list[dict[str, object]]) -> str:
    groups: dict[tuple[str, str, int], list[str]] = {}
    for r in rows:
        key = (str(r["kind"]), str(r["teardown"]), int(r.get("load", 0)))  # type: ignore[call-overload]
        groups.setdefault(key, []).append(classify(r))
    lines = [
        f"{'variant':<18} {'load':>4} {'runs':>5} {'aborts':>6} {'other':>5} "
        f"{'rate':>7}  {'95% interval':<18} p vs plain (Fisher)"
    ]
    for (kind, teardown, load), outcomes in sorted(groups.items()):
        n, k = len(outcomes), outcomes.count("abort")
        low, high = clopper_pearson(k, n)
        plain = groups.get(("plain", "destroy", load))
        vs = ""
        if plain is not None and (kind, teardown) != ("plain", "destroy"):
            vs = f"{fisher_two_sided(k, n, plain.count('abort'), len(plain)):.3f}"
        lines.append(
            f"{kind + ':' + teardown:<18} {load:>4} {n:>5} {k:>6} "
            f"{outcomes.count('other'):>5} {100 * k / n:>6.2f}%  "
            f"{f'[{100 * low:.2f}%, {100 * high:.2f}%]':<18} {vs}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=200, help="runs of each variant")
    ap.add_argument(
        "--variants",
        nargs="+",
        default=[f"{k}:destroy" for k in KINDS],
        help="KIND:TEARDOWN, KIND in plain/run/helper, TEARDOWN in destroy/exit",
    )
    ap.add_argument("--load", type=int, default=0, help="busy processes running meanwhile")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a run may take")
    ap.add_argument("--jsonl", type=Path, default=None, help="append one line per run here")
    ap.add_argument(
        "--summarise",
        type=Path,
        default=None,
        help="only print the summary of a --jsonl file and exit",
    )
    a = ap.parse_args()
    if a.summarise is not None:
        rows = [json.loads(line) for line in a.summarise.read_text().splitlines() if line.strip()]
        print(summarise(rows))
        return 0
    variants = []
    for v in a.variants:
        kind, _, teardown = v.partition(":")
        if kind not in KINDS or teardown not in TEARDOWNS:
            ap.error(
                f"variant {v!r}: expected KIND:TEARDOWN with KIND in {KINDS}, "
                f"TEARDOWN in {TEARDOWNS}"
            )
        variants.append((kind, teardown))
    rows: list[dict[str, object]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="exit-abort-") as tmp, cpu_load(a.load):
        for i in range(a.runs):
            for (
                kind,
                teardown,
            ) in variants:  # interleaved: drift in the machine's load hits all alike
                row = one_run(kind, teardown, Path(tmp), a.timeout)
                row["load"] = a.load
                rows.append(row)
                if a.jsonl is not None:
                    with a.jsonl.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                if classify(row) != "ok":
                    print(
                        f"run {i + 1} {kind}:{teardown}: {classify(row)} {row['codes']}",
                        file=sys.stderr,
                    )
            if (i + 1) % 10 == 0:
                print(
                    f"{i + 1}/{a.runs} rounds, {time.monotonic() - started:.0f} s", file=sys.stderr
                )
    print(summarise(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
