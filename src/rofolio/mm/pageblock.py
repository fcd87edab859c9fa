"""Per-pageblock migratetypes, kept as an interval map rather than one entry per pageblock.

The kernel stores a few bits per pageblock (2^pageblock_order pages) in
``zone->pageblock_flags`` (include/linux/pageblock-flags.h).  A 64 TiB
machine has 2^25 pageblocks, so the model keeps maximal runs of pageblocks
with the same migratetype in a sorted dict keyed by their first pfn.
memmap_init_range() marks every pageblock MIGRATE_MOVABLE at boot, which is
the initial single run.
"""

from __future__ import annotations

from sortedcontainers import SortedDict

from rofolio.mm.gfp import PAGEBLOCK_ORDER, MigrateType

__all__ = ["PAGEBLOCK_NR_PAGES", "PageblockMap", "pageblock_start"]

PAGEBLOCK_NR_PAGES = 1 << PAGEBLOCK_ORDER


def pageblock_start(pfn: int) -> int:
    return pfn & ~(PAGEBLOCK_NR_PAGES - 1)


class PageblockMap:
    """get_pfnblock_migratetype() / set_pageblock_migratetype() over sparse runs."""

    def __init__(self, initial: MigrateType = MigrateType.MOVABLE) -> None:
        self._runs: SortedDict = SortedDict({0: initial})  # first pfn of a run -> migratetype

    def get(self, pfn: int) -> MigrateType:
        """get_pfnblock_migratetype()."""
        index = self._runs.bisect_right(pfn) - 1
        return self._runs.values()[index]

    def set_range(self, start_pfn: int, end_pfn: int, mt: MigrateType) -> None:
        """set_pageblock_migratetype() on every pageblock of [start_pfn, end_pfn) (pageblock aligned)."""
        start, end = pageblock_start(start_pfn), pageblock_start(end_pfn + PAGEBLOCK_NR_PAGES - 1)
        if start >= end:
            return
        after = self.get(end)
        for key in list(self._runs.irange(start, end, inclusive=(True, True))):
            del self._runs[key]
        self._runs[start] = mt
        self._runs[end] = after
        self._coalesce(start)
        self._coalesce(end)

    def _coalesce(self, key: int) -> None:
        index = self._runs.index(key) if key in self._runs else -1
        if index > 0 and self._runs.values()[index - 1] == self._runs[key]:
            del self._runs[key]

    def runs(self) -> list[tuple[int, MigrateType]]:
        return list(self._runs.items())
