"""Domain adapters and domain files: identity at init, each kind against an independent
formulation (the modulated conv with an explicitly scaled weight / shifted style), composition
rules, baking equals applying on the fly, only adapter numbers learn, resume bit for bit, the
file round trip and its refusals, and the CLI (generate / convert / info with --domain)."""

from __future__ import annotations

import json

import pytest
import torch
from test_adapt import objective, tiny_cfg

from nada.adapt import TrainConfig, train
from nada.adapt.adapters import AppliedEdit, Domain, StyleAdapter, bake, compose
from nada.checkpoints import load_generator, save_generator
from nada.cli import main
from nada.domains import base_record, read_domain, save_domain
from nada.errors import CheckpointError, ConfigError
from nada.networks import Generator
from nada.networks.layers import modulated_conv2d

NAMES = ["b8.conv0", "b8.conv1", "b8.torgb", "b16.conv0", "b16.torgb"]


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(tiny_cfg()).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def gen_path(tmp_path_factory, G):
    path = tmp_path_factory.mktemp("gen") / "tiny.safetensors"
    save_generator(G, path)
    return path


def ws_for(G, n=3, seed=1):
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return G.mapping(z)


def random_domain(kind, G, names=NAMES, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    layers = {r.name: r.module for r in G.synthesis.layers()}
    tensors = {}
    for n in names:
        c = layers[n].affine.weight.shape[0]
        r = torch.randn(c, generator=g) * scale
        tensors[n] = r.exp() if kind == "modulation" else r
    return Domain(kind, tensors)


@pytest.mark.parametrize("kind", ["stylespace", "modulation"])
def test_fresh_adapter_is_the_identity(G, kind):
    ws = ws_for(G)
    base = G.synthesis(ws)
    adapter = StyleAdapter.for_layers(kind, G.synthesis, NAMES).attach(G.synthesis)
    try:
        assert torch.equal(G.synthesis(ws), base)
    finally:
        adapter.detach()
    assert torch.equal(G.synthesis(ws), base)  # detached: the hooks are gone


def _layer_out(layer, x, w, weight=None, style_fn=lambda s: s):
    """A SynthesisLayer's forward written out with modulated_conv2d (no noise), for an
    independent formulation of the adapted layer."""
    import stylegan2_ops

    styles = style_fn(layer.affine(w))
    y = modulated_conv2d(x, layer.weight if weight is None else weight, styles, up=layer.up,
                         resample_filter=layer.resample_filter)
    return stylegan2_ops.bias_act(y, layer.bias, act="lrelu")


def test_modulation_is_a_per_input_channel_weight_multiplier(G):
    layer = G.synthesis.b16.conv0
    x = torch.randn(2, layer.weight.shape[1], 8, 8, generator=torch.Generator().manual_seed(3))
    w = ws_for(G, 2)[:, 0]
    adapter = StyleAdapter.for_layers("modulation", G.synthesis, ["b16.conv0"])
    m = torch.rand(layer.weight.shape[1], generator=torch.Generator().manual_seed(4)) + 0.5
    adapter.load_tensors({"b16.conv0": m})
    adapter.attach(G.synthesis)
    try:
        hooked = layer(x, w, noise_mode="none")
    finally:
        adapter.detach()
    explicit = _layer_out(layer, x, w, weight=layer.weight * m.reshape(1, -1, 1, 1))
    assert torch.allclose(hooked, explicit, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(hooked, layer(x, w, noise_mode="none"), atol=1e-3)


def test_stylespace_offsets_the_affine_output(G):
    layer = G.synthesis.b8.conv1
    x = torch.randn(2, layer.weight.shape[1], 8, 8, generator=torch.Generator().manual_seed(5))
    w = ws_for(G, 2)[:, 2]
    d = torch.randn(layer.weight.shape[1], generator=torch.Generator().manual_seed(6))
    adapter = StyleAdapter.for_layers("stylespace", G.synthesis, ["b8.conv1"])
    adapter.load_tensors({"b8.conv1": d})
    adapter.attach(G.synthesis)
    try:
        hooked = layer(x, w, noise_mode="none")
    finally:
        adapter.detach()
    assert torch.allclose(hooked, _layer_out(layer, x, w, style_fn=lambda s: s + d), atol=1e-5, rtol=1e-5)


def test_composition_rules_against_explicit_formulas(G):
    m1, m2 = random_domain("modulation", G, seed=1), random_domain("modulation", G, seed=2)
    s1, s2 = random_domain("stylespace", G, seed=3), random_domain("stylespace", G, seed=4)
    edit = compose([(m1, 0.7), (m2, -1.5), (s1, 2.0), (s2, 0.25)])
    for n in NAMES:
        scale = m1.tensors[n] ** 0.7 * m2.tensors[n] ** -1.5  # multipliers: a weighted product of powers
        assert torch.allclose(edit.scale[n], scale, rtol=1e-5)
        assert torch.allclose(edit.shift[n], 2.0 * s1.tensors[n] + 0.25 * s2.tensors[n], atol=1e-6)
    # weight 0 is the identity, and a domain with weight 1 is itself
    zero = compose([(m1, 0.0), (s1, 0.0)])
    assert all(torch.equal(v, torch.ones_like(v)) for v in zero.scale.values())
    assert all(torch.equal(v, torch.zeros_like(v)) for v in zero.shift.values())
    one = compose([(m1, 1.0)])
    assert all(torch.allclose(one.scale[n], m1.tensors[n], rtol=1e-6) for n in NAMES)


def test_baking_equals_applying_on_the_fly(G):
    import copy

    edit = compose([(random_domain("modulation", G, seed=7), 1.0), (random_domain("stylespace", G, seed=8), 1.0),
                    (random_domain("stylespace", G, names=["b4.conv1", "b4.torgb"], seed=9), 0.5)])
    ws = ws_for(G, 4)
    hooks = AppliedEdit(edit, G.synthesis)
    try:
        live = G.synthesis(ws)
    finally:
        hooks.remove()
    baked = copy.deepcopy(G.synthesis)
    bake(baked, edit)
    out = baked(ws)
    assert float((out - live).abs().max()) <= 1e-5
    assert float((out - G.synthesis(ws)).abs().max()) > 1e-2  # the domain does change the images


def test_baking_is_exact_in_float64():
    """Baking is the same function, not an approximation: on the shipped 64 px generator every
    layer baked with a scale and a shift renders what the hooks give, to float64 rounding. (In
    fp32 the two orders of rounding differ by up to ~3e-5 with the CPU Winograd kernels, as much
    as fp32 differs from float64 itself; docs/domains.md.)"""
    import copy

    from nada.hub import resolve_generator

    G = load_generator(resolve_generator("shapes")).generator.double()
    names = [r.name for r in G.synthesis.layers()]
    edit = compose([(random_domain("modulation", G, names=names, seed=3), 1.0),
                    (random_domain("stylespace", G, names=names, seed=4), 0.7)])
    ws = ws_for(G, 4).double()
    with torch.no_grad():
        hooks = AppliedEdit(edit, G.synthesis)
        try:
            live = G.synthesis(ws, noise_mode="const")
        finally:
            hooks.remove()
        baked = copy.deepcopy(G.synthesis)
        bake(baked, edit)
        out = baked(ws, noise_mode="const")
    assert float((out - live).abs().max()) <= 1e-11 * float(live.abs().max())
    assert float((out - G.synthesis(ws, noise_mode="const")).abs().max()) > 1e-2


def test_applying_to_the_wrong_architecture_is_refused(G):
    edit = compose([(Domain("stylespace", {"b128.conv0": torch.zeros(4)}), 1.0)])
    with pytest.raises(ConfigError, match="does not have"):
        AppliedEdit(edit, G.synthesis)
    edit = compose([(Domain("stylespace", {"b8.conv0": torch.zeros(5)}), 1.0)])
    with pytest.raises(ConfigError, match="channels"):
        bake(G.synthesis, edit)


def run_cfg(gen_path, out, **kw):
    base = dict(out=str(out), generator=str(gen_path), clip=("standin",), target="sketch", iters=3,
                sample_every=2, save_every=2, sample_seeds="0-3", quiet=True, device="cpu", layers="b8.*,b16.*",
                auto_layer_iters=1, auto_layer_k=2, auto_layer_batch=2, lr=0.05)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("kind", ["stylespace", "modulation"])
def test_adapter_run_learns_only_its_numbers(gen_path, tmp_path, kind):
    from nada.adapt import rundir
    from nada.adapt.trainer import Trainer, prepare

    prep = prepare(run_cfg(gen_path, tmp_path / "run", adapter=kind), objective())
    before = {k: v.clone() for k, v in prep.twin.trainable.state_dict().items()}
    before_frozen = {k: v.clone() for k, v in prep.twin.frozen.state_dict().items()}
    trainer = Trainer(prep, rundir.create_run_dir(prep.cfg))
    grads = []
    orig_step = trainer.opt.step

    def spy():
        grads.append({n for n, p in trainer.adapter.params.items() if p.grad is not None})
        assert all(p.grad is None for p in prep.twin.trainable.parameters())
        orig_step()
    trainer.opt.step = spy
    result = trainer.run()
    # the base weights never change, in either twin
    assert all(torch.equal(before[k], v) for k, v in prep.twin.trainable.state_dict().items())
    assert all(torch.equal(before_frozen[k], v) for k, v in prep.twin.frozen.state_dict().items())
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for record, got in zip(records, grads):  # each step, only the chosen layers' adapters had grads
        assert got == {n.replace(".", "_") for n in record["layers"]}
    domain = read_domain(result.generator_path)
    assert result.generator_path.name == "domain.safetensors" and domain.kind == kind
    assert set(domain.tensors) == {"b8.conv0", "b8.conv1", "b8.torgb", "b16.conv0", "b16.conv1", "b16.torgb"}
    assert result.generator_path.stat().st_size < 8192
    assert (tmp_path / "run" / "checkpoints" / "iter_000002.domain.safetensors").is_file()
    assert not (tmp_path / "run" / "generator.safetensors").exists()
    chosen = {n for r in records for n in r["layers"]}
    ident = 1.0 if kind == "modulation" else 0.0
    for name, t in domain.tensors.items():
        assert (name in chosen) == (not torch.all(t == ident)), name
    # the domain opens as a generator (baked) and renders what the trained twin rendered
    ws = ws_for(prep.twin.generator("frozen"), 2)
    with torch.no_grad():
        live = prep.twin.trainable(ws)
    from nada.hub import resolve_generator

    baked = load_generator(resolve_generator(tmp_path / "run")).generator.synthesis(ws)
    assert float((baked - live).abs().max()) <= 1e-5


@pytest.mark.parametrize("kind", ["stylespace", "modulation"])
def test_adapter_resume_is_bit_for_bit(gen_path, tmp_path, kind):
    kw = dict(iters=4, adapter=kind, sample_every=0, save_every=0, mixing=0.5)
    full = train(run_cfg(gen_path, tmp_path / "full", **kw), objective())
    train(run_cfg(gen_path, tmp_path / "part", **{**kw, "iters": 2}), objective())
    resumed = train(run_cfg(gen_path, tmp_path / "part", resume=True, iters=4), objective())
    a, b = read_domain(full.generator_path), read_domain(resumed.generator_path)
    assert all(torch.equal(a.tensors[n], b.tensors[n]) for n in a.tensors)


def test_adapter_config_checks(gen_path, tmp_path):
    with pytest.raises(ConfigError, match="unknown adapter"):
        run_cfg(gen_path, tmp_path / "x", adapter="lora")
    with pytest.raises(ConfigError, match="--adapter full only"):
        run_cfg(gen_path, tmp_path / "x", adapter="stylespace", train_generator=str(gen_path))
    # an unset lr follows the adapter's factor, recorded in origin
    cfg = TrainConfig(target="sketch", adapter="stylespace", generator=str(gen_path), clip=("standin",))
    assert cfg.lr == pytest.approx(0.02) and "stylespace" in cfg.origin["lr"]
    assert TrainConfig(target="sketch", adapter="stylespace", lr=0.1, generator=str(gen_path)).lr == 0.1


def _domain_file(tmp_path, G, gen_path, kind="stylespace", seed=0, name="d.safetensors"):
    d = random_domain(kind, G, seed=seed)
    return save_domain(d.tensors, kind, tmp_path / name, base_record(str(gen_path), gen_path, G),
                       {"source": "photo", "target": "sketch"})


def test_domain_file_round_trip_and_refusals(G, gen_path, tmp_path):
    path = _domain_file(tmp_path, G, gen_path, "modulation")
    d = read_domain(path)
    ref = random_domain("modulation", G)
    assert d.kind == "modulation" and list(d.tensors) == NAMES
    assert all(torch.equal(d.tensors[n], ref.tensors[n]) for n in NAMES)
    assert d.info["target"] == "sketch" and d.base["config"] == G.cfg.to_dict()
    # damaged files are one-line errors
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        read_domain(tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match="not a nada domain"):
        read_domain(gen_path)
    with pytest.raises(ConfigError, match="not a file"):
        read_domain(tmp_path / "missing.safetensors")
    bad = {n: -t for n, t in ref.tensors.items()}
    save_domain(bad, "stylespace", tmp_path / "neg.safetensors", d.base)  # fine as offsets ...
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(tmp_path / "neg.safetensors"), "pt") as f:
        meta = f.metadata()
    tensors = {k.replace(".offset", ".multiplier"): v for k, v in load_file(tmp_path / "neg.safetensors").items()}
    save_file(tensors, tmp_path / "negmul.safetensors", metadata={**meta, "kind": "modulation"})
    with pytest.raises(CheckpointError, match="<= 0"):  # ... not as multipliers
        read_domain(tmp_path / "negmul.safetensors")


def test_cli_generate_convert_info_with_domains(G, gen_path, tmp_path, capsys):
    a = _domain_file(tmp_path, G, gen_path, "stylespace", seed=1, name="a.safetensors")
    b = _domain_file(tmp_path, G, gen_path, "modulation", seed=2, name="b.safetensors")
    # bake two weighted domains into full generators, in both formats, and compare with the API
    assert main(["convert", str(gen_path), str(tmp_path / "ab.safetensors"), "--domain", f"{a}:0.5",
                 "--domain", str(b)]) == 0
    assert main(["convert", str(tmp_path / "ab.pt"), "--domain", f"{a}:0.5", "--domain", str(b)]) == 0  # IN = base
    ws = ws_for(G, 2)
    edit = compose([(read_domain(a).domain, 0.5), (read_domain(b).domain, 1.0)])
    hooks = AppliedEdit(edit, G.synthesis)
    try:
        live = G.synthesis(ws)
    finally:
        hooks.remove()
    for out in ("ab.safetensors", "ab.pt"):
        baked = load_generator(tmp_path / out).generator.synthesis(ws)
        assert float((baked - live).abs().max()) <= 1e-5, out
    # a domain file is itself a generator: base + domain at weight 1
    one = load_generator(a)
    assert one.format == "domain"
    hooks = AppliedEdit(compose([(read_domain(a).domain, 1.0)]), G.synthesis)
    try:
        assert float((one.generator.synthesis(ws) - G.synthesis(ws)).abs().max()) <= 1e-5
    finally:
        hooks.remove()
    assert main(["generate", "--generator", str(gen_path), "--domain", f"{a}:2", "--seeds", "0-3",
                 "--out", str(tmp_path / "g.png"), "--device", "cpu"]) == 0
    assert (tmp_path / "g.png").is_file()
    assert main(["info", str(a)]) == 0
    out = capsys.readouterr().out
    assert "nada domain (stylespace)" in out and "numbers" in out and G.cfg.to_dict() and "sketch" in out


def test_mismatched_base_is_refused_or_forced(G, gen_path, tmp_path, capsys, caplog):
    a = _domain_file(tmp_path, G, gen_path)
    torch.manual_seed(1)
    other = save_generator(Generator(tiny_cfg()), tmp_path / "other.safetensors")  # same architecture
    rc = main(["generate", "--generator", str(other), "--domain", str(a), "--seeds", "0", "--out",
               str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "trained on" in err and "--force" in err and not (tmp_path / "x.png").exists()
    assert main(["generate", "--generator", str(other), "--domain", str(a), "--force", "--seeds", "0",
                 "--out", str(tmp_path / "x.png")]) == 0
    assert "applied anyway" in caplog.text
    from nada.networks import GeneratorConfig

    big = save_generator(Generator(GeneratorConfig(img_resolution=32, z_dim=16, w_dim=16, mapping_layers=2,
                                                   channel_base=128, channel_max=16)), tmp_path / "big.safetensors")
    rc = main(["generate", "--generator", str(big), "--domain", str(a), "--force", "--seeds", "0",
               "--out", str(tmp_path / "y.png")])
    assert rc == 2 and "another architecture" in capsys.readouterr().err


def test_web_demo_mixes_domain_runs(tmp_path):
    """Explore's mixer: two short shapes-world domain runs in a runs folder, mixed at weights;
    the bottom row equals the composition baked into the base, and bad choices are one line."""
    from nada.app.compare import Viewer, domain_runs, mix_view
    from nada.app.context import AppContext
    from nada.hub import shapes_generator_path

    runs = tmp_path / "runs"
    for target, kind in (("sketch", "stylespace"), ("blue", "modulation")):
        train(TrainConfig(target=target, adapter=kind, iters=3, out=str(runs / target), quiet=True,
                          evaluate=False, sample_every=0, save_every=0, device="cpu"))
    train(TrainConfig(target="neon", iters=2, out=str(runs / "whole"), quiet=True, evaluate=False,
                      sample_every=0, save_every=0, device="cpu"))
    ctx = AppContext(runs)
    try:
        assert {r.name for r in domain_runs(ctx)} == {"sketch", "blue"}
        viewer = Viewer(torch.device("cpu"))
        grid, caption = mix_view(ctx, viewer, ["sketch", "blue"], [0.5, 1.5], [0, 1, 2], 0.7)
        assert "0.5 × `sketch`" in caption and "1.5 × `blue`" in caption
        from nada.networks.sampling import generate_images

        G = load_generator(shapes_generator_path()).generator
        base_row = generate_images(G, [0, 1, 2], 0.7)
        bake_gen = load_generator(shapes_generator_path()).generator
        from nada.domains import bake_into

        bake_into(bake_gen, [(read_domain(runs / "sketch"), 0.5), (read_domain(runs / "blue"), 1.5)])
        mixed_row = generate_images(bake_gen, [0, 1, 2], 0.7)
        import numpy as np

        from nada.networks.sampling import image_grid

        expected = image_grid(np.concatenate([base_row, mixed_row]), cols=3, pad=2)
        assert grid.shape == expected.shape
        assert int(np.abs(grid.astype(int) - expected.astype(int)).max()) <= 1
        assert int(np.abs(mixed_row.astype(int) - base_row.astype(int)).max()) > 10  # the domains change the image
        # a domain run in the ordinary view: weight = the blend slider, exact at 0
        view = viewer.render("sketch", runs / "sketch", [0], 0.7, 0.0)
        assert (abs(view.blended.astype(int) - view.frozen.astype(int))).max() == 0
        with pytest.raises(ConfigError, match="not a domain"):
            mix_view(ctx, viewer, ["whole"], [1.0], [0], 0.7)
        with pytest.raises(ConfigError, match="no domain"):
            mix_view(ctx, viewer, [], [], [0], 0.7)
    finally:
        ctx.close()
