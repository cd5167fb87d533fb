"""Reconstruction methods: one module per method, each calling :func:`recon_engine.registry.register`."""
