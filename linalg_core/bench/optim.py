"""bench optim: GaLore's basis update — linalg_core's warm-started subspace iteration
(:class:`linalg_core.optim.LowRankProjector`) vs galore-torch's full ``torch.linalg.svd`` — on
LLaMA-sized gradients (4096², 4096 × 11008) and MiniLM-L6's real layer gradients, at equal
subspace quality (gradient energy captured by the basis relative to the exact top-r singular
vectors); and a short real fine-tune of MiniLM-L6 (contrastive loss between adjacent sentences of
the Python Language Reference) with GaLoreAdamW, ours vs galore-torch: loss curves
(benchmarks/optim_finetune.png), wall time, optimizer-state memory."""

from __future__ import annotations

import time

import torch

from linalg_core.bench.harness import measure, minilm_available
from linalg_core.optim import GaLoreAdamW, LowRankProjector
from linalg_core.optim.finetune import drifting_gradients


def _energy(G, low) -> float:
    return float(low.double().square().sum())


def _update_row(report, name, G1, G2, r, repeats):
    from galore_torch.galore_projector import GaLoreProjector

    def ours_update():
        p = LowRankProjector(r, 1, seed=0)
        p.load_state_dict(base_state)
        p.project(G2, 1)
        return p

    base = LowRankProjector(r, 1, seed=0)
    base.project(G1, 0)
    base_state = base.state_dict()
    t_ours = measure(ours_update, repeats=repeats, warmup=1, budget_s=30)
    proj = ours_update()
    theirs = GaLoreProjector(r, update_proj_gap=1)
    if G2.numel() > 2**22:  # one full SVD takes seconds to minutes: timed once
        t0 = time.perf_counter()
        theirs.project(G2, 0)
        svd_s = time.perf_counter() - t0
    else:
        svd_s = measure(lambda: theirs.project(G2, 0), repeats=repeats, warmup=1, budget_s=30).median
    low_ours = G2 @ proj.ortho.mT if G2.shape[0] >= G2.shape[1] else proj.ortho.mT @ G2
    low_svd = theirs.project(G2, 1)  # the basis of the last SVD
    quality = _energy(G2, low_ours) / _energy(G2, low_svd)
    report.add(case=name, shape=f"{G2.shape[0]}x{G2.shape[1]}", rank=r, ours_ms=t_ours.median * 1e3,
               galore_svd_ms=svd_s * 1e3, speedup=svd_s / t_ours.median, passes=proj.last_passes,
               energy_vs_exact=quality, energy_deficit=1 - quality)


def _state_bytes(opt) -> int:
    total = 0
    for st in opt.state.values():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                total += v.numel() * v.element_size()
            elif k == "projector":
                ortho = v["ortho"] if isinstance(v, dict) else v.ortho_matrix
                for t in ortho if isinstance(ortho, (list, tuple)) else [ortho]:
                    if isinstance(t, torch.Tensor):
                        total += t.numel() * t.element_size()
    return total


def _finetune(make_opt, steps, batches, held_out, seed=0):
    from linalg_core.optim.finetune import contrastive_loss, minilm_model

    torch.manual_seed(seed)
    model = minilm_model()
    model.train()
    for p in model.embeddings.parameters():  # frozen: the encoder is what the comparison is about
        p.requires_grad_(False)
    opt = make_opt(model)
    model.eval()
    with torch.no_grad():
        before = sum(contrastive_loss(model, b).item() for b in held_out) / len(held_out)
    model.train()
    losses, opt_time = [], 0.0
    t0 = time.perf_counter()
    for step in range(steps):
        torch.manual_seed(seed + step)  # the same dropout masks for both optimizers
        b = batches[step % len(batches)]
        loss = contrastive_loss(model, b)
        opt.zero_grad()
        loss.backward()
        t1 = time.perf_counter()
        opt.step()
        opt_time += time.perf_counter() - t1
        losses.append(loss.item())
    wall = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        held = sum(contrastive_loss(model, b).item() for b in held_out) / len(held_out)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return losses, wall, opt_time, _state_bytes(opt), trainable, (before, held)


def _plot(curves, path, title, w):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, losses in curves.items():
        smooth = [sum(losses[max(0, i - w + 1):i + 1]) / len(losses[max(0, i - w + 1):i + 1])
                  for i in range(len(losses))]
        ax.plot(smooth, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss (mean over the last {w} steps)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(report, quick: bool) -> None:
    if report.peer("galore_torch", what="every row (the comparison needs the peer)",
                   install="--no-deps galore-torch") is None:
        return
    r = 32 if quick else 128
    shapes = [(512, 512), (512, 1376)] if quick else [(4096, 4096), (4096, 11008)]
    for m, n in shapes:
        G1, G2 = drifting_gradients(m, n, r)
        _update_row(report, "synthetic drifting gradient (σ_i = 1/i)", G1, G2, r, 3)
        del G1, G2
    if not minilm_available():
        report.note("MiniLM-L6 not installed: no real-gradient rows, no fine-tune")
        return
    from linalg_core.optim.finetune import galore_param_groups, minilm_gradients, sentence_batches

    grads = minilm_gradients(batches=2, layer=1, pairs_per_batch=8, length=16)
    for name, (G1, G2) in list(grads.items())[: 2 if quick else None]:
        _update_row(report, "MiniLM-L6 " + name.replace("encoder.layer.", "layer "), G1, G2, 64, 3 if quick else 7)
    report.note("energy_vs_exact: gradient energy ‖QᵀG‖²_F captured by our basis / by galore-torch's exact "
                "top-r singular vectors (1.0 = equal quality); ours_ms: one warm-started update from the previous "
                "basis (the gradient before the gap); speedup = galore_svd_ms / ours_ms.")

    steps = 6 if quick else 300
    length = 16
    batches = sentence_batches(pairs_per_batch=8, length=length, count=128 if quick else 1024)
    batches, held_out = batches[:-4], batches[-4:]
    cfg = {"rank": 32, "update_proj_gap": 50 if not quick else 5, "scale": 0.25}
    lr = 1e-4

    import galore_torch
    import warnings

    def ours(model):
        return GaLoreAdamW(galore_param_groups(model, **cfg), lr=lr, seed=0)

    def theirs(model):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return galore_torch.GaLoreAdamW(galore_param_groups(model, **cfg), lr=lr)

    curves = {}
    for label, make in (("linalg_core GaLoreAdamW", ours), ("galore-torch GaLoreAdamW", theirs)):
        losses, wall, opt_s, state, trainable, held = _finetune(make, steps, batches, held_out)
        curves[label] = losses
        k = max(1, steps // 10)
        report.add(case=f"fine-tune MiniLM-L6 {steps} steps ({label})", rank=cfg["rank"],
                   update_proj_gap=cfg["update_proj_gap"], wall_s=wall, optimizer_s=opt_s,
                   loss_first10=sum(losses[:k]) / k, loss_last10=sum(losses[-k:]) / k,
                   held_out_before=held[0], held_out_after=held[1],
                   optimizer_state_MiB=state / 2**20, adamw_state_MiB=8 * trainable / 2**20)
    report.note(f"fine-tune: MiniLM-L6 (all 36 encoder Linear weights in the GaLore group, rank {cfg['rank']}, "
                f"gap {cfg['update_proj_gap']}, scale {cfg['scale']}; biases, norms and the pooler plain AdamW; "
                f"embeddings frozen), lr {lr}, "
                f"{len(batches)} training batches of 8 adjacent sentence pairs of the Python Language Reference "
                "(4 more held out: their loss before and after training, eval mode), "
                f"sequence length {length}, contrastive (InfoNCE) loss, the same dropout masks for both; "
                "loss_first10 / loss_last10: mean loss over the first / last tenth of the steps; "
                "optimizer_state_MiB: moments and projector bases held; adamw_state_MiB: full-rank AdamW's two "
                "float32 moments for the same trainable parameters.")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        report.note("loss-curve plot skipped: matplotlib is not installed")
        return
    if report.out_dir is not None:
        path = report.out_dir / ("optim_finetune_quick.png" if quick else "optim_finetune.png")
        _plot(curves, path, f"MiniLM-L6 contrastive fine-tune, GaLoreAdamW rank {cfg['rank']}, "
                            f"gap {cfg['update_proj_gap']}: linalg_core vs galore-torch", min(20, len(batches)))
        report.note(f"loss curves: {path.name}")
