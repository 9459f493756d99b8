"""nada.layer_groups: names ↔ style indices agree with the generator, globs, presets, errors."""

from __future__ import annotations

import pytest

from nada import layer_groups as lg
from nada.errors import ConfigError


def test_names_and_indices_1024():
    names = lg.layer_names(1024)
    assert names[:5] == ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb"]
    assert len(names) == 1 + 1 + 8 * 3 and lg.num_ws(1024) == 18
    # Counting convs in forward order gives each conv its index; a ToRGB takes the next one.
    conv_idx = 0
    for name in names:
        if name.endswith(".torgb"):
            assert lg.w_index(name, 1024) == conv_idx
        else:
            assert lg.w_index(name, 1024) == conv_idx
            conv_idx += 1
    assert lg.w_index("b1024.torgb", 1024) == 17


def test_globs_presets_and_indices():
    assert lg.resolve("b8.*", 256) == ["b8.conv0", "b8.conv1", "b8.torgb"]
    assert lg.resolve("*.torgb", 16) == ["b4.torgb", "b8.torgb", "b16.torgb"]
    assert lg.resolve("b16.conv1, b4.conv1, b4.conv1", 64) == ["b4.conv1", "b16.conv1"]
    assert lg.resolve("all", 64) == lg.layer_names(64)
    shape, texture = lg.resolve("shape", 256), lg.resolve("texture", 256)
    assert set(shape) | set(texture) == set(lg.layer_names(256)) and not set(shape) & set(texture)
    assert all(int(n.split(".")[0][1:]) <= 32 for n in shape)
    assert lg.w_indices("b8.*", 64) == [1, 2, 3]
    assert lg.layers_for_w_indices([1], 64) == ["b4.torgb", "b8.conv0"]


@pytest.mark.parametrize("spec", ["b8.conv2", "b2048.conv1", "b4.conv0", "conv1", "b9.*", ""])
def test_unknown_names_raise(spec):
    with pytest.raises(ConfigError):
        lg.resolve(spec, 256)


def test_bad_indices_and_resolution():
    with pytest.raises(ConfigError, match="out of range"):
        lg.layers_for_w_indices([14], 256)
    with pytest.raises(ConfigError):
        lg.layer_names(100)
