"""Training a TopK sparse autoencoder (Gao et al. 2024) on activation rows, with torch (the ``training`` extra).

The recipe: decoder rows of unit norm (renormalised after every step), the encoder started as the decoder's
transpose, ``b_dec`` started at the data's mean; inputs divided by one scale (their RMS distance from the
mean, per dimension) while training and the scale folded back into the weights at the end, so the saved SAE
reads raw activations; the loss is the normalised reconstruction error plus the **AuxK** term against dead
latents: the error left by the top ``k`` is reconstructed by the top ``k_aux`` latents among those that have
not fired for ``dead_after`` rows, weighted ``aux_coef`` (1/32). Adam, a constant learning rate with a linear
decay over the last fifth.

    sae, log = mglab.sae.train(x, k=32, d_sae=1024, hook_name="decoder.layers.2.hook_resid_post", steps=3000)
    mglab.sae.save(sae, "sae/decoder.layers.2.hook_resid_post")
"""

from __future__ import annotations

import numpy as np


def _topk(h, k: int):
    """``[N, d_sae]``: the ``k`` largest of each row, ReLU'd, the rest 0."""
    import torch

    vals, idx = h.topk(k, dim=-1)                                          # [N, k]
    return torch.zeros_like(h).scatter(-1, idx, vals.relu())


def train(x, *, k: int, d_sae: int, steps: int = 3000, batch_size: int = 1024, lr: float = 1e-3,
          aux_coef: float = 1 / 32, dead_after: int = 50_000, seed: int = 0, log_every: int = 250,
          progress=None) -> tuple[dict, dict, list[dict]]:
    """Train on ``x [rows, d_in]``; returns the weights (``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``, for raw
    activations), the training settings and a log (``step``, ``mse`` normalised, ``aux``, ``dead`` share)
    every ``log_every`` steps. :func:`mglab.inspect.sae.train` wraps them in an SAE."""
    import torch

    torch.manual_seed(seed)
    x = torch.from_numpy(np.array(x, dtype=np.float32))                     # [rows, d_in], a writable copy
    rows, d_in = x.shape
    mean = x.mean(0)                                                        # [d_in]
    scale = float(((x - mean) ** 2).mean().sqrt())
    data = x / scale                                                        # [rows, d_in]
    w = torch.randn(d_sae, d_in)
    w_dec = torch.nn.Parameter(w / w.norm(dim=1, keepdim=True))             # [d_sae, d_in]
    w_enc = torch.nn.Parameter(w_dec.detach().T.clone())                    # [d_in, d_sae]
    b_enc = torch.nn.Parameter(torch.zeros(d_sae))
    b_dec = torch.nn.Parameter(mean / scale)
    params = [w_enc, b_enc, w_dec, b_dec]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    decay_from = int(0.8 * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 1.0 if s < decay_from else max(0.0, (steps - s) / max(1, steps - decay_from)))
    since_fired = torch.zeros(d_sae)                                        # rows since each latent fired
    k_aux = max(1, d_in // 2)
    gen = torch.Generator().manual_seed(seed)
    log = []
    for step in range(steps):
        xb = data[torch.randint(0, rows, (batch_size,), generator=gen)]     # [N, d_in]
        h = (xb - b_dec) @ w_enc + b_enc                                    # [N, d_sae]
        z = _topk(h, k)                                                     # [N, d_sae]
        recon = z @ w_dec + b_dec                                           # [N, d_in]
        err = xb - recon                                                    # [N, d_in]
        var = ((xb - xb.mean(0)) ** 2).sum(-1).mean()
        mse = (err ** 2).sum(-1).mean() / var
        fired = (z > 0).any(0)                                              # [d_sae]
        since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + batch_size)
        dead = since_fired >= dead_after                                    # [d_sae]
        aux = torch.zeros(())
        if dead.any():
            hd = h.masked_fill(~dead, float("-inf"))                        # only dead latents compete
            za = _topk(hd, min(k_aux, int(dead.sum())))                     # [N, d_sae]
            za = torch.nan_to_num(za, neginf=0.0)
            aux = ((err.detach() - za @ w_dec) ** 2).sum(-1).mean() / var
        loss = mse + aux_coef * aux
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():                                               # no gradient along each row's norm
            w_dec.grad -= (w_dec.grad * w_dec).sum(-1, keepdim=True) * w_dec
        opt.step()
        sched.step()
        with torch.no_grad():
            w_dec /= w_dec.norm(dim=1, keepdim=True)
        if step % log_every == 0 or step == steps - 1:
            log.append({"step": step, "mse": mse.item(), "aux": aux.item(), "dead": dead.float().mean().item()})
            if progress:
                progress(log[-1])
    with torch.no_grad():                                                   # fold the scale into the weights
        weights = {"W_enc": w_enc / scale, "b_enc": b_enc, "W_dec": w_dec * scale, "b_dec": b_dec * scale}
        weights = {n: v.numpy().astype(np.float32) for n, v in weights.items()}
    settings = {"rows": int(rows), "steps": steps, "batch_size": batch_size, "lr": lr, "aux_coef": aux_coef,
                "dead_after": dead_after, "seed": seed, "input_scale": scale, "final": log[-1] if log else None}
    return weights, settings, log
