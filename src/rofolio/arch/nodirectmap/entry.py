"""The weak default's registry entry: an architecture that cannot change direct-map permissions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rofolio.arch import Arch, register_arch

if TYPE_CHECKING:
    from rofolio.arch.kernel import ArchKernel
    from rofolio.events import EventLog
    from rofolio.machine import MachineSpec

__all__ = ["ENTRY", "NoDirectMap"]


class NoDirectMap(Arch):
    name = "nodirectmap"
    summary = ("an architecture without ARCH_HAS_SET_DIRECT_MAP: arch_make_folio_readonly() takes the weak "
               "default (-EOPNOTSUPP) and the folio stays writable")
    set_memory_ops = frozenset({"set_memory_ro", "set_memory_rw"})  # include/linux/set_memory.h fallbacks
    ram_base = 1 << 31  # RAM from 2 GiB, like riscv's virt board

    def label(self, spec: MachineSpec) -> str:
        return "nodirectmap (weak default)"

    def boot(self, spec: MachineSpec, memory: Any, log: EventLog, image: Any = None,
             record: Any = None) -> ArchKernel:
        from rofolio.arch.nodirectmap.kernel import NoDirectMapConfig, boot

        return boot(NoDirectMapConfig(memory=memory, nr_cpus=spec.cpus), log)


ENTRY = register_arch(NoDirectMap())
