"""Data package: the shapes world's shipped models, installed as ``nada._pretrained`` (see pyproject.toml)."""
