// SPDX-License-Identifier: GPL-2.0
/*
 * dmoracle - drive x86-64 change_page_attr (set_memory_*) on chosen pages of
 * the direct map and report the page tables afterwards.  rofolio's oracle
 * (rofolio.oracle) loads it into Debian's kernel under QEMU/TCG and compares
 * what it prints with the model.
 *
 * Interface: /proc/dmoracle, one command per write(2).  Every result is one
 * printk line "dmoracle: cmd=<verb> ... ret=<int|missing>" (scans also print
 * "dmoracle: run ..." lines before their summary).  Numbers are decimal or 0x.
 *
 *   info                          kernel release, PAGE_OFFSET, max_pfn, features
 *   syms                          the symbol table resolved at load
 *   grabpa S PA N                 alloc_contig_range() of N pages at physical PA
 *   grab   S PA_MB N              the same, PA in MiB
 *   alloc  S ORDER [dma32]        alloc_pages()
 *   vmap   S SRC OFF N            vmap() pages OFF.. of slot SRC into new slot S
 *   ro|rw|np|p|nx|x|4k|uc|wb|rox S OFF N
 *                                 set_memory_*() on the slot's address of page OFF
 *   pa OP PA N                    OP in rw|nx|x|4k on the direct map of any PA
 *                                 (changes that never take access away)
 *   dminv|dmdef S OFF             set_direct_map_{invalid,default}_noflush()
 *   flush  S OFF N                flush_tlb_kernel_range()
 *   level  S OFF                  lookup_address(): level, entry and flags
 *   levelpa PA                    the same for the direct-map address of PA
 *   probe  S OFF                  copy_to_kernel_nofault() of one byte (never oopses)
 *   probepa PA                    read, then write the byte back, both _nofault
 *   write  S OFF                  a plain one-byte store: oopses the caller on RO/NP
 *   scan   [PA_START PA_END]      lookup_address() walk of the direct map, coalesced
 *   scanhigh PA_START PA_END      the same over the high kernel map (the image's other alias)
 *   free   S
 *
 * Symbols that are not exported are resolved with kallsyms_lookup_name (found
 * through a kprobe).  Every resolved pointer is checked before it is called:
 * a missing helper prints "ret=missing sym=<name>" and nothing is called.
 */
#define pr_fmt(fmt) "dmoracle: " fmt

#include <linux/gfp.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/utsname.h>
#include <linux/version.h>
#include <linux/vmalloc.h>
#include <asm/cpufeature.h>
#include <asm/pgtable.h>
#include <asm/pgtable_types.h>
#include <asm/set_memory.h>

#include "kln.h"

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("rofolio oracle: drive CPA on the direct map and report the page tables");

#define NSLOTS 64

/* The largest order alloc_pages() takes: MAX_ORDER - 1 before 6.4, MAX_ORDER until 6.8 renamed it. */
#if defined(MAX_PAGE_ORDER)
#define DMO_MAX_ORDER MAX_PAGE_ORDER
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
#define DMO_MAX_ORDER MAX_ORDER
#else
#define DMO_MAX_ORDER (MAX_ORDER - 1)
#endif

/* alloc_contig_range() took a migratetype until 6.16 and takes acr_flags_t since. */
#ifdef ACR_FLAGS_NONE
#define DMO_CONTIG_MODE ACR_FLAGS_NONE
#else
#define DMO_CONTIG_MODE MIGRATE_MOVABLE
#endif
#define MAXTOK 6
#define DEFAULT_MAXRUNS 4096

typedef int (*setmem_t)(unsigned long addr, int numpages);
typedef int (*setmem_ptr_t)(unsigned long *addr, int numpages);
typedef int (*dm_t)(struct page *page);
typedef long (*nofault_t)(void *dst, const void *src, size_t size);
typedef int (*cpa_set_clr_t)(unsigned long *addr, int numpages, pgprot_t mask_set, pgprot_t mask_clr,
			     int force_split, int in_flag, struct page **pages);
typedef void (*flush_range_t)(unsigned long start, unsigned long end);

static kln_t kln;
static setmem_t f_ro, f_rw, f_np, f_4k, f_nx, f_x, f_rox;
static void *f_p;		/* set_memory_p: static (unsigned long *, int) before 6.9 */
static dm_t f_dminv, f_dmdef;
static nofault_t f_to_nofault, f_from_nofault;
static cpa_set_clr_t f_cpa_set_clr;
static flush_range_t f_flush;
static unsigned long *v_max_pfn;

static struct {
	const char *name;
	void **ptr;
} symtab[] = {
	{ "set_memory_ro", (void **)&f_ro },
	{ "set_memory_rw", (void **)&f_rw },
	{ "set_memory_np", (void **)&f_np },
	{ "set_memory_p", (void **)&f_p },
	{ "set_memory_4k", (void **)&f_4k },
	{ "set_memory_nx", (void **)&f_nx },
	{ "set_memory_x", (void **)&f_x },
	{ "set_memory_rox", (void **)&f_rox },
	{ "set_direct_map_invalid_noflush", (void **)&f_dminv },
	{ "set_direct_map_default_noflush", (void **)&f_dmdef },
	{ "copy_to_kernel_nofault", (void **)&f_to_nofault },
	{ "copy_from_kernel_nofault", (void **)&f_from_nofault },
	{ "change_page_attr_set_clr", (void **)&f_cpa_set_clr },
	{ "flush_tlb_kernel_range", (void **)&f_flush },
	{ "max_pfn", (void **)&v_max_pfn },
};

enum slot_kind { SLOT_FREE = 0, SLOT_CONTIG, SLOT_PAGES, SLOT_VMAP };

static struct slot {
	enum slot_kind kind;
	unsigned long pfn;	/* first page; the pages are physically contiguous */
	unsigned long npages;
	unsigned int order;	/* SLOT_PAGES */
	unsigned long va;	/* the address the slot's operations use */
	struct page **pages;	/* SLOT_VMAP */
} slots[NSLOTS];

static DEFINE_MUTEX(dmo_lock);

/* ------------------------------------------------------------ entries */

static const char *lvl_name(unsigned int level)
{
	switch (level) {
	case PG_LEVEL_4K: return "4K";
	case PG_LEVEL_2M: return "2M";
	case PG_LEVEL_1G: return "1G";
	case PG_LEVEL_512G: return "512G";
	default: return "none";
	}
}

static unsigned long lvl_size(unsigned int level)
{
	switch (level) {
	case PG_LEVEL_2M: return PMD_SIZE;
	case PG_LEVEL_1G: return PUD_SIZE;
	case PG_LEVEL_512G: return P4D_SIZE;
	default: return PAGE_SIZE;
	}
}

#define FL_P	(1u << 0)
#define FL_RW	(1u << 1)
#define FL_NX	(1u << 2)
#define FL_PSE	(1u << 3)
#define FL_PCD	(1u << 4)
#define FL_PWT	(1u << 5)
#define FL_G	(1u << 6)
#define FL_D	(1u << 7)
#define FL_PAT	(1u << 8)

static unsigned int entry_flags(u64 v, unsigned int level)
{
	unsigned int f = 0;

	if (v & _PAGE_PRESENT) f |= FL_P;
	if (v & _PAGE_RW) f |= FL_RW;
	if (v & _PAGE_NX) f |= FL_NX;
	if (v & _PAGE_PCD) f |= FL_PCD;
	if (v & _PAGE_PWT) f |= FL_PWT;
	if (v & _PAGE_GLOBAL) f |= FL_G;
	if (v & _PAGE_DIRTY) f |= FL_D;
	if (level == PG_LEVEL_4K) {
		if (v & _PAGE_PAT) f |= FL_PAT;		/* bit 7 of a PTE */
	} else {
		if (v & _PAGE_PSE) f |= FL_PSE;		/* bit 7 of a large leaf */
		/* bit 12 of a large leaf; not present, it is a bit of the inverted pfn (L1TF) */
		if ((v & _PAGE_PAT_LARGE) && (v & _PAGE_PRESENT)) f |= FL_PAT;
	}
	return f;
}

#define FLAGS_FMT "P=%d RW=%d NX=%d PSE=%d PCD=%d PWT=%d PAT=%d G=%d D=%d"
#define FLAGS_ARGS(f) !!((f) & FL_P), !!((f) & FL_RW), !!((f) & FL_NX), !!((f) & FL_PSE), \
	!!((f) & FL_PCD), !!((f) & FL_PWT), !!((f) & FL_PAT), !!((f) & FL_G), !!((f) & FL_D)

static unsigned long dm_max_pfn(void)
{
	return v_max_pfn ? *v_max_pfn : 0;
}

static bool pa_in_dm(u64 pa)
{
	return v_max_pfn && (pa >> PAGE_SHIFT) < *v_max_pfn;
}

/* lookup_address(): "level=<4K|2M|1G> pte=0x.. <flags>", "level=none pte=0x0" or "level=hole". */
static void describe(char *buf, size_t len, unsigned long va)
{
	unsigned int level = PG_LEVEL_NONE;
	pte_t *pte = lookup_address(va, &level);
	u64 v;
	unsigned int f;

	if (!pte) {
		scnprintf(buf, len, "level=hole");
		return;
	}
	v = pte_val(*pte);
	if (!v) {
		scnprintf(buf, len, "level=none pte=0x0");
		return;
	}
	f = entry_flags(v, level);
	scnprintf(buf, len, "level=%s pte=0x%016llx " FLAGS_FMT, lvl_name(level), v, FLAGS_ARGS(f));
}

/* ------------------------------------------------------------ scan */

#define RL_HOLE	100	/* lookup_address() returned NULL: no table below */
#define RL_NONE	101	/* a zero entry inside a table */

struct run {
	bool valid;
	u64 start, end;
	unsigned int level;
	unsigned int flags;
};

static void print_run(const struct run *r)
{
	if (r->level == RL_HOLE || r->level == RL_NONE)
		pr_info("run pa=0x%llx-0x%llx level=%s\n", r->start, r->end,
			r->level == RL_HOLE ? "hole" : "none");
	else
		pr_info("run pa=0x%llx-0x%llx level=%s " FLAGS_FMT "\n", r->start, r->end,
			lvl_name(r->level), FLAGS_ARGS(r->flags));
}

/*
 * Walk [pa_start, pa_end) of a linear mapping: the direct map (va = PAGE_OFFSET + pa)
 * or the high kernel map (va = __START_KERNEL_map + pa - phys_base).
 */
static void do_scan(bool high, u64 pa_start, u64 pa_end, unsigned long maxruns)
{
	const char *map = high ? "high" : "direct";
	unsigned long va, end, base_va = high ? __START_KERNEL_map : PAGE_OFFSET;
	u64 base_pa = high ? phys_base : 0;
	unsigned long nruns = 0, printed = 0, iter = 0;
	unsigned long kb[PG_LEVEL_NUM] = { 0 };
	struct run cur = { 0 };

	if (!v_max_pfn) {
		pr_info("cmd=scan map=%s ret=missing sym=max_pfn\n", map);
		return;
	}
	if (!high && pa_end > ((u64)dm_max_pfn() << PAGE_SHIFT))
		pa_end = (u64)dm_max_pfn() << PAGE_SHIFT;
	if (high && (pa_start < base_pa || pa_end - base_pa > KERNEL_IMAGE_SIZE)) {
		pr_info("cmd=scan map=high start=0x%llx end=0x%llx ret=-22 err=outside_the_kernel_image_map\n",
			pa_start, pa_end);
		return;
	}
	pa_start &= PAGE_MASK;
	if (pa_start >= pa_end) {
		pr_info("cmd=scan map=%s start=0x%llx end=0x%llx ret=-22 err=empty_range\n", map, pa_start, pa_end);
		return;
	}
	va = base_va + (unsigned long)(pa_start - base_pa);
	end = base_va + (unsigned long)(pa_end - base_pa);
	while (va < end) {
		unsigned int level = PG_LEVEL_NONE, rlevel, flags = 0;
		pte_t *pte = lookup_address(va, &level);
		unsigned long step, next;
		u64 pa = va - base_va + base_pa;

		if (!pte) {
			/* NULL with the level of the last table seen: skip what the none entry covers */
			step = (level == PG_LEVEL_NONE || level == PG_LEVEL_512G) ? PUD_SIZE :
			       (level == PG_LEVEL_1G) ? PMD_SIZE : PAGE_SIZE;
			rlevel = RL_HOLE;
		} else if (!pte_val(*pte)) {
			step = lvl_size(level);
			rlevel = RL_NONE;
		} else {
			step = lvl_size(level);
			rlevel = level;
			flags = entry_flags(pte_val(*pte), level);
		}
		next = (va & ~(step - 1)) + step;
		if (next > end || next < va)
			next = end;
		if (rlevel < PG_LEVEL_NUM && (flags & FL_P))
			kb[rlevel] += (next - va) >> 10;
		if (cur.valid && cur.level == rlevel && cur.flags == flags && cur.end == pa) {
			cur.end = next - base_va + base_pa;
		} else {
			if (cur.valid) {
				nruns++;
				if (printed < maxruns) {
					print_run(&cur);
					printed++;
				}
			}
			cur.valid = true;
			cur.start = pa;
			cur.end = next - base_va + base_pa;
			cur.level = rlevel;
			cur.flags = flags;
		}
		va = next;
		if (++iter % 4096 == 0)
			cond_resched();
	}
	if (cur.valid) {
		nruns++;
		if (printed < maxruns) {
			print_run(&cur);
			printed++;
		}
	}
	pr_info("cmd=scan map=%s start=0x%llx end=0x%llx ret=0 runs=%lu printed=%lu truncated=%d kb_4k=%lu kb_2m=%lu kb_1g=%lu\n",
		map, pa_start, pa_end, nruns, printed, nruns > printed,
		kb[PG_LEVEL_4K], kb[PG_LEVEL_2M], kb[PG_LEVEL_1G]);
}

/* ------------------------------------------------------------ slots */

static struct slot *get_slot(const char *cmd, long s)
{
	if (s < 0 || s >= NSLOTS) {
		pr_info("cmd=%s slot=%ld ret=-22 err=bad_slot\n", cmd, s);
		return NULL;
	}
	if (slots[s].kind == SLOT_FREE) {
		pr_info("cmd=%s slot=%ld ret=-22 err=slot_empty\n", cmd, s);
		return NULL;
	}
	return &slots[s];
}

static bool free_slot_ok(const char *cmd, long s)
{
	if (s < 0 || s >= NSLOTS || slots[s].kind != SLOT_FREE) {
		pr_info("cmd=%s slot=%ld ret=-22 err=slot_busy_or_bad\n", cmd, s);
		return false;
	}
	return true;
}

static bool in_slot(const char *cmd, long s, struct slot *sl, unsigned long off, unsigned long n)
{
	if (!n || off >= sl->npages || n > sl->npages - off) {
		pr_info("cmd=%s slot=%ld off=%lu n=%lu ret=-22 err=out_of_slot npages=%lu\n",
			cmd, s, off, n, sl->npages);
		return false;
	}
	return true;
}

static void do_grab(const char *cmd, long s, u64 pa, unsigned long npages)
{
	unsigned long pfn = pa >> PAGE_SHIFT;
	int ret;

	if (!free_slot_ok(cmd, s))
		return;
	if (!npages || (pa & ~PAGE_MASK) || !pa_in_dm(pa) ||
	    !pa_in_dm(pa + ((u64)npages << PAGE_SHIFT) - 1)) {
		pr_info("cmd=%s slot=%ld pa=0x%llx n=%lu ret=-22 err=bad_range max_pfn=0x%lx\n",
			cmd, s, pa, npages, dm_max_pfn());
		return;
	}
	ret = alloc_contig_range(pfn, pfn + npages, DMO_CONTIG_MODE, GFP_KERNEL);
	pr_info("cmd=%s slot=%ld pa=0x%llx n=%lu ret=%d\n", cmd, s, pa, npages, ret);
	if (ret)
		return;
	slots[s].kind = SLOT_CONTIG;
	slots[s].pfn = pfn;
	slots[s].npages = npages;
	slots[s].va = (unsigned long)__va(pa);
}

static void do_alloc(long s, unsigned long order, bool dma32)
{
	struct page *page;

	if (!free_slot_ok("alloc", s))
		return;
	if (order > DMO_MAX_ORDER) {
		pr_info("cmd=alloc slot=%ld order=%lu ret=-22 err=bad_order\n", s, order);
		return;
	}
	page = alloc_pages(GFP_KERNEL | (dma32 ? GFP_DMA32 : 0), order);
	if (!page) {
		pr_info("cmd=alloc slot=%ld order=%lu ret=-12\n", s, order);
		return;
	}
	slots[s].kind = SLOT_PAGES;
	slots[s].pfn = page_to_pfn(page);
	slots[s].npages = 1UL << order;
	slots[s].order = order;
	slots[s].va = (unsigned long)page_address(page);
	pr_info("cmd=alloc slot=%ld order=%lu pa=0x%llx n=%lu ret=0\n", s, order,
		(u64)slots[s].pfn << PAGE_SHIFT, slots[s].npages);
}

static void do_vmap(long s, long src, unsigned long off, unsigned long n)
{
	struct slot *from = get_slot("vmap", src);
	struct page **pages;
	unsigned long i;
	void *va;

	if (!from || !free_slot_ok("vmap", s) || !in_slot("vmap", src, from, off, n))
		return;
	pages = kmalloc_array(n, sizeof(*pages), GFP_KERNEL);
	if (!pages) {
		pr_info("cmd=vmap slot=%ld ret=-12\n", s);
		return;
	}
	for (i = 0; i < n; i++)
		pages[i] = pfn_to_page(from->pfn + off + i);
	va = vmap(pages, n, VM_MAP, PAGE_KERNEL);
	if (!va) {
		kfree(pages);
		pr_info("cmd=vmap slot=%ld ret=-12\n", s);
		return;
	}
	slots[s].kind = SLOT_VMAP;
	slots[s].pfn = from->pfn + off;
	slots[s].npages = n;
	slots[s].va = (unsigned long)va;
	slots[s].pages = pages;
	pr_info("cmd=vmap slot=%ld src=%ld off=%lu n=%lu va=0x%lx pa=0x%llx ret=0\n", s, src, off, n,
		(unsigned long)va, (u64)slots[s].pfn << PAGE_SHIFT);
}

static void do_free(long s)
{
	struct slot *sl = get_slot("free", s);

	if (!sl)
		return;
	if (sl->kind == SLOT_CONTIG) {
		free_contig_range(sl->pfn, sl->npages);
	} else if (sl->kind == SLOT_PAGES) {
		__free_pages(pfn_to_page(sl->pfn), sl->order);
	} else {
		vunmap((void *)sl->va);
		kfree(sl->pages);
	}
	pr_info("cmd=free slot=%ld ret=0\n", s);
	memset(sl, 0, sizeof(*sl));
}

/* ------------------------------------------------------------ CPA */

static setmem_t setmem_fn(const char *op, const char **name)
{
	static const struct { const char *op, *name; } names[] = {
		{ "ro", "set_memory_ro" }, { "rw", "set_memory_rw" }, { "np", "set_memory_np" },
		{ "4k", "set_memory_4k" }, { "nx", "set_memory_nx" }, { "x", "set_memory_x" },
		{ "uc", "set_memory_uc" }, { "wb", "set_memory_wb" }, { "rox", "set_memory_rox" },
		{ "p", "set_memory_p" },
	};
	int i;

	*name = NULL;
	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(op, names[i].op))
			*name = names[i].name;
	if (!strcmp(op, "ro")) return f_ro;
	if (!strcmp(op, "rw")) return f_rw;
	if (!strcmp(op, "np")) return f_np;
	if (!strcmp(op, "4k")) return f_4k;
	if (!strcmp(op, "nx")) return f_nx;
	if (!strcmp(op, "x")) return f_x;
	if (!strcmp(op, "rox")) return f_rox;
	if (!strcmp(op, "uc")) return set_memory_uc;
	if (!strcmp(op, "wb")) return set_memory_wb;
	return NULL;
}

/* set_memory_p: a static (unsigned long *addr, int) function before v6.9, else (unsigned long, int). */
static int call_set_memory_p(unsigned long va, int n, const char **via)
{
	unsigned long a = va;

	if (f_p) {
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 9, 0)
		*via = "set_memory_p(unsigned_long_ptr)";
		return ((setmem_ptr_t)f_p)(&a, n);
#else
		*via = "set_memory_p";
		return ((setmem_t)f_p)(va, n);
#endif
	}
	if (f_cpa_set_clr) {
		/* the body of the static set_memory_p() of 6.1, when gcc left no symbol for it */
		*via = "change_page_attr_set_clr(set=PRESENT)";
		return f_cpa_set_clr(&a, n, __pgprot(_PAGE_PRESENT), __pgprot(0), 0, 0, NULL);
	}
	*via = NULL;
	return 0;
}

static void do_setmem_va(const char *op, const char *who, unsigned long va, unsigned long n)
{
	char before[160], after[160], last[160];
	const char *name, *via;
	setmem_t fn = setmem_fn(op, &name);
	int ret;

	describe(before, sizeof(before), va);
	via = name;
	if (!strcmp(op, "p")) {
		ret = call_set_memory_p(va, (int)n, &via);
		if (!via) {
			pr_info("cmd=%s %s n=%lu ret=missing sym=set_memory_p,change_page_attr_set_clr\n", op, who, n);
			return;
		}
	} else if (!fn) {
		pr_info("cmd=%s %s n=%lu ret=missing sym=%s\n", op, who, n, name ? name : "?");
		return;
	} else {
		ret = fn(va, (int)n);
	}
	describe(after, sizeof(after), va);
	describe(last, sizeof(last), va + (n - 1) * PAGE_SIZE);
	pr_info("cmd=%s %s n=%lu va=0x%lx ret=%d via=%s\n", op, who, n, va, ret, via);
	pr_info("state cmd=%s when=before %s\n", op, before);
	pr_info("state cmd=%s when=after %s\n", op, after);
	pr_info("state cmd=%s when=last %s\n", op, last);
}

static void do_setmem(const char *op, long s, unsigned long off, unsigned long n)
{
	struct slot *sl = get_slot(op, s);
	char who[64];

	if (!sl || !in_slot(op, s, sl, off, n))
		return;
	scnprintf(who, sizeof(who), "slot=%ld off=%lu", s, off);
	do_setmem_va(op, who, sl->va + off * PAGE_SIZE, n);
}

static void do_setmem_pa(const char *op, u64 pa, unsigned long n)
{
	char who[64];

	/* only changes that never take access away, on pages the module does not own */
	if (strcmp(op, "rw") && strcmp(op, "nx") && strcmp(op, "x") && strcmp(op, "4k")) {
		pr_info("cmd=pa op=%s ret=-22 err=op_not_allowed_on_unowned_pages\n", op);
		return;
	}
	if (!n || (pa & ~PAGE_MASK) || !pa_in_dm(pa) || !pa_in_dm(pa + ((u64)n << PAGE_SHIFT) - 1)) {
		pr_info("cmd=pa op=%s pa=0x%llx n=%lu ret=-22 err=bad_range\n", op, pa, n);
		return;
	}
	scnprintf(who, sizeof(who), "pa=0x%llx", pa);
	do_setmem_va(op, who, (unsigned long)__va(pa), n);
}

static void do_dm(const char *op, long s, unsigned long off)
{
	struct slot *sl = get_slot(op, s);
	bool inv = !strcmp(op, "dminv");
	dm_t fn = inv ? f_dminv : f_dmdef;
	const char *name = inv ? "set_direct_map_invalid_noflush" : "set_direct_map_default_noflush";
	char before[160], after[160];
	unsigned long va;
	int ret;

	if (!sl || !in_slot(op, s, sl, off, 1))
		return;
	if (!fn) {
		pr_info("cmd=%s slot=%ld off=%lu ret=missing sym=%s\n", op, s, off, name);
		return;
	}
	va = (unsigned long)__va((u64)(sl->pfn + off) << PAGE_SHIFT);
	describe(before, sizeof(before), va);
	ret = fn(pfn_to_page(sl->pfn + off));
	describe(after, sizeof(after), va);
	pr_info("cmd=%s slot=%ld off=%lu n=1 va=0x%lx ret=%d via=%s\n", op, s, off, va, ret, name);
	pr_info("state cmd=%s when=before %s\n", op, before);
	pr_info("state cmd=%s when=after %s\n", op, after);
}

static void do_flush(long s, unsigned long off, unsigned long n)
{
	struct slot *sl = get_slot("flush", s);

	if (!sl || !in_slot("flush", s, sl, off, n))
		return;
	if (!f_flush) {
		pr_info("cmd=flush slot=%ld ret=missing sym=flush_tlb_kernel_range\n", s);
		return;
	}
	f_flush(sl->va + off * PAGE_SIZE, sl->va + (off + n) * PAGE_SIZE);
	pr_info("cmd=flush slot=%ld off=%lu n=%lu ret=0\n", s, off, n);
}

static void do_level(const char *cmd, const char *who, unsigned long va)
{
	char buf[160];

	describe(buf, sizeof(buf), va);
	pr_info("cmd=%s %s va=0x%lx ret=0 %s\n", cmd, who, va, buf);
}

static void do_probe(long s, unsigned long off)
{
	struct slot *sl = get_slot("probe", s);
	u8 val = 0x5a;
	long wr;

	if (!sl || !in_slot("probe", s, sl, off, 1))
		return;
	if (!f_to_nofault) {
		pr_info("cmd=probe slot=%ld ret=missing sym=copy_to_kernel_nofault\n", s);
		return;
	}
	wr = f_to_nofault((void *)(sl->va + off * PAGE_SIZE), &val, 1);
	pr_info("cmd=probe slot=%ld off=%lu va=0x%lx ret=%ld\n", s, off, sl->va + off * PAGE_SIZE, wr);
}

static void do_probe_pa(u64 pa)
{
	unsigned long va = (unsigned long)__va(pa);
	u8 val = 0;
	long rd, wr;

	if (!f_to_nofault || !f_from_nofault) {
		pr_info("cmd=probepa pa=0x%llx ret=missing sym=copy_to_kernel_nofault,copy_from_kernel_nofault\n", pa);
		return;
	}
	rd = f_from_nofault(&val, (void *)va, 1);
	if (rd) {	/* unreadable: not present; a write would fault the same way */
		pr_info("cmd=probepa pa=0x%llx va=0x%lx ret=%ld read=%ld write=skipped\n", pa, va, rd, rd);
		return;
	}
	wr = f_to_nofault((void *)va, &val, 1);	/* the same byte back */
	pr_info("cmd=probepa pa=0x%llx va=0x%lx ret=%ld read=%ld write=%ld\n", pa, va, wr, rd, wr);
}

/*
 * The entries from this CPU's top-level table down to va, one per level, stopping after a none,
 * not-present or leaf entry: the path an oops's page-table line prints.  The model takes from it
 * where the page-table pages are (memblock and the page allocator placed them); their flags and the
 * leaf it works out itself.  pud_leaf()/pmd_leaf(): pud_large()/pmd_large() before v6.9, both named.
 */
static void print_path(const char *cmd, unsigned long va)
{
	pgd_t *pgd = (pgd_t *)__va(read_cr3_pa()) + pgd_index(va);
	p4d_t *p4d;
	pud_t *pud;
	pmd_t *pmd;
	char buf[160];
	int n;

	n = scnprintf(buf, sizeof(buf), "pgd=0x%llx", (u64)pgd_val(*pgd));
	if (!pgd_present(*pgd))
		goto out;
	p4d = p4d_offset(pgd, va);
	n += scnprintf(buf + n, sizeof(buf) - n, " p4d=0x%llx", (u64)p4d_val(*p4d));
	if (!p4d_present(*p4d))
		goto out;
	pud = pud_offset(p4d, va);
	n += scnprintf(buf + n, sizeof(buf) - n, " pud=0x%llx", (u64)pud_val(*pud));
	if (!pud_present(*pud) || pud_leaf(*pud))
		goto out;
	pmd = pmd_offset(pud, va);
	n += scnprintf(buf + n, sizeof(buf) - n, " pmd=0x%llx", (u64)pmd_val(*pmd));
	if (!pmd_present(*pmd) || pmd_leaf(*pmd))
		goto out;
	scnprintf(buf + n, sizeof(buf) - n, " pte=0x%llx", (u64)pte_val(*pte_offset_kernel(pmd, va)));
out:
	pr_info("path cmd=%s va=0x%lx %s\n", cmd, va, buf);
}

/*
 * A plain store, outside dmo_lock: if it oopses, the task dies here and
 * never returns to release a mutex.  The caller runs it in a child process.
 */
static void do_write(long s, unsigned long off)
{
	struct slot *sl;
	volatile u8 *p = NULL;

	mutex_lock(&dmo_lock);
	sl = get_slot("write", s);
	if (sl && !in_slot("write", s, sl, off, 1))
		sl = NULL;
	if (sl)
		p = (volatile u8 *)(sl->va + off * PAGE_SIZE);
	mutex_unlock(&dmo_lock);
	if (!sl)
		return;
	print_path("write", (unsigned long)p);
	pr_info("cmd=write slot=%ld off=%lu va=0x%lx phase=before_store\n", s, off, (unsigned long)p);
	*p = 0x5a;
	pr_info("cmd=write slot=%ld off=%lu va=0x%lx ret=0 phase=stored\n", s, off, (unsigned long)p);
}

static void do_info(void)
{
	pr_info("cmd=info ret=0 release=%s page_offset=0x%lx max_pfn=0x%lx l5=%d pse=%d gbpages=%d pti=%d nx=%d pat=%d\n",
		utsname()->release, (unsigned long)PAGE_OFFSET, dm_max_pfn(),
		pgtable_l5_enabled() ? 1 : 0, boot_cpu_has(X86_FEATURE_PSE) ? 1 : 0,
		boot_cpu_has(X86_FEATURE_GBPAGES) ? 1 : 0, boot_cpu_has(X86_FEATURE_PTI) ? 1 : 0,
		boot_cpu_has(X86_FEATURE_NX) ? 1 : 0, boot_cpu_has(X86_FEATURE_PAT) ? 1 : 0);
}

static void do_syms(void)
{
	int i;

	pr_info("sym name=kallsyms_lookup_name found=%d\n", kln ? 1 : 0);
	for (i = 0; i < ARRAY_SIZE(symtab); i++)
		pr_info("sym name=%s found=%d\n", symtab[i].name, *symtab[i].ptr ? 1 : 0);
}

/* ------------------------------------------------------------ parsing */

static bool num(const char *tok, u64 *out)
{
	return tok && !kstrtoull(tok, 0, out);
}

static ssize_t dmo_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	char buf[256], *cur, *tok[MAXTOK] = { NULL };
	u64 a = 0, b = 0, c = 0, d = 0;
	int ntok = 0;
	size_t len = min(count, sizeof(buf) - 1);
	const char *cmd;

	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = 0;
	cur = strim(buf);
	while (ntok < MAXTOK) {
		char *t = strsep(&cur, " \t");

		if (!t)
			break;
		if (*t)
			tok[ntok++] = t;
	}
	if (!ntok)
		return count;
	cmd = tok[0];
	num(tok[1], &a);
	num(tok[2], &b);
	num(tok[3], &c);
	num(tok[4], &d);

	if (!strcmp(cmd, "write") && ntok >= 3) {
		do_write((long)a, (unsigned long)b);
		return count;
	}

	mutex_lock(&dmo_lock);
	if (!strcmp(cmd, "info")) {
		do_info();
	} else if (!strcmp(cmd, "syms")) {
		do_syms();
	} else if (!strcmp(cmd, "grabpa") && ntok >= 4) {
		do_grab(cmd, (long)a, b, (unsigned long)c);
	} else if (!strcmp(cmd, "grab") && ntok >= 4) {
		do_grab(cmd, (long)a, b << 20, (unsigned long)c);
	} else if (!strcmp(cmd, "alloc") && ntok >= 3) {
		do_alloc((long)a, (unsigned long)b, ntok >= 4 && !strcmp(tok[3], "dma32"));
	} else if (!strcmp(cmd, "vmap") && ntok >= 5) {
		do_vmap((long)a, (long)b, (unsigned long)c, (unsigned long)d);
	} else if (!strcmp(cmd, "free") && ntok >= 2) {
		do_free((long)a);
	} else if ((!strcmp(cmd, "ro") || !strcmp(cmd, "rw") || !strcmp(cmd, "np") || !strcmp(cmd, "p") ||
		    !strcmp(cmd, "4k") || !strcmp(cmd, "uc") || !strcmp(cmd, "wb") || !strcmp(cmd, "nx") ||
		    !strcmp(cmd, "x") || !strcmp(cmd, "rox")) && ntok >= 4) {
		do_setmem(cmd, (long)a, (unsigned long)b, (unsigned long)c);
	} else if (!strcmp(cmd, "pa") && ntok >= 4 && num(tok[2], &b) && num(tok[3], &c)) {
		do_setmem_pa(tok[1], b, (unsigned long)c);
	} else if ((!strcmp(cmd, "dminv") || !strcmp(cmd, "dmdef")) && ntok >= 3) {
		do_dm(cmd, (long)a, (unsigned long)b);
	} else if (!strcmp(cmd, "flush") && ntok >= 4) {
		do_flush((long)a, (unsigned long)b, (unsigned long)c);
	} else if (!strcmp(cmd, "level") && ntok >= 3) {
		struct slot *sl = get_slot(cmd, (long)a);
		char who[64];

		if (sl && in_slot(cmd, (long)a, sl, b, 1)) {
			scnprintf(who, sizeof(who), "slot=%ld off=%llu", (long)a, b);
			do_level(cmd, who, sl->va + b * PAGE_SIZE);
		}
	} else if (!strcmp(cmd, "levelpa") && ntok >= 2) {
		char who[64];

		if (!pa_in_dm(a)) {
			pr_info("cmd=levelpa pa=0x%llx ret=-22 err=pa_beyond_max_pfn\n", a);
		} else {
			scnprintf(who, sizeof(who), "pa=0x%llx", a);
			do_level(cmd, who, (unsigned long)__va(a));
		}
	} else if (!strcmp(cmd, "probe") && ntok >= 3) {
		do_probe((long)a, (unsigned long)b);
	} else if (!strcmp(cmd, "probepa") && ntok >= 2) {
		if (pa_in_dm(a))
			do_probe_pa(a);
		else
			pr_info("cmd=probepa pa=0x%llx ret=-22 err=pa_beyond_max_pfn\n", a);
	} else if (!strcmp(cmd, "scan")) {
		if (ntok >= 3)
			do_scan(false, a, b, ntok >= 4 ? (unsigned long)c : DEFAULT_MAXRUNS);
		else
			do_scan(false, 0, (u64)dm_max_pfn() << PAGE_SHIFT, ntok >= 2 ? (unsigned long)a : DEFAULT_MAXRUNS);
	} else if (!strcmp(cmd, "scanhigh") && ntok >= 3) {
		do_scan(true, a, b, ntok >= 4 ? (unsigned long)c : DEFAULT_MAXRUNS);
	} else {
		pr_info("cmd=%s ret=-22 err=unknown_or_usage\n", cmd);
	}
	mutex_unlock(&dmo_lock);
	return count;
}

static const struct proc_ops dmo_ops = {
	.proc_write = dmo_write,
};

static struct proc_dir_entry *dmo_entry;

static int __init dmo_init(void)
{
	int i, ret, missing = 0;

	kln = find_kallsyms_lookup_name(&ret);
	if (ret) {
		pr_info("cmd=init ret=%d err=kallsyms_lookup_name_unresolved\n", ret);
		return ret;
	}
	for (i = 0; i < ARRAY_SIZE(symtab); i++) {
		*symtab[i].ptr = (void *)kln(symtab[i].name);
		if (!*symtab[i].ptr)
			missing++;
	}
	dmo_entry = proc_create("dmoracle", 0200, NULL, &dmo_ops);
	if (!dmo_entry)
		return -ENOMEM;
	do_syms();
	pr_info("cmd=init ret=0 missing_syms=%d\n", missing);
	return 0;
}

static void __exit dmo_exit(void)
{
	int i;

	proc_remove(dmo_entry);
	for (i = 0; i < NSLOTS; i++)
		if (slots[i].kind == SLOT_VMAP) {
			vunmap((void *)slots[i].va);
			kfree(slots[i].pages);
		}
}

module_init(dmo_init);
module_exit(dmo_exit);
