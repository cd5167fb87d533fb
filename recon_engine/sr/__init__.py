"""Super-resolution of reconstructed images (post-processing)."""
