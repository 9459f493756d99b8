"""The levels mapper (after StyleCLIP): one small MLP per level of W+ (coarse, medium, fine)
that proposes an edit ``M(w)``; the edited latent is ``w + strength · M(w)``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from ..layer_groups import MAPPER_LEVELS, mapper_slices, num_ws as num_ws_for
from ..networks.layers import FullyConnectedLayer, assert_shape, normalize_2nd_moment

DEFAULT_STRENGTH = 0.1  # StyleCLIP / StyleGAN-NADA's edit scale


@dataclass(frozen=True)
class MapperArch:
    """The shape of a levels mapper; stored in every mapper file."""

    img_resolution: int                      # of the generator it edits (fixes the level slices)
    w_dim: int                               # width of one W row
    num_ws: int                              # W+ rows of that generator
    levels: tuple[str, ...] = MAPPER_LEVELS  # levels that edit; the others leave their rows alone
    n_layers: int = 4                        # linear layers per sub-mapper (StyleCLIP: 4)
    lr_multiplier: float = 0.01              # equalised-lr multiplier of those layers (StyleCLIP: 0.01)
    slices: dict[str, tuple[int, int]] = field(init=False)  # level → W+ rows, from layer_groups

    def __post_init__(self) -> None:
        levels = tuple(str(v).strip() for v in self.levels)
        unknown = [v for v in levels if v not in MAPPER_LEVELS]
        if unknown or not levels or len(set(levels)) != len(levels):
            raise ConfigError(f"mapper levels {list(self.levels)}",
                              f"choose one or more of {', '.join(MAPPER_LEVELS)}, each once")
        object.__setattr__(self, "levels", tuple(v for v in MAPPER_LEVELS if v in levels))
        if num_ws_for(self.img_resolution) != self.num_ws:
            raise ConfigError(f"a {self.img_resolution}px generator has {num_ws_for(self.img_resolution)} ws, "
                              f"not {self.num_ws}")
        if self.w_dim < 1 or self.n_layers < 1 or not self.lr_multiplier > 0:
            raise ConfigError(f"bad mapper shape w_dim={self.w_dim} n_layers={self.n_layers} "
                              f"lr_multiplier={self.lr_multiplier}")
        object.__setattr__(self, "slices", mapper_slices(self.img_resolution))
        empty = [v for v in self.levels if self.slices[v][0] == self.slices[v][1]]
        if len(empty) == len(self.levels):
            raise ConfigError(f"levels {list(self.levels)} hold no W+ rows in a {self.img_resolution}px generator",
                              "switch on the coarse level")

    @classmethod
    def for_generator(cls, G, levels=MAPPER_LEVELS, **kw) -> "MapperArch":
        return cls(int(G.img_resolution), int(G.w_dim), int(G.num_ws), tuple(levels), **kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["levels"] = list(self.levels)
        d.pop("slices")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MapperArch":
        from ..errors import reject_unknown_keys

        d = {k: v for k, v in d.items() if k != "slices"}
        reject_unknown_keys(cls, d, "mapper architecture keys")
        return cls(**{**d, "levels": tuple(d.get("levels", MAPPER_LEVELS))})


class SubMapper(nn.Module):
    """Pixel norm, then ``n_layers`` equalised-lr linear layers w_dim → w_dim with leaky ReLU."""

    def __init__(self, w_dim: int, n_layers: int, lr_multiplier: float):
        super().__init__()
        self.layers = nn.ModuleList(
            FullyConnectedLayer(w_dim, w_dim, activation="lrelu", lr_multiplier=lr_multiplier)
            for _ in range(n_layers))

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # [N, w_dim] → [N, w_dim]
        x = normalize_2nd_moment(w, dim=1)
        for layer in self.layers:
            x = layer(x)
        return x


class LevelsMapper(nn.Module):
    """One :class:`SubMapper` per switched-on, non-empty level; ``forward(ws)`` is the edit
    direction ``M(ws)`` (zero on the rows of switched-off levels)."""

    def __init__(self, arch: MapperArch):
        super().__init__()
        self.arch = arch
        self.mappers = nn.ModuleDict({
            level: SubMapper(arch.w_dim, arch.n_layers, arch.lr_multiplier)
            for level in arch.levels if arch.slices[level][0] < arch.slices[level][1]})

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        a = self.arch
        assert_shape(ws, [None, a.num_ws, a.w_dim], "LevelsMapper ws")
        n = ws.shape[0]
        parts = []
        for level in MAPPER_LEVELS:
            lo, hi = a.slices[level]
            if hi == lo:
                continue
            rows = ws[:, lo:hi]
            if level in self.mappers:
                rows = self.mappers[level](rows.reshape(-1, a.w_dim)).reshape(n, hi - lo, a.w_dim)
            else:
                rows = torch.zeros_like(rows)
            parts.append(rows)
        return torch.cat(parts, dim=1)

    def edit(self, ws: torch.Tensor, strength: float = DEFAULT_STRENGTH) -> torch.Tensor:
        """``ws + strength · M(ws)``: the edited W+ latents."""
        if strength == 0:
            return ws
        return ws + strength * self(ws)
