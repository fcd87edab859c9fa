"""hugepage_init() (mm/huge_memory.c): thp_shrinker_init() runs only when has_transparent_hugepage()."""

from __future__ import annotations

import pytest

from rofolio.arch.x86_64 import boot
from rofolio.arch.x86_64.config import X86Config
from rofolio.errors import Errno
from rofolio.mm import zero_page
from rofolio.mm.config import MMConfig
from rofolio.mm.mm_init import mm_core_init
from rofolio.units import GiB, MiB


# x86: has_transparent_hugepage() is boot_cpu_has(X86_FEATURE_PSE) (arch/x86/include/asm/pgtable.h)
@pytest.mark.parametrize(("pse", "ret", "shrinkers"), [(True, 0, ["thp-zero"]), (False, -Errno.EINVAL, [])])
def test_hugepage_init_needs_pse_on_x86_before_thp_shrinker_init(pse: bool, ret: int, shrinkers: list[str]) -> None:
    kernel = boot.boot(X86Config.qemu(8 * GiB, pse=pse))
    mm = mm_core_init(kernel, MMConfig())
    assert zero_page.hugepage_init(mm) == ret
    assert [s.name for s in mm.shrinkers if s.name.startswith("thp")] == shrinkers
    assert mm.thp_unsupported is not pse


def test_without_thp_support_the_persistent_huge_zero_folio_is_never_allocated() -> None:
    kernel = boot.boot(X86Config.qemu(8 * GiB, pse=False))
    mm = mm_core_init(kernel, MMConfig(persistent_huge_zero_folio=True))
    assert zero_page.hugepage_init(mm) == -Errno.EINVAL
    assert mm.huge_zero.folio is None


def test_arm64_keeps_the_generic_answer_thp_built_in() -> None:
    # arm64 has no has_transparent_hugepage() of its own: the generic one, include/linux/pgtable.h,
    # is IS_BUILTIN(CONFIG_TRANSPARENT_HUGEPAGE)
    from rofolio.machine import Machine, MachineSpec

    machine = Machine.boot(MachineSpec.build(arch="arm64", mem=2 * GiB))
    assert machine.kernel.has_transparent_hugepage() is True
    assert machine.run_initcalls() == 0


@pytest.mark.parametrize(("mem", "thp"), [(256 * MiB, False), (512 * MiB, False), (640 * MiB, True)])
def test_below_512_mib_of_managed_memory_hugepage_init_turns_thp_off(mem: int, thp: bool) -> None:
    """hugepage_init() clears transparent_hugepage_flags when totalram_pages() is below 512 MiB, after
    thp_shrinker_init(); a nominal 512M machine manages less than that. A read fault then maps the 4K zero
    page, though the persistent huge zero folio was allocated."""
    from rofolio.mm.fault import folio_at, mm_alloc, user_read
    from tests.mm.conftest import boot_mm

    _, mm = boot_mm(mem=mem, persistent_huge_zero_folio=True)
    assert mm.huge_zero.folio is not None and mm.thp_flags_cleared is not thp
    p = mm_alloc(mm)
    addr = p.mmap_anon(2 * MiB)
    user_read(mm, p, addr)
    assert (folio_at(mm, p, addr) is mm.huge_zero.folio) is thp
    assert (folio_at(mm, p, addr) is mm.zero_page) is not thp
