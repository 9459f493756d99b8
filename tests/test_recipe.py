"""Training recipes carried by generator files (nada.recipe): the shipped generator's recipe is
what makes the shapes-world defaults, by name or by path; a file without one trains with the
official defaults; presets and options override it; adapted generators carry it forward."""

from __future__ import annotations

import json

import pytest
import torch
from test_adapt import objective, tiny_cfg

from nada.adapt import TrainConfig, train
from nada.adapt.config import OFFICIAL_CLIP
from nada.checkpoints import load_generator, save_generator
from nada.cli import main
from nada.errors import ConfigError
from nada.hub import resolve_generator
from nada.networks import Generator
from nada.recipe import RECIPE_KEY, Recipe, read_recipe

SHAPES_VALUES = {"layers": "texture", "lr": 0.03, "batch": 16, "lr_final": pytest.approx(1 / 3),
                 "clip": ("shapes", "shapes-fine"), "auto_layer_iters": 0, "evaluator": "shapes"}


def _values(cfg: TrainConfig) -> dict:
    return {k: getattr(cfg, k) for k in SHAPES_VALUES}


def test_shipped_generator_carries_the_shapes_recipe():
    recipe = read_recipe(resolve_generator("shapes"))
    assert recipe is not None and recipe.evaluator == "shapes"
    assert recipe.train["layers"] == "texture" and recipe.mapper["clip"] == ("shapes", "shapes-fine")


def test_by_name_and_by_path_train_the_same():
    by_name = TrainConfig(target="sketch")
    by_path = TrainConfig(target="sketch", generator=str(resolve_generator("shapes")))
    assert _values(by_name) == _values(by_path) == SHAPES_VALUES
    assert by_path.origin["lr"].startswith("recipe (") and by_path.origin["target"] == "option"
    assert by_name.origin["sample_every"] == "default"


def _with_recipe(tmp_path, recipe: dict | None, name="g.safetensors"):
    path = tmp_path / name
    torch.manual_seed(0)
    save_generator(Generator(tiny_cfg()), path, metadata={} if recipe is None else {RECIPE_KEY: recipe})
    return str(path)


def test_file_without_recipe_gets_official_defaults(tmp_path):
    cfg = TrainConfig(target="sketch", generator=_with_recipe(tmp_path, None))
    assert (cfg.layers, cfg.lr, cfg.batch, cfg.lr_final, cfg.clip, cfg.evaluator) == \
        (None, 0.002, 2, 1.0, OFFICIAL_CLIP, "")
    assert cfg.auto_layer_iters == 1 and cfg.origin["lr"] == "default"


def test_own_recipe_then_preset_then_options(tmp_path):
    g = _with_recipe(tmp_path, {"train": {"layers": "b8.*", "lr": 0.01, "batch": 4, "clip": ["a", "b"],
                                          "clip_weights": [1.0, 0.5]}})
    cfg = TrainConfig(target="sketch", generator=g)
    assert (cfg.layers, cfg.lr, cfg.batch, cfg.clip, cfg.clip_weights) == ("b8.*", 0.01, 4, ("a", "b"), (1.0, 0.5))
    assert cfg.evaluator == ""  # no evaluator named: nothing judges this generator
    # an option overrides one value of the recipe
    assert TrainConfig(target="sketch", generator=g, lr=0.05).batch == 4
    # a preset that chooses the layers drops the recipe's layer setting (measured together), not its CLIPs
    paper = TrainConfig.from_preset("paper", target="sketch", generator=g)
    assert (paper.layers, paper.lr, paper.batch, paper.clip) == (None, 0.002, 2, ("a", "b"))
    assert paper.origin["auto_layer_k"] == "preset paper"
    # other CLIP models given: the recipe's weights (for its own models) do not apply
    own = TrainConfig(target="sketch", generator=g, clip=("x",))
    assert own.clip == ("x",) and own.clip_weights == (1.0,)


def test_recipe_adapters_part_sets_each_adapters_schedule(tmp_path):
    g = _with_recipe(tmp_path, {"train": {"layers": "b8.*", "lr": 0.01, "batch": 4, "lr_final": 0.5},
                                "adapters": {"modulation": {"layers": "all", "lr": 0.05, "lr_final": 1}}})
    mod = TrainConfig(target="sketch", generator=g, adapter="modulation")
    assert (mod.layers, mod.lr, mod.batch, mod.lr_final) == ("all", 0.05, 4, 1)
    assert mod.origin["lr"].endswith("modulation adapter)") and not mod.origin["batch"].endswith("adapter)")
    full = TrainConfig(target="sketch", generator=g)
    assert (full.layers, full.lr, full.lr_final) == ("b8.*", 0.01, 0.5)
    # an adapter the recipe does not tune keeps train's schedule, its lr scaled by the adapter's factor
    style = TrainConfig(target="sketch", generator=g, adapter="stylespace")
    assert (style.layers, style.lr) == ("b8.*", pytest.approx(0.1))
    # layers chosen by the user: the recipe's layer setting goes, the factor applies to the default lr
    own = TrainConfig(target="sketch", generator=g, adapter="modulation", layers="b4.*")
    assert (own.layers, own.lr, own.batch) == ("b4.*", 0.002, 2)
    for bad, match in (({"full": {"lr": 1}}, "unknown adapters"), ({"modulation": {"seed": 1}}, "unknown options"),
                       ({"modulation": 3}, "not an object")):
        with pytest.raises(ConfigError, match=match):
            Recipe.from_dict({"adapters": bad}, "x")
    r = Recipe.from_dict({"adapters": {"stylespace": {"lr": 0.3}}}, "x")
    assert Recipe.from_dict(r.to_dict()).adapters == {"stylespace": {"lr": 0.3}}


def test_bad_recipe_is_one_line_naming_the_file(tmp_path, capsys):
    g = _with_recipe(tmp_path, {"train": {"lr": 0.01, "truncation": 0.5}})
    with pytest.raises(ConfigError, match="unknown options.*truncation"):
        TrainConfig(target="sketch", generator=g)
    assert main(["train", "--generator", g, "--target", "sketch", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and g in err and not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="evaluator"):
        Recipe.from_dict({"evaluator": "faces"}, "x")


def test_convert_attaches_and_removes_a_recipe_and_info_shows_it(tmp_path, capsys):
    plain = _with_recipe(tmp_path, None)
    spec = tmp_path / "recipe.json"
    spec.write_text(json.dumps({"train": {"lr": 0.02}, "evaluator": "shapes", "note": "mine"}))
    out = tmp_path / "with.safetensors"
    assert main(["convert", plain, str(out), "--recipe", str(spec)]) == 0
    assert read_recipe(out).train == {"lr": 0.02} and TrainConfig(target="sketch", generator=str(out)).lr == 0.02
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "recipe: train" in text and "lr=0.02" in text and "mine" in text
    back = tmp_path / "without.safetensors"
    assert main(["convert", str(out), str(back), "--recipe", "none"]) == 0
    assert read_recipe(back) is None
    assert main(["convert", str(out), str(tmp_path / "r.pt"), "--recipe", str(spec)]) == 2


def test_adapted_generator_carries_the_recipe_and_config_records_origins(tmp_path):
    g = _with_recipe(tmp_path, {"train": {"layers": "b8.*", "lr": 0.01}, "note": "n"})
    cfg = TrainConfig(out=str(tmp_path / "run"), generator=g, target="sketch", iters=1, batch=2, sample_every=0,
                      save_every=0, sample_seeds="0", quiet=True, device="cpu")
    train(cfg, objective())
    adapted = load_generator(tmp_path / "run" / "generator.safetensors")
    assert adapted.metadata[RECIPE_KEY]["train"] == {"layers": "b8.*", "lr": 0.01}
    # training from the adapted generator (a run directory) starts from the same recipe
    assert TrainConfig(target="neon", generator=str(tmp_path / "run")).layers == "b8.*"
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["origin"]["lr"] == f"recipe ({g})" and saved["origin"]["batch"] == "option"
