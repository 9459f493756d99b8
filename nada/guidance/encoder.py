"""Frozen CLIP encoders behind one interface, loaded once per process.

``load_clip(spec, device)`` returns a :class:`ClipEncoder` for any open_clip model, local weights
or the embedded ``shapes`` model. Weights are never fetched behind the user's back: a model whose
weights are not in the local cache fails at once when offline (``NADA_OFFLINE=1``,
``HF_HUB_OFFLINE=1`` or no route to the hub), naming the model, the cache and the command that
fetches it on a connected machine.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelNotFoundError
from .preprocess import clip_preprocess
from .specs import SHAPES_SPEC, ClipSpec, parse_spec

log = logging.getLogger(__name__)

_CACHE: dict[tuple[str, str], "ClipEncoder"] = {}


def imagenet_templates() -> list[str]:
    """The 80 ImageNet prompt templates of OpenAI's CLIP (as shipped by open_clip), as format strings."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]


class PatchEmbed(nn.Module):
    """A ViT's patchifying convolution (kernel = stride, no padding, no bias) as one matmul over
    the reshaped patches: the same function, and on CPU its backward to the image is a reshape
    of one matmul instead of oneDNN's slow strided-conv backward (docs/speed.md). Keeps the
    parameter name ``weight``, so state dicts are unchanged."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight = conv.weight
        self.patch = conv.kernel_size[0]

    @staticmethod
    def replaces(conv: nn.Module) -> bool:
        return (isinstance(conv, nn.Conv2d) and conv.bias is None and conv.groups == 1
                and conv.kernel_size[0] == conv.kernel_size[1] == conv.stride[0] == conv.stride[1]
                and conv.padding in ((0, 0), 0) and conv.dilation == (1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.patch
        gh, gw = h // p, w // p
        x = x[:, :, : gh * p, : gw * p].reshape(n, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
        out = x.reshape(n * gh * gw, c * p * p) @ self.weight.reshape(self.weight.shape[0], -1).t().to(x.dtype)
        return out.reshape(n, gh, gw, -1).permute(0, 3, 1, 2)


class SelfAttention(nn.Module):
    """A batch-first ``nn.MultiheadAttention`` used as self-attention, computed with one input
    projection on the contiguous [N, L, D] tokens and ``scaled_dot_product_attention``: the same
    function, without the module's sequence-first transposes, whose projections PyTorch runs as
    batched matmuls over a broadcast weight on CPU (docs/speed.md). Same parameter names; any
    other use (cross-attention, boolean masks) goes to the original module."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        self.in_proj_weight = mha.in_proj_weight
        self.in_proj_bias = mha.in_proj_bias
        self.out_proj = mha.out_proj
        self.num_heads = mha.num_heads
        self._mha = [mha]  # not a submodule: its parameters are ours already

    @staticmethod
    def replaces(mha: nn.Module) -> bool:
        return (isinstance(mha, nn.MultiheadAttention) and mha.batch_first and mha._qkv_same_embed_dim
                and mha.in_proj_bias is not None and mha.bias_k is None and not mha.add_zero_attn
                and mha.dropout == 0.0)

    def forward(self, query, key, value, need_weights=False, attn_mask=None, **kwargs):
        if (query is not key or key is not value or need_weights or kwargs or query.ndim != 3
                or (attn_mask is not None and attn_mask.dtype == torch.bool)):
            return self._mha[0](query, key, value, need_weights=need_weights, attn_mask=attn_mask, **kwargs)
        n, length, d = query.shape
        h = self.num_heads
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(n, length, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).reshape(n, length, d)), None


def _speed_up_towers(model: nn.Module) -> None:
    """Swap a ViT's patchify conv and self-attention modules for :class:`PatchEmbed` and
    :class:`SelfAttention` (same functions and parameter names, faster on CPU)."""
    visual = getattr(model, "visual", None)
    if visual is not None and PatchEmbed.replaces(getattr(visual, "conv1", None)):
        visual.conv1 = PatchEmbed(visual.conv1)
    for module in list(model.modules()):
        attn = getattr(module, "attn", None)
        if SelfAttention.replaces(attn):
            module.attn = SelfAttention(attn)


class ClipEncoder(nn.Module):
    """A frozen CLIP model with its preprocessing, prompt templates and text-feature cache."""

    def __init__(
        self,
        spec: str,                                  # canonical spec, for messages and caching
        model: nn.Module,                           # open_clip model (encode_image / encode_text)
        tokenize: Callable[[list[str]], torch.Tensor],
        image_size: int,                            # square input size of the image tower
        mean: Sequence[float],                      # normalisation of the image tower
        std: Sequence[float],
        templates: Sequence[str],                   # prompt templates with one "{}"
        vocab: set[str] | None = None,              # known words (None: open vocabulary)
    ):
        super().__init__()
        self.spec = spec
        self.model = model.eval().requires_grad_(False)
        _speed_up_towers(self.model)
        self.tokenize = tokenize
        self.image_size = int(image_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.templates = list(templates)
        self.vocab = vocab
        self._text_cache: dict[str, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def train(self, mode: bool = True):  # stays in eval mode whatever the caller does
        return super().train(False)

    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        """Unnormalised fp32 image embeddings of generator output [N, 3, H, W] in [-1, 1]."""
        x = clip_preprocess(img.to(self.device), self.image_size, self.mean, self.std)
        if x.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                feat = self.model.encode_image(x)
        else:
            feat = self.model.encode_image(x)
        return feat.float()

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised fp32 text features [len(texts), D]: the normalised mean over templates of
        the normalised template embeddings; cached per text."""
        out = []
        for text in texts:
            if text not in self._text_cache:
                prompts = [t.format(text) for t in self.templates]
                tokens = self.tokenize(prompts).to(self.device)
                feat = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
                self._text_cache[text] = F.normalize(feat.mean(0), dim=-1)
            out.append(self._text_cache[text])
        return torch.stack(out)

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` this model was not trained on (always [] for real CLIP models)."""
        if self.vocab is None:
            return []
        words = re.findall(r"[a-z]+", text.lower())
        return [w for w in words if w not in self.vocab]


# ----------------------------------------------------------------------------------------------
# Loading


def _offline() -> bool:
    for var in ("NADA_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    try:  # a quick route check instead of open_clip's minute of retries
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return False
    except OSError:
        return True


def _hf_cache_dir() -> str:
    """The Hugging Face hub cache, read at call time (``HF_HUB_CACHE`` / ``HF_HOME`` set after
    import are honoured)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def cached_weights(spec: ClipSpec) -> str | None:
    """Path of the cached weights file for an open_clip pretrained tag, or None."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained)
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo, name, cache_dir=_hf_cache_dir())
            if isinstance(found, str) and os.path.isfile(found):
                return found
    url = cfg.get("url", "")
    if url:
        path = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(path):
            return path
    return None


def fetch_command(spec: ClipSpec) -> str:
    """The command that puts ``spec``'s weights into the cache on a connected machine."""
    return f"nada download-clip {spec.name}:{spec.pretrained}"


def download_weights(spec: ClipSpec) -> str:
    """Download an open_clip pretrained tag into the usual caches (needs internet)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained)
    path = open_clip.download_pretrained(cfg, cache_dir=_hf_cache_dir() if cfg.get("hf_hub") else None)
    if not path:
        raise ModelNotFoundError(f"open_clip has no download for {spec.canonical}")
    return path


def _load_open_clip(spec: ClipSpec, device: torch.device) -> ClipEncoder:
    import open_clip

    path = spec.path
    if path is None:
        path = cached_weights(spec)
        if path is None:
            if _offline():
                raise ModelNotFoundError(
                    f"CLIP weights {spec.canonical} are not in the local cache ({_hf_cache_dir()}) "
                    "and there is no network",
                    f"on a connected machine run: {fetch_command(spec)}",
                )
            path = download_weights(spec)
    # Loading a tag's weights from a file path bypasses open_clip's tag handling: apply the tag's
    # activation (OpenAI weights need QuickGELU, which the plain ViT configs do not set) and its
    # preprocessing (some tags normalise with other mean/std) ourselves.
    tag_cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained) if spec.pretrained else {}
    try:
        model = open_clip.create_model(spec.name, pretrained=path, device=device,
                                       force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)))
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise ModelNotFoundError(f"cannot load CLIP weights {path} for {spec.name}: {exc}") from exc
    pp = open_clip.get_model_preprocess_cfg(model)
    size = pp.get("size", model.visual.image_size)
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = tag_cfg.get("mean") or pp.get("mean") or open_clip.OPENAI_DATASET_MEAN
    std = tag_cfg.get("std") or pp.get("std") or open_clip.OPENAI_DATASET_STD
    return ClipEncoder(
        spec.canonical, model, open_clip.get_tokenizer(spec.name), size, mean, std, imagenet_templates()
    )


def _load_shapes(device: torch.device, path: str | None = None, spec_name: str = SHAPES_SPEC) -> ClipEncoder:
    try:
        from ..shapes.clip_model import load_shapes_clip
    except ImportError as exc:
        raise ModelNotFoundError(
            "the embedded shapes CLIP is not available in this build", "use an open_clip model spec"
        ) from exc
    bundle = load_shapes_clip(device=device, path=path)
    return ClipEncoder(
        spec_name, bundle.model, bundle.tokenize, bundle.image_size, bundle.mean, bundle.std,
        bundle.templates, set(bundle.vocab),
    )


def load_clip(spec: str, device: torch.device | str | None = None) -> ClipEncoder:
    """A frozen :class:`ClipEncoder` for ``spec``, shared by every caller in this process."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    parsed = parse_spec(spec)
    key = (parsed.canonical, str(device))
    if key not in _CACHE:
        if parsed.name == SHAPES_SPEC:
            path = parsed.path
            if path is None and parsed.pretrained == "fine":
                from ..shapes.clip_model import fine_dir

                path = str(fine_dir())
            _CACHE[key] = _load_shapes(device, path, parsed.canonical)
        else:
            _CACHE[key] = _load_open_clip(parsed, device)
    return _CACHE[key]


def clear_cache() -> None:
    """Forget loaded encoders (tests)."""
    _CACHE.clear()
