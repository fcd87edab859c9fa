"""Kernel warning texts of the MM paths (the oops texts are the architecture's: ``ArchKernel.oops_text()``)."""

from __future__ import annotations

__all__ = ["warning_text"]


def warning_text(where: str, message: str) -> str:
    """A WARN()-style report: the cut-here line, the location, the message."""
    return "\n".join(("------------[ cut here ]------------", f"WARNING: CPU: 0 PID: 1 at {where}", message))
