"""The Train tab's logic without Gradio: a typed form → a checked ``TrainConfig`` → a queued job,
and a job snapshot → what the page shows. Bad input raises a NadaError before anything is
written under the runs folder."""

from __future__ import annotations

import dataclasses
import functools
import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, ModelNotFoundError
from ..hub import run_product
from .context import AppContext
from .jobs import CANCELLED, DONE, FAILED, QUEUED, STOPPED, Job, JobSnapshot

log = logging.getLogger(__name__)

SHAPES, KNOWN, UPLOAD = "shapes", "known", "upload"   # generator choices
TEXT, IMAGES = "text", "images"                      # target choices
CLIP_CHOICES = ["shapes", "shapes-fine", "ViT-B-32:openai", "ViT-B-16:openai", "RN50:openai"]


@dataclass
class TrainForm:
    """What a visitor filled in; empty / zero values mean nada's defaults."""

    generator: str = SHAPES                 # shapes | known | upload
    known_name: str | None = None           # a nada.hub name (generator == known)
    upload: str | None = None               # uploaded checkpoint, a Gradio temp file (generator == upload)
    source: str = "photo"                   # source-domain text
    guide: str = TEXT                       # text | images
    target: str = ""                        # target-domain text (guide == text)
    style_images: list[str] = field(default_factory=list)  # uploaded images (guide == images)
    clip: list[str] = field(default_factory=list)           # CLIP specs by name; [] = default
    clip_weights: str = ""                  # comma-separated, one per CLIP; "" = all 1
    adapter: str = "full"                   # full | stylespace | modulation (nada train --adapter)
    iters: int = 300                        # training iterations
    preview_every: int = 20                 # sample grid every N iterations
    preset: str = "default"                 # nada.adapt.PRESETS name
    layers: str = ""                        # layer spec; "" = default
    k: str = ""                             # style indices per step (N, N/M, all); "" = default
    batch: int = 0                          # latents per step; 0 = default
    lr: float = 0.0                         # base lr; 0 = default
    lambda_direction: float = 1.0
    lambda_global: float = 0.0
    lambda_norm: float = 0.0
    lambda_manifold: float = 0.0
    lambda_patch: float = 0.0
    seed: int = 0
    evaluate: bool = True                   # shapes world: oracle table at the end

    @classmethod
    def from_page(cls, **values) -> "TrainForm":
        """The form from the page's raw values (None = the field's default, numbers coerced)."""
        defaults = cls()
        out = {}
        for f in dataclasses.fields(cls):
            v = values.get(f.name)
            d = getattr(defaults, f.name)
            if v is None:
                v = d
            elif isinstance(d, bool):
                v = bool(v)
            elif isinstance(d, int):
                v = int(v)
            elif isinstance(d, float):
                v = float(v)
            elif isinstance(d, list):
                v = [str(x) for x in v]
            out[f.name] = v
        return cls(**out)


def _check_clip(specs: tuple[str, ...], texts: dict[str, str | None], device) -> None:
    """Names only (no server paths); each loads (cached) and knows every prompt word."""
    from ..adapt.objective import check_prompt_words
    from ..guidance import load_clip

    for spec in specs:
        _, sep, tag = spec.partition(":")
        if spec.startswith("shapes:") or (sep and ("/" in tag or "\\" in tag or tag.startswith("."))):
            raise ModelNotFoundError(f"CLIP model {spec!r} names a file", "the web demo takes CLIP models by name, "
                                     "e.g. ViT-B-32:openai or shapes")
    check_prompt_words([load_clip(spec, device) for spec in specs], specs, texts)


def _parse_weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(w) for w in text.replace(",", " ").split())
    except ValueError:
        raise ConfigError(f"CLIP weights {text!r} are not numbers", "write e.g. 1, 0.5") from None


def build_config(ctx: AppContext, form: TrainForm, run_name: str):
    """Check ``form`` completely and return the ``TrainConfig`` of a new run called ``run_name``;
    stores validated uploads. Raises a NadaError (one line) for the first problem."""
    from ..adapt import TrainConfig
    from ..adapt.rundir import check_run_dir
    from ..device import resolve_device
    from ..hub import KNOWN as HUB
    from . import uploads

    source = (form.source or "").strip()
    if not source:
        raise ConfigError("the source text is empty", "describe the generator's domain, e.g. photo")
    target = (form.target or "").strip()
    if form.guide == TEXT and not target:
        raise ConfigError("the target text is empty", "type the domain to reach, e.g. sketch")
    if form.guide == IMAGES:
        uploads.check_style_images(list(form.style_images))
    if form.generator == KNOWN:
        if form.known_name not in HUB:
            raise ConfigError(f"unknown checkpoint {form.known_name!r}", "pick a name from the list")
        generator = form.known_name
    elif form.generator == UPLOAD:
        if not form.upload:
            raise ConfigError("no generator uploaded", "upload a .pt, .pkl or .safetensors file, or use the shapes world")
        uploads.check_generator(form.upload)
        generator = str(form.upload)  # the checked upload (its recipe, if any, sets the defaults); stored below
    elif form.generator == SHAPES:
        generator = "shapes"
    else:
        raise ConfigError(f"unknown generator choice {form.generator!r}", "shapes, known or upload")
    optional = {"batch": int(form.batch) or None, "lr": float(form.lr) or None,
                "layers": form.layers.strip() or None, "auto_layer_k": form.k.strip() or None}
    cfg = TrainConfig.from_preset(
        form.preset or "default",
        out=str(ctx.runs_dir / run_name), generator=generator, source=source,
        target=target if form.guide == TEXT else None,
        style_images="pending" if form.guide == IMAGES else None,
        clip=tuple(c.strip() for c in form.clip if c and c.strip()), clip_weights=_parse_weights(form.clip_weights),
        adapter=form.adapter or "full", iters=int(form.iters), sample_every=int(form.preview_every), save_every=0, seed=int(form.seed),
        lambda_direction=float(form.lambda_direction), lambda_global=float(form.lambda_global),
        lambda_norm=float(form.lambda_norm), lambda_manifold=float(form.lambda_manifold),
        lambda_patch=float(form.lambda_patch), evaluate=bool(form.evaluate), device=ctx.device, quiet=True,
        **{k: v for k, v in optional.items() if v is not None},
    )
    device = resolve_device(ctx.device)
    _check_clip(cfg.clip, {"source text": cfg.source, "target text": cfg.target}, device)
    if cfg.evaluates_on_shapes and cfg.evaluate and cfg.target:
        from ..shapes.evaluate import parse_target

        parse_target(cfg.target)
    check_run_dir(cfg)
    changes = {}
    if form.generator == UPLOAD:
        changes["generator"] = str(uploads.store_generator(Path(form.upload), ctx.uploads_dir))
    if form.guide == IMAGES:
        changes["style_images"] = str(uploads.store_style_images(list(form.style_images), ctx.uploads_dir))
    return cfg.replace(**changes) if changes else cfg


def submit_training(ctx: AppContext, form: TrainForm, owner: str | None = None) -> tuple[Job, str]:
    """Check the form, then queue ``nada.adapt.train`` for it; (job, run name)."""
    from ..adapt import train

    label = form.target if form.guide == TEXT else "style-images"
    name = ctx.new_run_name(label)
    cfg = build_config(ctx, form, name)
    what = f"{cfg.source} → {cfg.target or 'style images'}"
    return ctx.jobs.submit(functools.partial(train, cfg), name=what, owner=owner, tag=name), name


def submit_resume(ctx: AppContext, run_name: str, iters: int | None, owner: str | None = None) -> Job:
    """Queue the continuation of a stopped run of the runs folder (``nada train --resume``)."""
    from ..adapt import train
    from ..adapt.rundir import load_run_config

    run = ctx.run_dir(run_name)
    saved = load_run_config(run)
    if run_product(run) is not None and not (iters and iters > saved.iters):
        raise ConfigError(f"run {run_name!r} has finished", "give more iterations to extend it")
    # a new total re-plans the lr schedule over it, as nada train --resume --iters does
    cfg = saved.replace(out=str(run), resume=True, overwrite=False, quiet=True, device=ctx.device,
                        iters=int(iters) if iters else saved.iters)
    what = f"{cfg.source} → {cfg.target or 'style images'} (resumed)"
    return ctx.jobs.submit(functools.partial(train, cfg), name=what, owner=owner, tag=run_name)


# --- what the page shows ---------------------------------------------------------------------

def _bar(fraction: float, text: str, state: str) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    colour = {"failed": "#c0392b", "stopped": "#d68910", "cancelled": "#888"}.get(state, "#2e86de")
    return (f'<div class="nada-progress" data-state="{state}">'
            f'<div style="background:#e5e8ec;border-radius:6px;height:14px;overflow:hidden">'
            f'<div style="width:{pct:.1f}%;height:100%;background:{colour};transition:width .3s"></div></div>'
            f'<div class="nada-progress-text" style="margin-top:6px">{html.escape(text)}</div></div>')


def message_html(text: str, kind: str = "error") -> str:
    """One line for the page: an error (red) or a note."""
    colour = "#c0392b" if kind == "error" else "#444"
    prefix = "Error: " if kind == "error" else ""
    return (f'<div class="nada-message nada-{kind}" style="color:{colour};font-weight:600">'
            f'{html.escape(prefix + text)}</div>')


def status_html(snap: JobSnapshot, ctx: AppContext | None = None, resumable: bool = True) -> str:
    """The progress line of a job: place in line, iteration / it/s / loss, or how it ended
    (``resumable``: a stopped job left a checkpoint to continue, as trainings do)."""
    total = snap.total or 0
    if snap.state == QUEUED:
        running = ctx.jobs.current() if ctx is not None else None
        ahead = f"{snap.ahead} job{'s' * (snap.ahead != 1)} ahead of yours"
        now = ""
        if running is not None:
            r = running.snapshot()
            now = f" (now: {r.name}, iteration {r.step}/{r.total or '?'})"
        return _bar(0, f"In line: {ahead}{now}. It starts when the device is free.", "queued")
    if snap.state == CANCELLED:
        return _bar(0, "Cancelled before it started.", "cancelled")
    if snap.state == FAILED:
        return message_html(snap.error or "the run failed")
    parts = [f"iteration {snap.step} / {total or '?'}"]
    if snap.rate:
        parts.append(f"{snap.rate:.2f} it/s")
    if snap.loss is not None:
        parts.append(f"loss {snap.loss:.4f}")
    parts.append(f"{snap.elapsed:.0f} s")
    text = " · ".join(parts)
    fraction = snap.step / total if total else 0.0
    if snap.state == DONE:
        return _bar(1, f"Done: {text}.", "done")
    if snap.state == STOPPED:
        if not resumable:
            return _bar(fraction, f"Stopped at {text}.", "stopped")
        return _bar(fraction, f"Stopped at {text}; a resumable checkpoint is saved (Resume below continues it).",
                    "stopped")
    if snap.stop_requested:
        return _bar(fraction, f"Stopping after this step: {text}", "stopping")
    if total and snap.step >= total:
        return _bar(1, f"Saving the generator and evaluating: {text}", "finishing")
    if snap.step == 0:
        return _bar(0, f"Loading the generator and CLIP models ({snap.elapsed:.0f} s)", "starting")
    return _bar(fraction, text, "running")


def read_png(path: Path | None):
    """A preview PNG as a uint8 array (the page never gets a server path)."""
    if path is None or not Path(path).is_file():
        return None
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def for_display(image, min_tile: int = 128, tile: int = 64):
    """Small-tile grids (the shapes world's 64 px) scaled up by an integer factor, nearest
    neighbour, so the page shows them at a readable size; larger images pass unchanged."""
    if image is None or tile >= min_tile:
        return image
    import numpy as np

    factor = max(1, min_tile // tile)
    if image.shape[0] * factor > 2048 or image.shape[1] * factor > 4096:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
