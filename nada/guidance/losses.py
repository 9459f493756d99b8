"""The NADA losses on CLIP embeddings, and a weighted ensemble of CLIP models.

Functions on features are separate from the encoders so each formula is testable with
constructed embeddings; :class:`CLIPGuidance` applies them over several encoders with weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

EPS = 1e-8

# Image-space edit directions shorter than this (in unit-embedding units) are not normalised
# all the way. At the first step the trainable twin equals the frozen one, so the edit
# direction is ~1e-7 long: normalising it exactly gives a gradient ~1e6 times the usual one,
# which fills Adam's second-moment estimate and stalls the run for thousands of steps (with
# beta2 = 0.99^(4/5) it decays by ~0.8% per step). Below the floor the loss is linear in the
# edit (it pushes the edit along the text direction); above it, it is the official loss.
DIRECTION_FLOOR = 0.05


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(EPS)


def _unit_floor(x: torch.Tensor) -> torch.Tensor:
    """``x / max(|x|, DIRECTION_FLOOR)``: unit length for edits longer than the floor."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(DIRECTION_FLOOR)


def global_clip_loss(image_feat: torch.Tensor, target_text: torch.Tensor) -> torch.Tensor:
    """1 − cos(image embedding, target text embedding), averaged over the batch."""
    return (1 - _unit(image_feat) @ _unit(target_text).reshape(-1)).mean()


def text_direction(source_text: torch.Tensor, target_text: torch.Tensor) -> torch.Tensor:
    """normalise(target − source) of two (normalised) text features."""
    return _unit(target_text.reshape(-1) - source_text.reshape(-1))


def directional_loss(source_feat: torch.Tensor, edited_feat: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """1 − cos(normalise(E(edited) − E(source)), direction), averaged.

    Image embeddings are normalised before the difference (as the official code does); a zero
    image direction (identical images, e.g. at the first step) gives loss 1, not NaN, and a
    bounded gradient (see ``DIRECTION_FLOOR``)."""
    delta = _unit(edited_feat) - _unit(source_feat)
    return (1 - _unit_floor(delta) @ direction.reshape(-1)).mean()


def embedding_norm_loss(source_feat: torch.Tensor, edited_feat: torch.Tensor) -> torch.Tensor:
    """MSE between the (unnormalised) CLIP embedding norms of source and edited images."""
    return F.mse_loss(edited_feat.norm(dim=-1), source_feat.norm(dim=-1))


def manifold_angle_loss(
    source_feat: torch.Tensor, edited_feat: torch.Tensor, source_text: torch.Tensor, target_text: torch.Tensor
) -> torch.Tensor:
    """|cos(E(source), E(edited)) − cos(T(source), T(target))|: the edit should move the image
    as far on CLIP's sphere as the texts are apart."""
    cos_img = (_unit(source_feat) * _unit(edited_feat)).sum(-1)
    cos_txt = (_unit(source_text.reshape(-1)) * _unit(target_text.reshape(-1))).sum()
    return (cos_img - cos_txt).abs().mean()


def angle_consistency_loss(source_feat: torch.Tensor, edited_feat: torch.Tensor) -> torch.Tensor:
    """Mean over pairs i ≠ j of the batch of (cos(E(src_i), E(src_j)) − cos(E(edit_i), E(edit_j)))²:
    the edit keeps how the images relate to each other (HyperDomainNet's in-domain angle
    consistency), so it cannot move them all to one look. 0 for a batch of one."""
    n = source_feat.shape[0]
    if n < 2:
        return edited_feat.sum() * 0
    a, b = _unit(source_feat), _unit(edited_feat)
    diff = a @ a.T - b @ b.T
    off = ~torch.eye(n, dtype=torch.bool, device=diff.device)
    return diff[off].pow(2).mean()


def patch_directional_loss(
    source_patch_feat: torch.Tensor,    # [P, D] embeddings of patches of the source images
    edited_patch_feat: torch.Tensor,    # [P, D] embeddings of the same patches of the edited images
    directions: torch.Tensor,           # [K, D] or [D] text directions (e.g. one per part template)
) -> torch.Tensor:
    """Directional loss per patch against K text directions, each patch weighting the K cosine
    distances by a softmax of its agreement with them (as the official patch loss does, so a
    patch is judged by the part description it matches best); K = 1 is the directional loss on
    patches. Patches that did not change give distance 1, not NaN."""
    dirs = _unit(directions.reshape(-1, directions.shape[-1]))
    edit = _unit_floor(_unit(edited_patch_feat) - _unit(source_patch_feat))
    cos = edit @ dirs.T                                  # [P, K]
    return ((1 - cos) * cos.softmax(dim=-1)).sum(-1).mean()


@torch.no_grad()
def mean_unit_embedding(encoder, images: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Mean of the normalised image embeddings of ``images`` (encoded ``batch`` at a time);
    the building block of image-guided directions and targets."""
    return torch.cat([_unit(encoder.encode_image(x).float()) for x in images.split(batch)]).mean(0)


def random_patches(
    source: torch.Tensor, edited: torch.Tensor, num: int, frac: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` square crops of side ``frac``·min(H, W) at the same places in both batches."""
    n, _, h, w = source.shape
    side = max(1, int(round(frac * min(h, w))))
    gdev = generator.device if generator is not None else "cpu"
    ys = torch.randint(0, h - side + 1, (n, num), generator=generator, device=gdev).tolist()
    xs = torch.randint(0, w - side + 1, (n, num), generator=generator, device=gdev).tolist()
    src, ed = [], []
    for i in range(n):
        for y, x in zip(ys[i], xs[i]):
            src.append(source[i, :, y: y + side, x: x + side])
            ed.append(edited[i, :, y: y + side, x: x + side])
    return torch.stack(src), torch.stack(ed)


class CLIPGuidance:
    """Several CLIP encoders with weights; each loss is the weighted sum over encoders."""

    def __init__(self, encoders: Sequence, weights: Sequence[float] | None = None):
        self.encoders = list(encoders)
        self.weights = [1.0] * len(self.encoders) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.encoders):
            raise ValueError(f"{len(self.encoders)} CLIP models but {len(self.weights)} weights")

    def _sum(self, fn) -> torch.Tensor:
        total = None
        for enc, w in zip(self.encoders, self.weights):
            if w == 0:
                continue
            term = w * fn(enc)
            total = term if total is None else total + term
        if total is None:
            raise ValueError("all CLIP weights are zero")
        return total

    def text_direction(self, source: str, target: str) -> list[torch.Tensor]:
        """Per-encoder text direction source → target."""
        return [text_direction(*enc.encode_text([source, target])) for enc in self.encoders]

    @torch.no_grad()
    def image_direction(self, style_images: torch.Tensor, source_images: torch.Tensor, batch: int = 8) -> list[torch.Tensor]:
        """Per-encoder target direction from examples: mean normalised embedding of the style
        images − that of generated source samples (normalised)."""
        return [
            _unit(mean_unit_embedding(enc, style_images, batch) - mean_unit_embedding(enc, source_images, batch))
            for enc in self.encoders
        ]

    def global_loss(self, img: torch.Tensor, target: str) -> torch.Tensor:
        return self._sum(lambda enc: global_clip_loss(enc.encode_image(img), enc.encode_text([target])[0]))

    def directional_loss(self, source_img: torch.Tensor, edited_img: torch.Tensor, source: str, target: str) -> torch.Tensor:
        def one(enc):
            with torch.no_grad():
                f0 = enc.encode_image(source_img)
            direction = text_direction(*enc.encode_text([source, target]))
            return directional_loss(f0, enc.encode_image(edited_img), direction)

        return self._sum(one)

    def norm_loss(self, source_img: torch.Tensor, edited_img: torch.Tensor) -> torch.Tensor:
        def one(enc):
            with torch.no_grad():
                f0 = enc.encode_image(source_img)
            return embedding_norm_loss(f0, enc.encode_image(edited_img))

        return self._sum(one)

    def manifold_loss(self, source_img: torch.Tensor, edited_img: torch.Tensor, source: str, target: str) -> torch.Tensor:
        def one(enc):
            with torch.no_grad():
                f0 = enc.encode_image(source_img)
            t = enc.encode_text([source, target])
            return manifold_angle_loss(f0, enc.encode_image(edited_img), t[0], t[1])

        return self._sum(one)

    def patch_loss(
        self, source_img: torch.Tensor, edited_img: torch.Tensor, source: str, target: str,
        num_patches: int = 4, frac: float = 0.5, generator: torch.Generator | None = None,
        part_templates: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Directional loss on random patches cut at the same places from both images. With
        ``part_templates`` (format strings with one "{}", e.g. "a detail of {}") each patch is
        scored against the part directions by :func:`patch_directional_loss`, as the official
        patch loss does; without, against the global text direction."""
        src, ed = random_patches(source_img, edited_img, num_patches, frac, generator)
        if not part_templates:
            return self.directional_loss(src, ed, source, target)

        def one(enc):
            with torch.no_grad():
                f0 = enc.encode_image(src)
                dirs = torch.stack([
                    text_direction(*enc.encode_text([t.format(source), t.format(target)])) for t in part_templates
                ])
            return patch_directional_loss(f0, enc.encode_image(ed), dirs)

        return self._sum(one)

    # the contract's names (docs/design.md): the module's loss functions, over the ensemble
    global_clip_loss = global_loss
    embedding_norm_loss = norm_loss
    manifold_angle_loss = manifold_loss
    patch_directional_loss = patch_loss
