"""CLIP guidance for the trainer: a weighted ensemble of CLIP encoders, the fixed target
direction (text or style images), and the NADA loss terms the trainer weights.

Built only on the ``ClipEncoder`` contract of docs/design.md (``encode_image`` → unnormalised
fp32 features, ``encode_text`` → normalised features, ``unknown_words``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .config import TrainConfig

log = logging.getLogger(__name__)


class ClipObjective:
    """Global, directional and embedding-norm CLIP losses summed over encoders with weights."""

    def __init__(
        self,
        encoders: Sequence,                      # ClipEncoder instances
        weights: Sequence[float],                # one per encoder
        source: str,                             # source-domain text
        target: str | None,                      # target-domain text (None with style images)
        direction: list[torch.Tensor] | None = None,  # per-encoder target direction (style images)
    ):
        self.encoders = list(encoders)
        self.weights = [float(w) for w in weights]
        self.source, self.target = source, target
        with torch.no_grad():
            self.target_feat = [enc.encode_text([target])[0].float() for enc in self.encoders] if target else None
            if direction is None:
                src = [enc.encode_text([source])[0].float() for enc in self.encoders]
                direction = [F.normalize(t - s, dim=-1) for t, s in zip(self.target_feat, src)]
        self.direction = direction

    @classmethod
    def from_config(cls, cfg: TrainConfig, device: torch.device) -> "ClipObjective":
        from ..guidance import load_clip

        encoders = [load_clip(spec, device) for spec in cfg.clip]
        for enc, spec in zip(encoders, cfg.clip):
            for what, text in (("--source", cfg.source), ("--target", cfg.target)):
                unknown = enc.unknown_words(text) if text else []
                if unknown:
                    raise ConfigError(f"{what} {text!r}: the {spec} CLIP does not know the words {unknown}",
                                      "use words of its vocabulary (e.g. photo, sketch, neon, pixel art)")
        return cls(encoders, cfg.clip_weights, cfg.source, cfg.target)

    def _weighted(self, fn) -> torch.Tensor:
        total = None
        for i, (enc, w) in enumerate(zip(self.encoders, self.weights)):
            if w == 0:
                continue
            term = w * fn(i, enc)
            total = term if total is None else total + term
        return total

    def global_loss(self, img: torch.Tensor) -> torch.Tensor:
        if self.target_feat is None:
            raise ConfigError("the global loss needs a --target text")

        def one(i, enc):
            feat = F.normalize(enc.encode_image(img).float(), dim=-1)
            return (1 - feat @ self.target_feat[i].to(feat.device)).mean()

        return self._weighted(one)

    def losses(self, frozen_img: torch.Tensor, train_img: torch.Tensor, weights: dict[str, float]) -> dict[str, torch.Tensor]:
        unsupported = [k for k in ("manifold", "patch") if weights.get(k, 0) > 0]
        if unsupported:
            raise ConfigError(f"loss terms {unsupported} are not available in this build", "set their lambdas to 0")
        need = {k for k, w in weights.items() if w > 0}
        out: dict[str, torch.Tensor] = {}
        feats = []
        for enc, w in zip(self.encoders, self.weights):
            if w == 0:
                feats.append(None)
                continue
            with torch.no_grad():
                f0 = enc.encode_image(frozen_img).float()
            feats.append((f0, enc.encode_image(train_img).float()))

        def pick(fn):
            total = None
            for i, (pair, w) in enumerate(zip(feats, self.weights)):
                if pair is None:
                    continue
                term = w * fn(i, *pair)
                total = term if total is None else total + term
            return total

        if "direction" in need:
            def direction(i, f0, f1):
                delta = f1 - f0
                # at the first step the twins agree: a zero edit direction has cosine 0, not NaN
                d = delta / delta.norm(dim=-1, keepdim=True).clamp_min(1e-8)
                return (1 - d @ self.direction[i].to(d.device)).mean()

            out["direction"] = pick(direction)
        if "global" in need:
            out["global"] = pick(lambda i, f0, f1: (1 - F.normalize(f1, dim=-1) @ self.target_feat[i].to(f1.device)).mean())
        if "norm" in need:
            out["norm"] = pick(lambda i, f0, f1: F.mse_loss(f1.norm(dim=-1), f0.norm(dim=-1)))
        return out
