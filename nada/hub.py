"""Known real StyleGAN2 checkpoints, checked downloads, and generator specs → local paths.

Downloads stream into a hidden ``.<name>.part`` file beside the destination with a tqdm
progress bar; a broken transfer keeps it and the next call resumes it with an HTTP Range request.
The whole file's SHA-256 is compared (the published one, one given, or the one pinned in
``pinned_sha256.json`` at the first download of a file without a published hash) before it is
renamed into place, so the cache never holds a partial or corrupted file under its real name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import CheckpointError, DownloadError

log = logging.getLogger(__name__)

SHAPES_GENERATOR = "shapes_generator.safetensors"  # in pretrained/, the embedded default
RUN_GENERATOR = "generator.safetensors"            # the adapted generator in a `nada train` run directory
RUN_DOMAIN = "domain.safetensors"                  # the domain file of a `nada train --adapter ...` run

_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained"
_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files"
_TF = "http://d36zk2xti64re0.cloudfront.net/stylegan2/networks"


@dataclass(frozen=True)
class KnownCheckpoint:
    """A published generator: where to get it and what it is."""

    name: str                   # short name for `nada download NAME`
    url: str                    # download address
    filename: str               # name in the weights cache
    resolution: int             # output side in pixels
    format: str                 # 'nvidia' (PyTorch pickle) or 'tensorflow' (NVlabs/stylegan2 pickle, read without TensorFlow)
    sha256: str | None = None   # expected SHA-256; None = not recorded yet (printed after download)
    size: int | None = None     # bytes, when known
    description: str = ""


KNOWN: dict[str, KnownCheckpoint] = {
    c.name: c
    for c in [
        KnownCheckpoint("ffhq-1024", f"{_ADA}/ffhq.pkl", "stylegan2-ada-ffhq-1024.pkl", 1024, "nvidia",
                        description="FFHQ faces, config-f (stylegan2-ada-pytorch)"),
        KnownCheckpoint("ffhq-512", f"{_ADA}/transfer-learning-source-nets/ffhq-res512-mirror-stylegan2-noaug.pkl",
                        "stylegan2-ffhq-512.pkl", 512, "nvidia", description="FFHQ faces at 512"),
        KnownCheckpoint("ffhq-256", f"{_ADA}/transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl",
                        "stylegan2-ffhq-256.pkl", 256, "nvidia", description="FFHQ faces at 256 (paper256 config)"),
        KnownCheckpoint("metfaces-1024", f"{_ADA}/metfaces.pkl", "stylegan2-ada-metfaces-1024.pkl", 1024, "nvidia",
                        description="MetFaces portraits"),
        KnownCheckpoint("afhq-cat-512", f"{_ADA}/afhqcat.pkl", "stylegan2-ada-afhqcat-512.pkl", 512, "nvidia",
                        description="AFHQ cats"),
        KnownCheckpoint("afhq-dog-512", f"{_ADA}/afhqdog.pkl", "stylegan2-ada-afhqdog-512.pkl", 512, "nvidia",
                        description="AFHQ dogs"),
        KnownCheckpoint("afhq-wild-512", f"{_ADA}/afhqwild.pkl", "stylegan2-ada-afhqwild-512.pkl", 512, "nvidia",
                        description="AFHQ wild animals"),
        KnownCheckpoint("afhqv2-512", f"{_NGC}/stylegan2-afhqv2-512x512.pkl", "stylegan2-afhqv2-512.pkl", 512,
                        "nvidia", description="AFHQv2 (cats, dogs, wild), StyleGAN3 release of StyleGAN2"),
        KnownCheckpoint("brecahad-512", f"{_ADA}/brecahad.pkl", "stylegan2-ada-brecahad-512.pkl", 512, "nvidia",
                        description="BreCaHAD histology"),
        KnownCheckpoint("lsun-dog-256", f"{_NGC}/stylegan2-lsundog-256x256.pkl", "stylegan2-lsundog-256.pkl", 256,
                        "nvidia", description="LSUN dogs"),
        KnownCheckpoint("lsun-church-256", f"{_TF}/stylegan2-church-config-f.pkl", "stylegan2-church-config-f.pkl",
                        256, "tensorflow", description="LSUN churches (TensorFlow pickle, read directly)"),
        KnownCheckpoint("lsun-cat-256", f"{_TF}/stylegan2-cat-config-f.pkl", "stylegan2-cat-config-f.pkl", 256,
                        "tensorflow", description="LSUN cats (TensorFlow pickle, read directly)"),
        KnownCheckpoint("lsun-car-512", f"{_TF}/stylegan2-car-config-f.pkl", "stylegan2-car-config-f.pkl", 512,
                        "tensorflow", description="LSUN cars, 512x384 content (TensorFlow pickle, read directly)"),
        KnownCheckpoint("lsun-horse-256", f"{_TF}/stylegan2-horse-config-f.pkl", "stylegan2-horse-config-f.pkl",
                        256, "tensorflow", description="LSUN horses (TensorFlow pickle, read directly)"),
    ]
}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _filename_from_url(url: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise DownloadError(f"cannot tell a file name from URL {url!r}", "pass dest=PATH")
    return name


def download(
    name_or_url: str,
    dest: str | os.PathLike | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch a known checkpoint (by name) or a URL into ``dest`` (a file or folder; default
    the weights cache). Verifies SHA-256 when known or given; an existing file that passes
    the check is reused. Returns the local path."""
    known = KNOWN.get(name_or_url) or AUXILIARY.get(name_or_url)
    if known is None and "://" not in name_or_url:
        raise DownloadError(f"unknown checkpoint {name_or_url!r}",
                            f"known: {', '.join([*KNOWN, *AUXILIARY])}; or pass a URL")
    url = known.url if known else name_or_url
    expected = (sha256 or (known.sha256 if known else None) or "").lower() or None
    filename = known.filename if known else _filename_from_url(url)
    target = Path(dest) if dest is not None else paths.weights_cache_dir() / filename
    if target.is_dir() or (dest is not None and str(dest).endswith(os.sep)):
        target = target / filename
    target.parent.mkdir(parents=True, exist_ok=True)

    pinned = _pins(target.parent).get(target.name)
    if target.is_file():
        digest = sha256_file(target) if (expected or pinned) else None
        if expected is None and pinned is None:
            log.info("using cached %s", target)
            return target
        if digest == (expected or pinned):
            log.info("using cached %s", target)
            return target
        log.warning("%s exists but its sha256 differs from the %s one; downloading again", target,
                    "known" if expected else "pinned at its first download")
        target.unlink()
    part = target.with_name(f".{target.name}.part")  # kept when a transfer breaks; the next call resumes it
    _fetch(url, part, filename, progress, timeout)
    digest = sha256_file(part)
    want = expected or pinned
    if want is not None and digest != want:
        part.unlink()
        raise DownloadError(
            f"checksum mismatch for {url}: got sha256 {digest}, expected {want}",
            "the file is corrupt or changed upstream; nothing was saved",
        )
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, target)
    if expected is None:
        _pin(target.parent, target.name, digest)
        log.warning("no published checksum for %s; pinned its sha256 %s in %s: later uses are checked against it",
                    url, digest, target.parent / PINS)
    log.info("saved %s", target)
    return target


PINS = "pinned_sha256.json"  # in the weights cache: sha256 of each download without a published one


def _pins(folder: Path) -> dict[str, str]:
    import json

    try:
        d = json.loads((folder / PINS).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {}


def _pin(folder: Path, name: str, digest: str) -> None:
    import json

    pins = {**_pins(folder), name: digest}
    tmp = folder / f".{PINS}.tmp"
    tmp.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / PINS)


def _fetch(url: str, part: Path, filename: str, progress: bool, timeout: float) -> None:
    """Stream ``url`` into ``part``, continuing an earlier partial file with an HTTP Range
    request (from scratch when the server ignores it). One DownloadError for any failure; the
    partial file stays so the same command resumes."""
    import http.client

    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "nada"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already whole
            return
        reason = (str(exc.reason).splitlines() or [""])[0]  # a redirect loop's message runs to several lines
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {reason}",
                            "check the address, or download it by hand and pass the file path") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = (str(getattr(exc, "reason", None) or exc).splitlines() or [""])[0]
        raise DownloadError(f"cannot download {url}: {reason}",
                            "check the network, or download it by hand and pass the file path") from None
    with resp:
        resumed = have and resp.status == 206
        if not resumed:
            have = 0
        length = int(resp.headers.get("Content-Length") or 0) or None
        total = None if length is None else length + have
        bar = _progress(total, filename, progress)
        bar.update(have)
        got = have
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while block := resp.read1(1 << 20):  # what has arrived: a stall keeps the bytes before it
                    out.write(block)
                    got += len(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as exc:  # a reset, a read timeout, a closed connection
            raise DownloadError(f"download of {url} stopped after {got:,} bytes ({type(exc).__name__}: {exc})",
                                "run the same command again to resume it") from None
        finally:
            bar.close()
    if total is not None and got < total:
        raise DownloadError(f"download of {url} stopped after {got:,} of {total:,} bytes",
                            "run the same command again to resume it")


# Weights nada downloads that are not generators (so they stay out of generator lists):
# the ArcFace IR-SE50 face-identity network of the mapper's identity loss (InsightFace_Pytorch's
# model_ir_se50.pth, a plain state dict, as StyleCLIP uses it; mirrored on Hugging Face).
AUXILIARY: dict[str, KnownCheckpoint] = {
    c.name: c
    for c in [
        KnownCheckpoint("arcface-ir-se50",
                        "https://huggingface.co/lithiumice/insightface/resolve/main/InsightFace_Pytorch%2Bmodel_ir_se50.pth",
                        "model_ir_se50.pth", 112, "state-dict", description="ArcFace IR-SE50 (identity loss, faces)"),
        # torchvision's ImageNet VGG16 (the trunk of the LPIPS loss of `nada invert`; lpips ships the heads)
        KnownCheckpoint("vgg16-imagenet", "https://download.pytorch.org/models/vgg16-397923af.pth",
                        "vgg16-397923af.pth", 224, "state-dict",
                        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", size=553433881,
                        description="VGG16 ImageNet (LPIPS loss of nada invert)"),
        # dlib's 68-point face landmark model (FFHQ-style alignment in `nada invert --align`), bz2-compressed
        KnownCheckpoint("dlib-landmarks-68", "http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2",
                        "shape_predictor_68_face_landmarks.dat.bz2", 0, "dlib",
                        description="dlib 68 face landmarks (face alignment of nada invert)"),
    ]
}


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not enabled)


def shapes_generator_path() -> Path:
    """The embedded shapes-world generator; CheckpointError if it has not been built yet."""
    path = paths.pretrained_dir() / SHAPES_GENERATOR
    if not path.is_file():
        raise CheckpointError(
            f"the embedded shapes generator {path} is missing",
            "train it with the shapes-world script in scripts/, or pass --generator PATH",
        )
    return path


def run_product(run_dir: str | os.PathLike) -> Path | None:
    """What a finished `nada train` run produced: its adapted generator, or the domain file of an
    --adapter run (both open with ``load_generator``); None while it has neither."""
    for name in (RUN_GENERATOR, RUN_DOMAIN):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


def resolve_generator(spec: str | os.PathLike | None) -> Path:
    """A generator spec → local file: None/'shapes' → the embedded one; a known name → cached
    download; a URL → download; a `nada train` run directory → its adapted generator; anything
    else must be an existing file."""
    if spec is None or str(spec) == "shapes":
        return shapes_generator_path()
    spec = str(spec)
    if spec in KNOWN:
        return download(spec)
    if "://" in spec:
        return download(spec)
    path = Path(spec).expanduser()
    if path.is_dir() and (path / RUN_GENERATOR).is_file():  # a `nada train` run: its adapted generator
        return path / RUN_GENERATOR
    if path.is_dir() and (path / RUN_DOMAIN).is_file():  # a `nada train --adapter` run: its domain file
        return path / RUN_DOMAIN
    if not path.is_file():
        raise CheckpointError(f"generator {spec!r} is not a file, a known name or a URL",
                              f"known names: {', '.join(KNOWN)}; 'shapes'; or a `nada train` run directory")
    return path
