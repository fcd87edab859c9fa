"""riscv64: the linear map (riscv's direct map) as arch/riscv/mm/init.c builds it and pageattr.c changes it.

Modules mirror kernel files: ``pgtable`` (asm/pgtable-bits.h, pgtable.h, pgtable-64.h: the entry bits and
the present/leaf tests), ``config`` (the machine, asm/page.h and pgtable.h for the layout, the kernel image),
``init`` (arch/riscv/mm/init.c: best_map_size(), the linear-map builder, mark_rodata_ro()), ``pageattr``
(arch/riscv/mm/pageattr.c: __set_memory(), split_linear_mapping(), set_direct_map_*()), ``tlbflush``
(arch/riscv/mm/tlbflush.c), ``ptdump`` (arch/riscv/mm/ptdump.c); ``boot`` runs them in boot order and
``kernel`` holds the state.  docs/fidelity.md (riscv64) lists what is simplified.
"""
