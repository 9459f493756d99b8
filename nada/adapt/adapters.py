"""Domain adapters: a new domain as a few thousand numbers on top of a frozen generator.

Both kinds act on the style vector ``s`` of a layer (its affine output, before ToRGB's weight
gain), per input channel of the layer's conv:

- ``stylespace`` (StyleDomain): ``s' = s + offset``, offsets initialised to 0;
- ``modulation`` (HyperDomainNet): a multiplier per input channel of the conv weight,
  initialised to 1. A modulated conv uses ``weight[o, i] · s[i]``, so scaling the weight's input
  channel ``i`` by ``m[i]`` is exactly ``s' = s · m`` (demodulation included); the multiplier is
  learnt as ``log m`` so that it stays positive and domains combine in log space.

Several weighted domains compose as ``s' = s · Π m_k^{w_k} + Σ w_k · offset_k``: offsets are
directions in StyleSpace and add (StyleDomain's domain arithmetic); multipliers are scales, and
``Π m^w = exp(Σ w · log m)`` makes weight 0 the identity, weight 1 the domain itself and a
negative weight the inverse scale, for any weights (a weighted sum of raw multipliers would
rescale a channel by the number of domains). :func:`bake` folds a composition into the
generator's own weights (multiplier → conv weight, offset → affine bias), so a baked generator
renders what the adapters render on the fly.

Adapters attach to a synthesis network with forward hooks on the layers' ``affine`` modules: the
network's parameters and state dict stay the base generator's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError

ADAPTERS = ("full", "stylespace", "modulation")
ADAPTER_KINDS = ("stylespace", "modulation")  # the kinds that make a domain file
TENSOR_SUFFIX = {"stylespace": "offset", "modulation": "multiplier"}


def styled_layers(synthesis: nn.Module) -> dict[str, nn.Module]:
    """Layer name → layer (SynthesisLayer or ToRGBLayer) of a synthesis network."""
    return {ref.name: ref.module for ref in synthesis.layers()}


def style_channels(synthesis: nn.Module, names: Iterable[str]) -> dict[str, int]:
    """Layer name → length of its style vector (the conv's input channels)."""
    layers = styled_layers(synthesis)
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise ConfigError(f"no styled layer named {unknown[0]!r}", f"layers: {', '.join(layers)}")
    return {n: int(layers[n].affine.weight.shape[0]) for n in names}


def _key(name: str) -> str:
    return name.replace(".", "_")  # ParameterDict keys cannot hold dots


class StyleAdapter(nn.Module):
    """Learnable per-channel offsets (``stylespace``) or log-multipliers (``modulation``) for the
    named layers. ``transform(name, s)`` applies it; :meth:`attach` makes a synthesis network
    apply it on every forward."""

    def __init__(self, kind: str, channels: dict[str, int], device: torch.device | str | None = None):
        super().__init__()
        if kind not in ADAPTER_KINDS:
            raise ConfigError(f"unknown adapter {kind!r}", f"choose one of {', '.join(ADAPTERS)}")
        if not channels:
            raise ConfigError(f"the {kind} adapter has no layer to adapt", "select conv layers with --layers")
        self.kind = kind
        self.names = list(channels)
        self.params = nn.ParameterDict({
            _key(n): nn.Parameter(torch.zeros(c, device=device)) for n, c in channels.items()})
        self._handles: list = []

    @classmethod
    def for_layers(cls, kind: str, synthesis: nn.Module, names: Sequence[str]) -> "StyleAdapter":
        dev = next(synthesis.parameters()).device
        return cls(kind, style_channels(synthesis, names), device=dev)

    def parameter(self, name: str) -> nn.Parameter:
        return self.params[_key(name)]

    def numel(self) -> int:
        return sum(p.numel() for p in self.params.values())

    # -- the domain's numbers -------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """What a domain file stores: layer name → offset, or → multiplier (``exp`` of the
        learnt log)."""
        out = {}
        for n in self.names:
            p = self.parameter(n).detach()
            out[n] = p.exp() if self.kind == "modulation" else p.clone()
        return out

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """The inverse of :meth:`tensors` (multipliers must be positive)."""
        with torch.no_grad():
            for n in self.names:
                t = tensors[n].to(self.parameter(n))
                self.parameter(n).copy_(t.log() if self.kind == "modulation" else t)

    # -- applying -------------------------------------------------------------------------
    def transform(self, name: str, styles: torch.Tensor) -> torch.Tensor:
        p = self.parameter(name).to(styles.dtype)
        return styles * p.exp() if self.kind == "modulation" else styles + p

    def set_learnable(self, names: Iterable[str]) -> list[nn.Parameter]:
        """Only the adapters of ``names`` receive gradients (the layer search's choice)."""
        wanted = set(names)
        out = []
        for n in self.names:
            p = self.parameter(n)
            p.requires_grad_(n in wanted)
            if n in wanted:
                out.append(p)
        return out

    def attach(self, synthesis: nn.Module) -> "StyleAdapter":
        """Apply this adapter inside ``synthesis`` (hooks on the named layers' affines)."""
        self.detach()
        layers = styled_layers(synthesis)
        for n in self.names:
            self._handles.append(layers[n].affine.register_forward_hook(_hook(self.transform, n)))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _hook(fn, name):
    def hook(module, inputs, output):
        return fn(name, output)
    return hook


# --- composing and baking fixed domains ------------------------------------------------------

@dataclass(frozen=True)
class Domain:
    """One domain's numbers: ``kind``, and per layer an offset or a multiplier."""

    kind: str
    tensors: dict[str, torch.Tensor]


@dataclass(frozen=True)
class StyleEdit:
    """The composition of weighted domains, per layer: ``s' = s · scale + shift``."""

    scale: dict[str, torch.Tensor]
    shift: dict[str, torch.Tensor]

    def transform(self, name: str, styles: torch.Tensor) -> torch.Tensor:
        if name in self.scale:
            styles = styles * self.scale[name].to(styles)
        if name in self.shift:
            styles = styles + self.shift[name].to(styles)
        return styles

    def names(self) -> list[str]:
        return sorted(set(self.scale) | set(self.shift))


def compose(domains: Sequence[tuple[Domain, float]]) -> StyleEdit:
    """``s · Π m_k^{w_k} + Σ w_k · offset_k`` (see the module docstring for why)."""
    log_scale: dict[str, torch.Tensor] = {}
    shift: dict[str, torch.Tensor] = {}
    for domain, weight in domains:
        for name, t in domain.tensors.items():
            t = t.detach().float()
            if domain.kind == "modulation":
                if not bool((t > 0).all()):
                    raise ConfigError(f"modulation domain has a multiplier <= 0 at {name}",
                                      "multipliers must be positive (the file is damaged)")
                log_scale[name] = log_scale.get(name, 0) + weight * t.log()
            elif domain.kind == "stylespace":
                shift[name] = shift.get(name, 0) + weight * t
            else:
                raise ConfigError(f"unknown domain kind {domain.kind!r}", f"kinds: {', '.join(ADAPTER_KINDS)}")
    return StyleEdit({n: v.exp() for n, v in log_scale.items()}, shift)


class AppliedEdit:
    """A :class:`StyleEdit` hooked into a synthesis network (``remove()`` takes it out)."""

    def __init__(self, edit: StyleEdit, synthesis: nn.Module):
        layers = styled_layers(synthesis)
        missing = [n for n in edit.names() if n not in layers]
        if missing:
            raise ConfigError(f"the domain adapts layer {missing[0]!r}, which this generator does not have",
                              "use the domain with the generator it was trained on")
        self.handles = [layers[n].affine.register_forward_hook(_hook(edit.transform, n)) for n in edit.names()]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def check_fits(edit: StyleEdit, synthesis: nn.Module) -> None:
    """ConfigError unless every adapted layer exists with the domain's channel count."""
    layers = styled_layers(synthesis)
    for name in edit.names():
        if name not in layers:
            raise ConfigError(f"the domain adapts layer {name!r}, which this generator does not have",
                              "use the domain with the generator it was trained on")
        c = int(layers[name].affine.weight.shape[0])
        for t in (edit.scale.get(name), edit.shift.get(name)):
            if t is not None and t.shape != (c,):
                raise ConfigError(f"the domain's {name} has {tuple(t.shape)} channels, the generator's {c}",
                                  "use the domain with the generator it was trained on")


@torch.no_grad()
def bake(synthesis: nn.Module, edit: StyleEdit) -> None:
    """Fold ``edit`` into ``synthesis``'s weights in place: the scale multiplies the conv
    weight's input channels (the modulated conv then sees ``s · scale``), the shift divided by
    the scale goes into the affine bias (``W · scale · (a + shift/scale) = W · (a · scale + shift)``)."""
    check_fits(edit, synthesis)
    layers = styled_layers(synthesis)
    for name in edit.names():
        layer = layers[name]
        scale = edit.scale.get(name)
        shift = edit.shift.get(name)
        if scale is not None:
            layer.weight.mul_(scale.to(layer.weight).reshape(1, -1, 1, 1))
        if shift is not None:
            s = shift.to(layer.affine.bias)
            if scale is not None:
                s = s / scale.to(s)
            layer.affine.bias.add_(s / layer.affine.bias_gain)
