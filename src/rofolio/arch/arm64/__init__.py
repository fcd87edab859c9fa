"""arm64: the linear map (arm64's direct map) as mmu.c builds it and pageattr.c changes it.

Modules mirror kernel files: ``mmu`` (arch/arm64/mm/mmu.c: the page-table
builder, ``map_mem``, the leaf-splitting code, ``linear_map_split_to_ptes``),
``pageattr`` (arch/arm64/mm/pageattr.c), ``tlbflush`` (asm/tlbflush.h), ``ptdump``
(arch/arm64/mm/ptdump.c); ``boot`` runs them in boot order, ``kernel`` holds the
state.  Only the 4K granule is modelled (docs/fidelity.md, arm64 section, says why).
"""
