"""The mapper's loss terms over a weighted ensemble of CLIP encoders (StyleCLIP's global CLIP
loss and latent L2, NADA's embedding-norm loss, an optional directional and identity loss)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..guidance.losses import directional_loss, embedding_norm_loss, global_clip_loss, text_direction


def latent_l2(ws_edit: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the edited and unedited W+ latents (StyleCLIP's latent L2)."""
    return F.mse_loss(ws_edit, ws)


class MapperObjective:
    """The terms of one mapper step; texts are encoded once, at construction."""

    def __init__(
        self,
        encoders: Sequence,                         # ClipEncoder instances (frozen)
        weights: Sequence[float],                   # one per encoder
        target: str,                                # text of the edit
        source: str | None = None,                  # text of the unedited images (directional term)
        identity=None,                              # nada.mapper.identity.IdentityLoss, or None
    ):
        self.encoders = list(encoders)
        self.weights = [float(w) for w in weights]
        self.identity = identity
        with torch.no_grad():
            self.target_feat = [enc.encode_text([target])[0].float() for enc in self.encoders]
            self.direction = None
            if source is not None:
                self.direction = [text_direction(enc.encode_text([source])[0].float(), t)
                                  for enc, t in zip(self.encoders, self.target_feat)]

    @torch.no_grad()
    def source_features(self, img0: torch.Tensor) -> list[torch.Tensor | None]:
        """What the losses need of the unedited images: each encoder's features (None for a
        zero-weight encoder), then the identity features when there is an identity network.
        A latent's unedited image never changes, so the trainer computes these once per latent."""
        feats = [enc.encode_image(img0).float() if w else None for enc, w in zip(self.encoders, self.weights)]
        return feats + ([self.identity.features(img0)] if self.identity is not None else [])

    def losses(self, source: list[torch.Tensor | None], img1: torch.Tensor, ws: torch.Tensor,
               ws_edit: torch.Tensor, weights: dict[str, float]) -> dict[str, torch.Tensor]:
        """Unweighted terms (``clip``, ``latent``, ``norm``, ``direction``, ``id``) for each
        positive weight; ``source`` = :meth:`source_features` of the unedited images (latents
        ``ws``), ``img1`` / ``ws_edit`` the edited ones."""
        need = {k for k, w in weights.items() if w > 0}
        out: dict[str, torch.Tensor] = {}
        pairs = [None if w == 0 else (f0, enc.encode_image(img1).float())
                 for enc, w, f0 in zip(self.encoders, self.weights, source)]

        def ensemble(fn) -> torch.Tensor:
            return sum(w * fn(i, *pair) for i, (pair, w) in enumerate(zip(pairs, self.weights)) if pair is not None)

        if "clip" in need:
            out["clip"] = ensemble(lambda i, f0, f1: global_clip_loss(f1, self.target_feat[i].to(f1.device)))
        if "latent" in need:
            out["latent"] = latent_l2(ws_edit, ws)
        if "norm" in need:
            out["norm"] = ensemble(lambda i, f0, f1: embedding_norm_loss(f0, f1))
        if "direction" in need and self.direction is not None:
            out["direction"] = ensemble(lambda i, f0, f1: directional_loss(f0, f1, self.direction[i].to(f1.device)))
        if "id" in need and self.identity is not None:
            out["id"] = self.identity.loss(source[-1], img1)
        return out
