"""Architectures: how each builds its direct map at boot and changes protections in it."""
