"""The NADA twin generator: one mapping network shared by a frozen and a trainable synthesis
network, so both twins see the same w and the same noise for every sample."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import CheckpointError
from ..layer_groups import block_resolution
from ..networks import Generator, LayerRef


class TwinGenerator(nn.Module):
    """``mapping`` (shared, frozen), ``frozen`` synthesis (eval, no grad) and ``trainable``
    synthesis (a copy of the frozen one, or ``train_synthesis``). Nothing is trainable until the
    caller switches layers on (see :func:`nada.adapt.layers.set_trainable`)."""

    def __init__(self, G: Generator, train_synthesis: nn.Module | None = None):
        super().__init__()
        self.cfg = G.cfg
        self.num_ws = G.num_ws
        self.z_dim = G.z_dim
        self.mapping = G.mapping
        self.frozen = G.synthesis
        if train_synthesis is None:
            train_synthesis = copy.deepcopy(G.synthesis)
        a = {k: tuple(v.shape) for k, v in self.frozen.state_dict().items()}
        b = {k: tuple(v.shape) for k, v in train_synthesis.state_dict().items()}
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise CheckpointError(
                f"the trainable generator's synthesis does not match the frozen one (first difference: {diff[0]})",
                "--train-generator must have the same architecture as --generator",
            )
        self.trainable = train_synthesis
        for module in (self.mapping, self.frozen, self.trainable):
            module.requires_grad_(False)
        self.mapping.eval()
        self.frozen.eval()
        self.trainable.eval()  # no train-time behaviour in StyleGAN2 layers; keep eval everywhere

    def train(self, mode: bool = True) -> "TwinGenerator":
        """The twins have no train/eval differences; keep every part in eval mode."""
        return self

    def layers(self) -> list[LayerRef]:
        """The trainable synthesis network's named layers."""
        return self.trainable.layers()

    @torch.no_grad()
    def sample_ws(
        self,
        batch: int,
        generator: torch.Generator,
        mixing_prob: float = 0.0,
        truncation_psi: float = 1.0,
    ) -> torch.Tensor:
        """ws [batch, num_ws, w_dim] from z drawn with ``generator`` (z → w once, for both twins)."""
        return _sample_ws(self.mapping, self.num_ws, self.z_dim, batch, generator, mixing_prob, truncation_psi)

    def make_noise(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One noise draw shared by both twins."""
        return self.frozen.make_noise(batch, generator=generator, device=self.mapping.w_avg.device)

    def forward_frozen(self, ws: torch.Tensor, noise: dict | None = None, noise_mode: str = "const") -> torch.Tensor:
        with torch.no_grad():
            return self.frozen(ws, noise_mode=noise_mode, noise=noise)

    def forward_trainable(self, ws: torch.Tensor, noise: dict | None = None, noise_mode: str = "const") -> torch.Tensor:
        return self.trainable(ws, noise_mode=noise_mode, noise=noise)

    def shared_until(self, learnable: list[str]) -> int | None:
        """The highest block resolution up to which both twins are equal and stay so, given the
        names of the layers that may learn (``None`` if there is no such block): the blocks below
        the lowest learnable layer (and below the last block) whose parameters and buffers match
        exactly."""
        lowest = min((block_resolution(name) for name in learnable), default=None)
        shared = None
        for res in self.frozen.block_resolutions:
            if (lowest is not None and res >= lowest) or res == self.frozen.img_resolution:
                break
            if not _same_tensors(getattr(self.frozen, f"b{res}"), getattr(self.trainable, f"b{res}")):
                break
            shared = res
        return shared

    def forward_pair(self, ws: torch.Tensor, noise: dict | None = None, shared: int | None = None,
                     noise_mode: str = "const", trainable=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(frozen image, trainable image) for the same ``ws`` and ``noise``. With ``shared``
        (from :meth:`shared_until`) the blocks up to that resolution run once, for both: the
        same values as two full forwards, less work. ``trainable``: what runs the trainable
        synthesis (its DistributedDataParallel wrapper), default the module itself."""
        run = trainable if trainable is not None else self.trainable
        if shared is None:
            return self.forward_frozen(ws, noise, noise_mode), run(ws, noise_mode=noise_mode, noise=noise)
        with torch.no_grad():
            state = self.frozen.forward_to(ws, shared, noise_mode=noise_mode, noise=noise)
            frozen_img = self.frozen(ws, noise_mode=noise_mode, noise=noise, start=state)
        return frozen_img, run(ws, noise_mode=noise_mode, noise=noise, start=state)

    def generator(self, which: str = "trainable") -> Generator:
        """A :class:`Generator` view (shared modules, no copies) of one twin, for saving/eval."""
        with torch.device("meta"):
            G = Generator(self.cfg)
        G.mapping = self.mapping
        G.synthesis = self.trainable if which == "trainable" else self.frozen
        return G.eval()


def _same_tensors(a: nn.Module, b: nn.Module) -> bool:
    """Every parameter and buffer (persistent or not) of ``a`` equals ``b``'s, by name."""
    ta = {**dict(a.named_parameters()), **dict(a.named_buffers())}
    tb = {**dict(b.named_parameters()), **dict(b.named_buffers())}
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def _sample_ws(mapping, num_ws, z_dim, batch, generator, mixing_prob, truncation_psi) -> torch.Tensor:
    dev = mapping.w_avg.device
    gdev = generator.device
    z = torch.randn(batch, z_dim, generator=generator, device=gdev).to(dev)
    ws = mapping(z, truncation_psi)
    if mixing_prob <= 0:
        return ws
    z2 = torch.randn(batch, z_dim, generator=generator, device=gdev).to(dev)
    ws2 = mapping(z2, truncation_psi)
    cut = torch.randint(1, num_ws, (batch,), generator=generator, device=gdev).to(dev)
    mix = torch.rand(batch, generator=generator, device=gdev).to(dev) < mixing_prob
    cut = torch.where(mix, cut, torch.full_like(cut, num_ws))
    take_a = torch.arange(num_ws, device=dev)[None, :] < cut[:, None]
    return torch.where(take_a[:, :, None], ws, ws2)
