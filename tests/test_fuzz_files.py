"""Damaged and hostile files: every format nada reads, mutated by a seeded fuzzer (truncation,
bit flips, overwritten bytes) and by headers that lie, ends in nada's own one-line error or a
clean load; never another exception, and each case within 5 s. A fast subset runs by default,
2,250 random cases in the slow set."""

from __future__ import annotations

import io
import json
import pickle
import random
import signal
import struct
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from ckpt_builders import nvidia_pickle_bytes

from nada.checkpoints import export_rosinality, load_generator, save_generator
from nada.errors import NadaError
from nada.mapper.files import load_latents, load_mapper, save_latents, save_mapper
from nada.mapper.network import LevelsMapper, MapperArch
from nada.networks import Generator, GeneratorConfig

CASE_SECONDS = 5


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, tuple[bytes, object]]:
    """name → (bytes of a valid small file, loader)."""
    d = tmp_path_factory.mktemp("valid")
    torch.manual_seed(0)
    cfg = GeneratorConfig(img_resolution=8, z_dim=4, w_dim=4, mapping_layers=1, channel_base=32, channel_max=4)
    G = Generator(cfg).eval()
    save_generator(G, d / "g.safetensors", {"note": "fuzz"})
    export_rosinality(G, d / "g.pt", warn=False)
    kw = dict(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, img_channels=3, mapping_kwargs=dict(num_layers=1),
              synthesis_kwargs=dict(channel_base=32, channel_max=4))
    (d / "g.pkl").write_bytes(nvidia_pickle_bytes(G.state_dict(), kw))
    save_mapper(LevelsMapper(MapperArch.for_generator(G)), d / "m.safetensors", {"target": "blue"})
    save_latents(torch.randn(3, G.num_ws, 4), d / "l.safetensors")
    from nada.paths import pretrained_dir
    from nada.shapes.clip_model import load_shapes_clip
    from nada.shapes.oracle import load_oracle

    def in_folder(files: dict[str, bytes], load):
        """A loader of a folder format: the case file plus the other files of the folder, valid."""
        def run(path: Path):
            for name, content in files.items():
                if not (path.parent / name).exists():
                    (path.parent / name).write_bytes(content)
            return load(path.parent)
        return run

    pre = pretrained_dir()
    clip_files = {n: (pre / "shapes_clip" / n).read_bytes() for n in ("model.safetensors", "shapes_clip.json")}
    oracle_files = {n: (pre / n).read_bytes() for n in ("shapes_oracle.safetensors", "shapes_oracle.json")}
    load_clip_dir = in_folder(clip_files, lambda folder: load_shapes_clip(path=folder))
    load_oracle_dir = in_folder(oracle_files, lambda folder: load_oracle("cpu", folder))
    return {
        "shapes CLIP weights": (clip_files["model.safetensors"], load_clip_dir, "model.safetensors"),
        "shapes CLIP vocabulary": (clip_files["shapes_clip.json"], load_clip_dir, "shapes_clip.json"),
        "oracle weights": (oracle_files["shapes_oracle.safetensors"], load_oracle_dir, "shapes_oracle.safetensors"),
        "oracle config": (oracle_files["shapes_oracle.json"], load_oracle_dir, "shapes_oracle.json"),
        "nada generator": ((d / "g.safetensors").read_bytes(), load_generator),
        "rosinality .pt": ((d / "g.pt").read_bytes(), load_generator),
        "NVIDIA .pkl": ((d / "g.pkl").read_bytes(), load_generator),
        "mapper": ((d / "m.safetensors").read_bytes(), load_mapper),
        "latents": ((d / "l.safetensors").read_bytes(), lambda p: load_latents(p, G.num_ws, 4)),
    }


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def run_case(load, data: bytes, path: Path) -> str:
    """'loaded' or 'refused'; anything else fails the test with what happened."""
    path.write_bytes(data)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    start = time.perf_counter()
    try:
        load(path)
        return "loaded"
    except NadaError as exc:
        msg = str(exc)
        assert "\n" not in msg, f"multi-line error: {msg!r}"
        # a folder format (the shapes CLIP, the oracle) may name the folder's other file
        assert str(path) in msg or path.name in msg or str(path.parent) in msg, f"the error does not name the file: {msg!r}"
        return "refused"
    except _Timeout:
        pytest.fail(f"case ran past {CASE_SECONDS} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        assert time.perf_counter() - start < CASE_SECONDS + 1


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.choice(("truncate", "bits", "bytes", "head"))
    if kind == "truncate":
        return bytes(b[: rng.randrange(len(b))])
    if kind == "bits":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "bytes":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    else:  # the header region, where lengths and offsets live
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(min(len(b), 2048))] = rng.randrange(256)
    return bytes(b)


def _case_path(tmp_path: Path, i: int, entry: tuple) -> Path:
    """Where case ``i`` is written: a fresh file, or for a folder format its file in a fresh folder."""
    if len(entry) == 3:
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        return folder / entry[2]
    return tmp_path / f"case{i}.bin"


def _fuzz(formats, tmp_path, per_format: int, seed: int) -> dict[str, Counter]:
    counts = {}
    for name, entry in formats.items():
        data, load = entry[0], entry[1]
        (tmp_path / "warm").mkdir(exist_ok=True)
        warm = _case_path(tmp_path / "warm", len(counts), entry) if len(entry) == 3 else tmp_path / "warm.bin"
        assert run_case(load, data, warm) == "loaded", name  # the valid file loads (and first-use imports are paid)
        rng = random.Random(f"{seed}:{name}")
        c = Counter()
        worst = 0.0
        sub = tmp_path / f"f{len(counts)}"
        sub.mkdir()
        for i in range(per_format):
            t0 = time.perf_counter()
            c[run_case(load, mutate(data, rng), _case_path(sub, i, entry))] += 1
            worst = max(worst, time.perf_counter() - t0)
        c["worst_ms"] = round(worst * 1000)
        counts[name] = c
    return counts


def test_fuzz_fast_subset(formats, tmp_path):
    counts = _fuzz(formats, tmp_path, per_format=20, seed=0)
    assert all(c["loaded"] + c["refused"] == 20 for c in counts.values())
    assert all(c["refused"] > 0 for c in counts.values())  # the mutations do damage


@pytest.mark.slow
def test_fuzz_2250_cases(formats, tmp_path):
    import resource

    (tmp_path / "warm-up").mkdir()
    _fuzz(formats, tmp_path / "warm-up", per_format=1, seed=2)  # first-use imports and allocations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (tmp_path / "cases").mkdir()
    counts = _fuzz(formats, tmp_path / "cases", per_format=250, seed=1)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB: no case used more than this
    print({k: dict(v) for k, v in counts.items()}, f"peak RSS growth over all cases {grown / 1024:.1f} MiB")
    assert grown < 200 * 1024  # far below what any lying header declares (GiB)
    assert sum(c["loaded"] + c["refused"] for c in counts.values()) == 250 * len(formats)


# --- headers that lie ------------------------------------------------------------------------

def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _safetensors_parts(data: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _safetensors(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def test_lying_safetensors_headers_are_refused(formats, tmp_path):
    data, load = formats["nada generator"]
    header, body = _safetensors_parts(data)
    first = next(k for k in header if k != "__metadata__")
    cases = {
        "header length of gigabytes": struct.pack("<Q", 2**40) + data[8:],
        "header length past the end": struct.pack("<Q", len(data)) + data[8:],
        "offsets out of range": _safetensors({**header, first: {**header[first],
                                              "data_offsets": [0, len(body) + 10**9]}}, body),
        "overlapping tensors": _safetensors({**header, **{k: {**v, "data_offsets": [0, v["data_offsets"][1] - v["data_offsets"][0]]}
                                             for k, v in header.items() if k != "__metadata__"}}, body),
        "dtype that does not match the bytes": _safetensors({**header, first: {**header[first], "dtype": "F64"}}, body),
        "shape that does not match the bytes": _safetensors({**header, first: {**header[first], "shape": [10**6, 10**6]}},
                                                            body),
    }
    run_case(load, data, tmp_path / "valid.safetensors")
    before = _peak_mib()
    for what, bad in cases.items():
        assert run_case(load, bad, tmp_path / "lie.safetensors") == "refused", what
    assert _peak_mib() - before < 200  # nothing near the declared sizes (GiB to TB) was allocated


def test_lying_pickles_are_refused(formats, tmp_path):
    _, load = formats["NVIDIA .pkl"]

    def storage_bomb() -> bytes:
        """A network pickle whose one storage record (the legacy torch.save layout NVIDIA pickles
        embed) declares 2**30 floats (4 GiB) while holding 4."""
        f = io.BytesIO()
        torch.save(torch.zeros(4), f, _use_new_zipfile_serialization=False)
        blob = f.getvalue()
        at = blob.index(b"X\x03\x00\x00\x00cpu") + 8  # after 'cpu' and its memo put: the element count
        assert blob[at] == ord("q") and blob[at + 2 : at + 4] == b"K\x04", blob[at - 20 : at + 8]
        blob = blob[: at + 2] + b"J\x00\x00\x00\x40" + blob[at + 4 :]

        class Storage:
            def __reduce__(self):
                return torch.storage._load_from_bytes, (blob,)

        return pickle.dumps({"G_ema": Storage()}, protocol=4)

    cases = {
        "storage claiming a terabyte": storage_bomb(),
        "deep nesting": b"\x80\x04" + b"(" * 200_000 + b"t" * 200_000 + b".",
        "recursion": b"\x80\x04]q\x00h\x00a.",
        "unknown globals": pickle.dumps({"G_ema": __import__("os").getcwd}, protocol=4),
        "ndarray allocation": b"\x80\x03cnumpy\nndarray\nq\x00J\xff\xff\xff\x7f\x85q\x01\x85q\x02Rq\x03.",
    }
    run_case(load, formats["NVIDIA .pkl"][0], tmp_path / "valid.pkl")
    before = _peak_mib()
    for what, bad in cases.items():
        assert run_case(load, bad, tmp_path / "lie.pkl") == "refused", what
    assert _peak_mib() - before < 200  # the 4 GiB storage and the 8 GiB array were never allocated


def test_zip_member_with_a_lying_size_is_refused(formats, tmp_path):
    data, load = formats["rosinality .pt"]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = [(i, zf.read(i.filename)) for i in zf.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for info, content in members:
            zf.writestr(info, content)
    raw = bytearray(out.getvalue())
    # the central directory's uncompressed size of the first data member: claim 64 GiB
    cd = raw.rfind(b"PK\x01\x02")
    first = raw.find(b"PK\x01\x02")
    assert first <= cd
    struct.pack_into("<I", raw, first + 24, 0xFFFFFFF0)
    run_case(load, data, tmp_path / "valid.pt")
    before = _peak_mib()
    assert run_case(load, bytes(raw), tmp_path / "lie.pt") == "refused"
    assert _peak_mib() - before < 200
