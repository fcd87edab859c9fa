"""Kernel error numbers mm returns that ``rofolio.errors.Errno`` does not list yet.

From include/uapi/asm-generic/errno-base.h; returned negative, like Errno's.
"""

from __future__ import annotations

__all__ = ["EAGAIN", "EINTR"]

EINTR = 4  # offline_pages(): "signal backoff"
EAGAIN = 11  # folio_migrate_mapping(): unexpected references (a pin)
