"""Reconstruction methods: one module per method, each calling ``registry.register``."""
