"""Checks of the oracle commands' guest options, made before anything is downloaded, built or booted."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["TIMEOUT", "check_cpu", "check_guest_mem"]

TIMEOUT = click.FloatRange(min=1.0)  # seconds: a guest boots in 2 to 20 s, so less than one is a mistake


def check_guest_mem(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """--mem (one value or repeated): a size the model can boot (physmem.check_ram()), as QEMU -m takes it."""
    from rofolio.errors import ConfigError
    from rofolio.physmem import check_ram
    from rofolio.units import parse_size

    for text in (value,) if isinstance(value, str) else value or ():
        try:
            check_ram(parse_size(text))
        except ConfigError as err:
            raise click.BadParameter(f"{err.message} ({err.hint})" if err.hint else err.message) from None
    return value


def check_cpu(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """--cpu (one value or repeated): a QEMU -cpu model, which cannot be empty."""
    for text in (value,) if isinstance(value, str) else value or ():
        if not text.strip():
            raise click.BadParameter("an empty CPU model (QEMU -cpu needs one, e.g. max,-la57)")
    return value
