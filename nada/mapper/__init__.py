"""Latent mappers (StyleCLIP's levels mapper, as StyleGAN-NADA uses it): one text-driven edit
in W+ of a generator, trained on the source or an adapted generator, stored without it."""

from .apply import edit_grid, edit_images, mapper_and_generator
from .config import MapperConfig
from .evaluate import evaluate_mapper, format_mapper_table
from .files import LoadedMapper, check_fits, load_latents, load_mapper, save_latents, save_mapper
from .network import DEFAULT_STRENGTH, LevelsMapper, MapperArch
from .trainer import MapperResult, load_mapper_config, prepare_mapper, train_mapper

__all__ = [
    "DEFAULT_STRENGTH", "LevelsMapper", "LoadedMapper", "MapperArch", "MapperConfig", "MapperResult",
    "check_fits", "edit_grid", "edit_images", "evaluate_mapper", "format_mapper_table", "load_latents",
    "load_mapper", "load_mapper_config", "mapper_and_generator", "prepare_mapper", "save_latents",
    "save_mapper", "train_mapper",
]
