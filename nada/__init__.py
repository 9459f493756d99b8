"""nada: text-driven zero-shot domain adaptation of StyleGAN2 generators (StyleGAN-NADA)."""

__version__ = "0.1.0"
