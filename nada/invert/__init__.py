"""Real images into a generator's latent space: optimisation-based projection (W / W+), an
e4e encoder, losses (LPIPS VGG16 or pixel + multi-scale), image loading and face alignment.
See docs/invert.md."""
