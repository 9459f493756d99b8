"""``scripts/supervised_bound.py``: fitting the named layers to exact renders moves only those
layers and brings the trained twin's images closer to the renders of the same latents."""

from __future__ import annotations

import supervised_bound as sb
import torch

from nada.adapt.layers import manual_layers
from nada.adapt.twin import TwinGenerator
from nada.checkpoints import load_generator
from nada.hub import resolve_generator
from nada.shapes.generator_factors import render_from_z
from nada.shapes.renderer import to_tensor


def test_fit_moves_only_named_layers_toward_the_renders():
    twin = TwinGenerator(load_generator(resolve_generator(None)).generator)
    before = {k: v.clone() for k, v in twin.trainable.state_dict().items()}
    z = torch.randn(16, twin.z_dim, generator=torch.Generator().manual_seed(99))
    target = to_tensor(render_from_z(z, "sketch"))

    def error() -> float:
        with torch.no_grad():
            return (twin.forward_trainable(twin.mapping(z, 1.0)) - target).pow(2).mean().item()

    start = error()
    names = manual_layers("texture", twin.layers(), 64)
    history = sb.fit(twin, "sketch", names, iters=40, batch=4, lr=0.04, loss="l2", seed=0, quiet=True)
    assert len(history) == 40 and error() < 0.7 * start
    changed = {k.split(".")[0] for k, v in twin.trainable.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"b64"}
    assert not any(p.requires_grad for p in twin.trainable.parameters())
    frozen = twin.frozen.state_dict()
    assert all(torch.equal(frozen[k], before[k]) for k in frozen)
