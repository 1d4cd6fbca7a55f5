"""Threads family: the demo's slow sections and ``rsvd``, on a quiet machine and with ONE
competing busy process, under the default thread settings and the shared-machine settings of
``docs/threads.md``; ours next to the peer in the same child process, quiet and contended rounds
interleaved.

Settings (each in a fresh child process: libgomp reads ``OMP_WAIT_POLICY`` when it loads):

* ``default`` — every core a thread, ``OMP_WAIT_POLICY`` unset (libgomp's threads spin at
  barriers);
* ``passive`` — the same threads, ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep);
* ``1 thread`` — ``OMP_NUM_THREADS=1`` and ``PASSIVE`` (one pool of one thread: no barrier waits).

Contention: a child process spinning ``while True: pass`` (one core) for the contended half of
every round. Workloads: ``rsvd`` of a 2048 × 512 float32 matrix, r = 32 (ours, seeded, default
settings; peer ``torch.svd_lowrank(q=r + 10, niter=4)``); PiSSA r = 16 of MiniLM-L6 through peft
(wrap + initialise; peer peft's ``init_lora_weights="pissa_niter_4"``); EVA r = 8 of MiniLM-L6
from 2 activation batches (ours; peft's EVA needs a language-modelling data pipeline, not timed),
also with the one-thread rule for small calls switched off (``_threads.ONE_THREAD_WORK = 0``: every
update on all threads), in the same child.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"},
}


def _workloads(quick: bool, rule_off: bool):
    """{name: (ours, peer or None, accuracy note)}, built in the child."""
    import copy
    import warnings

    import torch

    import linalg_core as lc
    from linalg_core.testing import with_spectrum

    r = 32
    A = with_spectrum(2048, 512, torch.logspace(0, -3, 512), seed=0).float()
    s = torch.linalg.svdvals(A.double())
    opt = float((s[r:] ** 2).sum().sqrt())

    def resid(U, S, Vh):
        return f"{lc.svd_error(A, U, S, Vh) / opt:.4f}"

    def peer_rsvd():
        U, S, V = torch.svd_lowrank(A, q=r + 10, niter=4)
        return U[:, :r], S[:r], V[:, :r].T

    out = {"rsvd 2048x512 r=32": (lambda: lc.rsvd(A, r, seed=0), peer_rsvd,
                                  lambda o, p: f"resid ratio ours {resid(*o)}, peer {resid(*p)}")}
    from linalg_core.bench.harness import minilm_available

    try:
        import peft

        from linalg_core.testing.models import minilm_inputs, minilm_model
    except ImportError:
        return out
    if not minilm_available():
        return out
    base = minilm_model()
    targets = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]

    def config(init, rank=16):
        return peft.LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights=init)

    def ours_pissa():
        model = peft.get_peft_model(copy.deepcopy(base), config(True))
        lc.adapters.init_peft_model(model, "pissa", seed=0, progress=False)

    out["PiSSA MiniLM-L6 r=16"] = (ours_pissa, lambda: peft.get_peft_model(copy.deepcopy(base), config("pissa_niter_4")),
                                   None)
    batches = [minilm_inputs(batch=8, length=64, seed=i) for i in range(2)]

    def ours_eva():
        model = peft.get_peft_model(copy.deepcopy(base), config(True, 8))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lc.adapters.init_peft_model(model, lc.adapters.EVAConfig(batches, rho=2.0, tau=1.0, seed=0), progress=False)

    out[f"EVA MiniLM-L6 r=8, {len(batches)} batches"] = (ours_eva, None, None)
    if rule_off:
        from linalg_core import _threads

        def ours_eva_policy_off():  # every update on all threads: the library before the one-thread rule
            saved, _threads.ONE_THREAD_WORK = _threads.ONE_THREAD_WORK, 0
            try:
                ours_eva()
            finally:
                _threads.ONE_THREAD_WORK = saved

        out[f"EVA MiniLM-L6 r=8, {len(batches)} batches, one-thread rule off"] = (ours_eva_policy_off, None, None)
    return out


def _child(quick: bool, rounds: int, rule_off: bool) -> dict:
    """Median seconds of every workload, quiet and contended, rounds interleaved."""
    loads = _workloads(quick, rule_off)
    times = {(name, who, busy): [] for name in loads for who in ("ours", "peer") for busy in (0, 1)}
    notes = {}
    for name, (ours, peer, acc) in loads.items():  # warm-up (imports, allocator, first-call costs)
        if name.endswith("rule off"):
            continue  # the same code as the EVA row just warmed up
        o = ours()
        if peer is not None:
            p = peer()
            if acc is not None:
                notes[name] = acc(o, p)
    for _ in range(rounds):
        for busy in (0, 1):
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                time.sleep(0.2)
                for name, (ours, peer, _) in loads.items():
                    for who, fn in (("ours", ours), ("peer", peer)):
                        if fn is None:
                            continue
                        t0 = time.perf_counter()
                        fn()
                        times[name, who, busy].append(time.perf_counter() - t0)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    import torch

    return {"threads": torch.get_num_threads(), "notes": notes,
            "times": [[n, w, b, statistics.median(v)] for (n, w, b), v in times.items() if v]}


def run(report, quick: bool = False):
    import torch

    from linalg_core.bench.harness import MINILM_MISSING, minilm_available

    rounds = 1 if quick else 2
    threads = torch.get_num_threads()
    if report.peer("peft", what="the PiSSA workload") is not None and not minilm_available():
        report.note(MINILM_MISSING + " (the PiSSA workload)")
    results, runs = {}, {}
    # Settings interleaved too: round i of every setting, then round i + 1, so that the load of
    # other processes on the machine drifts alike for all of them.
    for _ in range(rounds):
        for label, env in SETTINGS.items():
            child_env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
            child_env.update(env)
            child_env.setdefault("OMP_NUM_THREADS", str(threads))
            args = {"quick": quick, "rounds": 1, "rule_off": label == "default" and threads > 1}
            proc = subprocess.run([sys.executable, "-m", "linalg_core.bench.threads", json.dumps(args)], env=child_env, capture_output=True,
                                  text=True, timeout=600)
            if proc.returncode != 0:
                report.note(f"setting {label!r} failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            runs.setdefault(label, []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for label, rs in runs.items():
        samples = {}
        for res in rs:
            for n, w, b, sec in res["times"]:
                samples.setdefault((n, w, b), []).append(sec)
        results[label] = {"threads": rs[0]["threads"], "notes": rs[0]["notes"],
                          "times": [[n, w, b, statistics.median(v)] for (n, w, b), v in samples.items()]}
    if not results:
        return
    t = {(label, n, w, b): s for label, res in results.items() for n, w, b, s in res["times"]}
    names = list(dict.fromkeys(n for (_, n, _, _) in t))
    for name in names:
        for label, res in results.items():
            q, c = t.get((label, name, "ours", 0)), t.get((label, name, "ours", 1))
            if q is None:
                continue
            pq, pc = t.get((label, name, "peer", 0)), t.get((label, name, "peer", 1))
            row = {"workload": name, "setting": label, "threads": res["threads"],
                   "ours quiet ms": q * 1e3, "ours contended ms": c * 1e3, "ours slowdown": c / q}
            if pq is not None:
                row.update({"peer quiet ms": pq * 1e3, "peer contended ms": pc * 1e3, "peer slowdown": pc / pq,
                            "peer/ours quiet": pq / q, "peer/ours contended": pc / c})
            d = t.get(("default", name, "ours", 1))
            if d is not None:
                row["contended: default/this"] = d / c
            report.add(**row)
    for name in names:
        if name.endswith("rule off"):
            on = name[: -len(", one-thread rule off")]
            for busy, what in ((0, "quiet"), (1, "contended")):
                a, b = t.get(("default", name, "ours", busy)), t.get(("default", on, "ours", busy))
                if a is not None and b is not None:
                    report.note(f"{on}, default settings, {what}: the one-thread rule for small calls makes it "
                                f"{a / b:.2f}x faster than every update on all threads (same child process)")
    for name, acc in next(iter(results.values()))["notes"].items():
        report.note(f"{name}: {acc}")
    report.note("contended = one extra process spinning on one core, started for half of every round; each "
                f"round of each setting is a fresh child process, settings and rounds interleaved (medians of {rounds}). "
                "Other processes may share the machine: compare rows of the same run only.")


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    print(json.dumps(_child(args["quick"], args["rounds"], args["rule_off"])))
