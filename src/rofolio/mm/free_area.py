"""One zone's free lists: ``zone->free_area[order].free_list[migratetype]``, kept as runs of blocks.

The kernel's free lists are doubly linked lists of ``struct page``, and their
*order* matters: the allocator takes the head (``get_page_from_free_area``),
``expand()`` and most frees add at the head, while boot memory and memory
onlining add at the tail (``FPI_TO_TAIL``).  The model keeps that order with
a sequence key per entry (head inserts get ever smaller keys, tail inserts
ever larger ones) in a sorted dict per (order, migratetype).

To stay sparse on a 64 TiB machine an entry is a *run*: ``count`` buddy
blocks of one order, consecutive in pfn and adjacent in the list (boot frees
millions of MAX_PAGE_ORDER blocks in ascending order to the tail; that is
one run per memory range).  Taking a block from the middle of a run (a buddy
merge, isolation) splits it in two; the two halves keep their place in the
list because their keys are (sequence, first pfn).  A second index by pfn
answers "is the buddy of this block free, and with which order?" (PageBuddy
and buddy_order() in the kernel).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sortedcontainers import SortedDict

from rofolio.mm.gfp import MAX_PAGE_ORDER, MigrateType

__all__ = ["FreeArea", "FreeBlock", "FreeRun"]


@dataclass(slots=True)
class FreeRun:
    """``count`` free blocks of 2^order pages starting at ``pfn``, one after the other in one list."""

    pfn: int
    order: int
    count: int
    mt: MigrateType
    seq: int

    @property
    def end(self) -> int:
        return self.pfn + (self.count << self.order)

    @property
    def key(self) -> tuple[int, int]:
        return (self.seq, self.pfn)


@dataclass(frozen=True, slots=True)
class FreeBlock:
    """One free buddy block: what PageBuddy() and buddy_order() say about its first page."""

    pfn: int
    order: int
    mt: MigrateType

    @property
    def end(self) -> int:
        return self.pfn + (1 << self.order)


class FreeArea:
    """All free lists of one zone, plus the pfn index the buddy checks use."""

    def __init__(self) -> None:
        self._lists: dict[tuple[int, MigrateType], SortedDict] = {}
        self._by_pfn: SortedDict = SortedDict()  # run.pfn -> run
        self.nr_free = [0] * (MAX_PAGE_ORDER + 1)  # free blocks per order (free_area[order].nr_free)
        self._head = 0
        self._tail = 0

    # ------------------------------------------------------------------ adding
    def add(self, pfn: int, order: int, mt: MigrateType, tail: bool, count: int = 1) -> None:
        """__add_to_free_list(): ``count`` consecutive blocks at the head or the tail of their list."""
        if tail:
            self._tail += 1
            seq = self._tail
        else:
            self._head -= 1
            seq = self._head
        self._insert(FreeRun(pfn, order, count, mt, seq))

    def _insert(self, run: FreeRun) -> None:
        self._lists.setdefault((run.order, run.mt), SortedDict())[run.key] = run
        self._by_pfn[run.pfn] = run
        self.nr_free[run.order] += run.count

    def _drop(self, run: FreeRun) -> None:
        del self._lists[(run.order, run.mt)][run.key]
        del self._by_pfn[run.pfn]
        self.nr_free[run.order] -= run.count

    # ----------------------------------------------------------------- queries
    def first(self, order: int, mt: MigrateType) -> FreeBlock | None:
        """The head of free_list[mt] at ``order`` (get_page_from_free_area())."""
        lst = self._lists.get((order, mt))
        if not lst:
            return None
        run = lst.values()[0]
        return FreeBlock(run.pfn, order, mt)

    def nonempty(self, order: int, mt: MigrateType) -> bool:
        return bool(self._lists.get((order, mt)))

    def find(self, pfn: int) -> FreeBlock | None:
        """The free block that contains ``pfn``, if any."""
        index = self._by_pfn.bisect_right(pfn) - 1
        if index < 0:
            return None
        run = self._by_pfn.values()[index]
        if pfn >= run.end:
            return None
        start = run.pfn + (((pfn - run.pfn) >> run.order) << run.order)
        return FreeBlock(start, run.order, run.mt)

    def find_exact(self, pfn: int, order: int) -> FreeBlock | None:
        """page_is_buddy(): a free block that starts at ``pfn`` and has exactly ``order``."""
        block = self.find(pfn)
        if block is None or block.pfn != pfn or block.order != order:
            return None
        return block

    def blocks(self, start: int, end: int, reverse: bool = False) -> Iterator[FreeBlock]:
        """Free blocks that start inside [start, end), by pfn (lazily, so a huge run costs nothing unread)."""
        lo = max(self._by_pfn.bisect_right(start) - 1, 0)
        hi = self._by_pfn.bisect_left(end)
        runs = list(self._by_pfn.values()[lo:hi])
        if reverse:
            runs.reverse()
        for run in runs:
            size = 1 << run.order
            i0 = max(0, -(-(start - run.pfn) // size))
            i1 = min(run.count, -(-(end - run.pfn) // size))
            indices = range(i1 - 1, i0 - 1, -1) if reverse else range(i0, i1)
            for i in indices:
                yield FreeBlock(run.pfn + i * size, run.order, run.mt)

    def runs(self) -> Iterator[FreeRun]:
        return iter(list(self._by_pfn.values()))

    @property
    def free_pages(self) -> int:
        return sum(n << order for order, n in enumerate(self.nr_free))

    def list_order(self, order: int, mt: MigrateType) -> list[int]:
        """The pfns of free_list[mt] at ``order`` from head to tail (for tests and reports)."""
        out: list[int] = []
        for run in self._lists.get((order, mt), SortedDict()).values():
            out.extend(run.pfn + (i << order) for i in range(run.count))
        return out

    # ---------------------------------------------------------------- removing
    def take_first(self, order: int, mt: MigrateType) -> int:
        """Remove the head block of free_list[mt] at ``order`` and return its pfn."""
        run = self._lists[(order, mt)].values()[0]
        self._drop(run)
        if run.count > 1:
            self._insert(FreeRun(run.pfn + (1 << order), order, run.count - 1, mt, run.seq))
        return run.pfn

    def remove(self, pfn: int, order: int) -> MigrateType:
        """__del_page_from_free_list(): take one exact block out of whichever run holds it."""
        index = self._by_pfn.bisect_right(pfn) - 1
        run = self._by_pfn.values()[index]
        if not (run.pfn <= pfn < run.end and run.order == order and (pfn - run.pfn) % (1 << order) == 0):
            raise ValueError(f"pfn {pfn:#x} is not a free block of order {order}")
        self._drop(run)
        left = (pfn - run.pfn) >> order
        if left:
            self._insert(FreeRun(run.pfn, order, left, run.mt, run.seq))
        right = run.count - left - 1
        if right:
            self._insert(FreeRun(pfn + (1 << order), order, right, run.mt, run.seq))
        return run.mt

    def move(self, pfn: int, order: int, mt: MigrateType) -> None:
        """move_to_free_list(): the block goes to the tail of another migratetype's list."""
        self.remove(pfn, order)
        self.add(pfn, order, mt, tail=True)
