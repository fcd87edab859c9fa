// SPDX-License-Identifier: GPL-2.0
/*
 * dmoracle_arm64 - drive arm64 set_memory_ro()/set_memory_rw() on vmalloc
 * areas and set_direct_map_{invalid,default}_noflush() on their backing
 * pages, and report the kernel page table afterwards: the leaf of each
 * vmalloc address and the leaf of each backing page's linear-map alias.
 * rofolio's arm64 run-time oracle (rofolio.oracle.arm64run) loads it into a
 * Linux 7.2 kernel built from source, under qemu-system-aarch64 (TCG), with
 * rodata=on, noalias or off, and compares every printed line with the model.
 *
 * Interface: /proc/dmoracle_arm64, one command per write(2).  Each command
 * prints "dma64: cmd=<verb> ... ret=<int|missing>" lines; numbers are
 * decimal or 0x.  MAP is "vm" (the slot's own address) or "lm" (the linear
 * alias of the page behind it: page_address(vmalloc_to_page())).
 *
 *   info                        release, PHYS_OFFSET, rodata_full, can_set_direct_map(),
 *                               MIDR_EL1, cpu_supports_bbml2_noabort(), image section addresses
 *   vmalloc S N                 vzalloc() of N pages; one "page" line per backing page
 *   vmalloc_huge S N            vmalloc_huge(__GFP_ZERO): the area carries VM_ALLOW_HUGE_VMAP
 *   vmap S N                    alloc_page(__GFP_ZERO) N times, vmap(VM_MAP) of them
 *   page S                      alloc_page(__GFP_ZERO): a slot whose address is a linear-map address
 *   image S SYM                 the page of the linear alias of kernel image symbol SYM (lm_alias())
 *   ro|rw S OFF N [DELTA]       set_memory_ro()/set_memory_rw() at the slot's page OFF (+ DELTA bytes)
 *   dminv|dmdef S OFF           set_direct_map_{invalid,default}_noflush() of the page behind
 *                               page OFF, then flush_tlb_kernel_range() of its linear alias
 *   state S                     the leaf of every page of the slot, both mappings, and of the
 *                               vmalloc guard page after the area
 *   probe S OFF MAP             copy_from_kernel_nofault() of one byte, then
 *                               copy_to_kernel_nofault() of it back: never oopses
 *   peek S OFF MAP              copy_from_kernel_nofault() of one byte: its value
 *   store S OFF MAP VAL         a plain one-byte store of VAL: oopses the writer on a read-only
 *                               or invalid leaf (run it in a child process)
 *   load S OFF MAP              a plain one-byte load: oopses the reader on an invalid leaf
 *
 * Nothing here is exported by 7.2 for modules except vmalloc(), vmap(),
 * vmalloc_to_page() and copy_from_kernel_nofault(): set_memory_ro/rw, the
 * set_direct_map helpers, copy_to_kernel_nofault(), can_set_direct_map(),
 * cpu_supports_bbml2_noabort() and the rodata_full flag are resolved with
 * kallsyms_lookup_name(), found through a kprobe.  A missing symbol prints
 * "ret=missing sym=<name>" and nothing is called.
 */
#define pr_fmt(fmt) "dma64: " fmt

#include <linux/gfp.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/utsname.h>
#include <linux/vmalloc.h>
#include <asm/cputype.h>
#include <asm/memory.h>
#include <asm/pgtable.h>
#include <asm/tlbflush.h>

#include "kln.h"

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("rofolio oracle: arm64 set_memory_ro/rw on vmalloc areas and their linear aliases");

#define NSLOTS 32
#define MAXPAGES 64
#define MAXTOK 7

typedef int (*setmem_t)(unsigned long addr, int numpages);
typedef int (*dm_t)(struct page *page);
typedef long (*nofault_t)(void *dst, const void *src, size_t size);
typedef bool (*predicate_t)(void);

static kln_t kln;
static setmem_t f_ro, f_rw;
static dm_t f_dminv, f_dmdef;
static nofault_t f_to_nofault;
static predicate_t f_can_set_direct_map, f_bbml2;
static bool *v_rodata_full;
static struct mm_struct *v_init_mm;	/* init_mm is not exported to modules */

static struct {
	const char *name;
	void **ptr;
} symtab[] = {
	{ "set_memory_ro", (void **)&f_ro },
	{ "set_memory_rw", (void **)&f_rw },
	{ "set_direct_map_invalid_noflush", (void **)&f_dminv },
	{ "set_direct_map_default_noflush", (void **)&f_dmdef },
	{ "copy_to_kernel_nofault", (void **)&f_to_nofault },
	{ "can_set_direct_map", (void **)&f_can_set_direct_map },
	{ "cpu_supports_bbml2_noabort", (void **)&f_bbml2 },
	{ "rodata_full", (void **)&v_rodata_full },
	{ "init_mm", (void **)&v_init_mm },
};

/* The image section symbols whose linear alias map_mem() maps apart (vmlinux.lds.S). */
static const char *const image_syms[] = {
	"_text", "_stext", "_etext", "__start_rodata", "__init_begin", "__init_end", "__bss_stop", "_end",
};

enum slot_kind { SLOT_FREE = 0, SLOT_VMALLOC, SLOT_VMALLOC_HUGE, SLOT_VMAP, SLOT_PAGE, SLOT_IMAGE };

static const char *const kind_names[] = { "free", "vmalloc", "vmalloc_huge", "vmap", "page", "image" };

static struct slot {
	enum slot_kind kind;
	unsigned long va;
	unsigned long npages;
	struct page **pages;	/* SLOT_VMAP: the pages vmap() was given */
} slots[NSLOTS];

static DEFINE_MUTEX(dma64_lock);

/* ------------------------------------------------------------ leaves */

/*
 * The leaf that maps @va in init_mm's table, walked the way show_pte() in
 * arch/arm64/mm/fault.c walks it: "level=<pud|pmd|pte> desc=0x.." (a none
 * PTE inside an existing table prints desc=0x0), or "level=none at=<level>"
 * when a table level above has no entry.  A block is a p?d_leaf() that is
 * not a table (pud_leaf()/pmd_leaf() in asm/pgtable.h), valid or not.
 */
static void describe(char *buf, size_t len, unsigned long va)
{
	pgd_t *pgdp;
	p4d_t *p4dp;
	pud_t *pudp, pud;
	pmd_t *pmdp, pmd;
	pte_t *ptep;

	if (!v_init_mm) {
		scnprintf(buf, len, "level=unknown err=no_init_mm");
		return;
	}
	pgdp = pgd_offset(v_init_mm, va);	/* pgd_offset_k() without the init_mm symbol */
	if (pgd_none(READ_ONCE(*pgdp))) {
		scnprintf(buf, len, "level=none at=pgd");
		return;
	}
	p4dp = p4d_offset(pgdp, va);
	if (p4d_none(READ_ONCE(*p4dp))) {
		scnprintf(buf, len, "level=none at=p4d");
		return;
	}
	pudp = pud_offset(p4dp, va);
	pud = READ_ONCE(*pudp);
	if (pud_none(pud)) {
		scnprintf(buf, len, "level=none at=pud");
		return;
	}
	if (!pud_table(pud)) {
		scnprintf(buf, len, "level=pud desc=0x%016llx", (u64)pud_val(pud));
		return;
	}
	pmdp = pmd_offset(pudp, va);
	pmd = READ_ONCE(*pmdp);
	if (pmd_none(pmd)) {
		scnprintf(buf, len, "level=none at=pmd");
		return;
	}
	if (!pmd_table(pmd)) {
		scnprintf(buf, len, "level=pmd desc=0x%016llx", (u64)pmd_val(pmd));
		return;
	}
	ptep = pte_offset_kernel(pmdp, va);
	scnprintf(buf, len, "level=pte desc=0x%016llx", (u64)pte_val(__ptep_get(ptep)));
}

/* ------------------------------------------------------------ slots */

static struct slot *get_slot(const char *cmd, long s)
{
	if (s < 0 || s >= NSLOTS || slots[s].kind == SLOT_FREE) {
		pr_info("cmd=%s slot=%ld ret=-22 err=bad_or_empty_slot\n", cmd, s);
		return NULL;
	}
	return &slots[s];
}

static bool free_slot_ok(const char *cmd, long s, unsigned long n)
{
	if (s < 0 || s >= NSLOTS || slots[s].kind != SLOT_FREE) {
		pr_info("cmd=%s slot=%ld ret=-22 err=slot_busy_or_bad\n", cmd, s);
		return false;
	}
	if (!n || n > MAXPAGES) {
		pr_info("cmd=%s slot=%ld n=%lu ret=-22 err=bad_count\n", cmd, s, n);
		return false;
	}
	return true;
}

static bool in_slot(const char *cmd, long s, struct slot *sl, unsigned long off)
{
	if (off >= sl->npages) {
		pr_info("cmd=%s slot=%ld off=%lu ret=-22 err=out_of_slot npages=%lu\n", cmd, s, off, sl->npages);
		return false;
	}
	return true;
}

/* The struct page behind the slot's page @off: vmalloc_to_page() for vmalloc space. */
static struct page *slot_page(struct slot *sl, unsigned long off)
{
	unsigned long va = sl->va + off * PAGE_SIZE;

	return is_vmalloc_addr((void *)va) ? vmalloc_to_page((void *)va) : virt_to_page((void *)va);
}

/* The address of page @off through @map: "vm" the slot's own, "lm" the linear alias. */
static unsigned long slot_addr(struct slot *sl, unsigned long off, const char *map)
{
	if (!strcmp(map, "lm"))
		return (unsigned long)page_address(slot_page(sl, off));
	return sl->va + off * PAGE_SIZE;
}

static void print_pages(const char *cmd, long s, struct slot *sl)
{
	unsigned long i;

	for (i = 0; i < sl->npages; i++)
		pr_info("page cmd=%s slot=%ld i=%lu pfn=0x%lx\n", cmd, s, i, page_to_pfn(slot_page(sl, i)));
}

static void do_vmalloc(const char *cmd, long s, unsigned long n, bool huge)
{
	void *va;

	if (!free_slot_ok(cmd, s, n))
		return;
	/* zeroed, so every byte read back is one the experiment wrote; vmalloc_huge() adds
	 * VM_ALLOW_HUGE_VMAP to the area's flags (__vmalloc_node_range_noprof(), mm/vmalloc.c) */
	va = huge ? vmalloc_huge(n * PAGE_SIZE, GFP_KERNEL | __GFP_ZERO) : vzalloc(n * PAGE_SIZE);
	if (!va) {
		pr_info("cmd=%s slot=%ld n=%lu ret=-12\n", cmd, s, n);
		return;
	}
	slots[s].kind = huge ? SLOT_VMALLOC_HUGE : SLOT_VMALLOC;
	slots[s].va = (unsigned long)va;
	slots[s].npages = n;
	print_pages(cmd, s, &slots[s]);
	pr_info("cmd=%s slot=%ld n=%lu va=0x%lx ret=0\n", cmd, s, n, (unsigned long)va);
}

static void do_vmap(long s, unsigned long n)
{
	struct page **pages;
	unsigned long i;
	void *va;

	if (!free_slot_ok("vmap", s, n))
		return;
	pages = kcalloc(n, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		goto nomem;
	for (i = 0; i < n; i++) {
		pages[i] = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!pages[i])
			goto unwind;
	}
	/* VM_MAP without VM_ALLOC: change_memory_common() must refuse the area */
	va = vmap(pages, n, VM_MAP, PAGE_KERNEL);
	if (!va)
		goto unwind;
	slots[s].kind = SLOT_VMAP;
	slots[s].va = (unsigned long)va;
	slots[s].npages = n;
	slots[s].pages = pages;
	print_pages("vmap", s, &slots[s]);
	pr_info("cmd=vmap slot=%ld n=%lu va=0x%lx ret=0\n", s, n, (unsigned long)va);
	return;
unwind:
	for (i = 0; i < n && pages[i]; i++)
		__free_page(pages[i]);
	kfree(pages);
nomem:
	pr_info("cmd=vmap slot=%ld n=%lu ret=-12\n", s, n);
}

static void do_page(long s)
{
	struct page *page;

	if (!free_slot_ok("page", s, 1))
		return;
	page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!page) {
		pr_info("cmd=page slot=%ld ret=-12\n", s);
		return;
	}
	slots[s].kind = SLOT_PAGE;
	slots[s].va = (unsigned long)page_address(page);
	slots[s].npages = 1;
	print_pages("page", s, &slots[s]);
	pr_info("cmd=page slot=%ld n=1 va=0x%lx ret=0\n", s, slots[s].va);
}

/*
 * The linear alias of a kernel image page: __va(__pa_symbol(sym)), what lm_alias() gives.  Only image
 * section symbols are accepted, and the slot is only ever probed or stored to where the experiment
 * expects a read-only mapping.
 */
static void do_image(long s, const char *sym)
{
	unsigned long va = 0;
	int i;

	if (!free_slot_ok("image", s, 1))
		return;
	for (i = 0; i < ARRAY_SIZE(image_syms); i++)
		if (sym && !strcmp(sym, image_syms[i]))
			va = kln(sym);
	if (!va) {
		pr_info("cmd=image slot=%ld ret=-22 err=not_an_image_section_symbol\n", s);
		return;
	}
	slots[s].kind = SLOT_IMAGE;
	slots[s].va = (unsigned long)__va(__pa_symbol(va)) & PAGE_MASK;
	slots[s].npages = 1;
	print_pages("image", s, &slots[s]);
	pr_info("cmd=image slot=%ld sym=%s n=1 va=0x%lx ret=0\n", s, sym, slots[s].va);
}

/* ------------------------------------------------------------ changes */

static void do_setmem(const char *op, long s, unsigned long off, unsigned long n, unsigned long delta)
{
	struct slot *sl = get_slot(op, s);
	setmem_t fn = !strcmp(op, "ro") ? f_ro : f_rw;
	unsigned long va;
	int ret;

	if (!sl || !in_slot(op, s, sl, off))
		return;
	if (!fn) {
		pr_info("cmd=%s slot=%ld ret=missing sym=set_memory_%s\n", op, s, op);
		return;
	}
	va = sl->va + off * PAGE_SIZE + delta;
	ret = fn(va, (int)n);
	pr_info("cmd=%s slot=%ld off=%lu n=%lu delta=%lu va=0x%lx ret=%d\n", op, s, off, n, delta, va, ret);
}

static void do_dm(const char *op, long s, unsigned long off)
{
	struct slot *sl = get_slot(op, s);
	bool inv = !strcmp(op, "dminv");
	dm_t fn = inv ? f_dminv : f_dmdef;
	unsigned long lm;
	int ret;

	if (!sl || !in_slot(op, s, sl, off))
		return;
	if (!fn) {
		pr_info("cmd=%s slot=%ld ret=missing sym=set_direct_map_%s_noflush\n", op, s,
			inv ? "invalid" : "default");
		return;
	}
	lm = slot_addr(sl, off, "lm");
	ret = fn(slot_page(sl, off));
	/* the _noflush helpers leave the TLB to the caller: flush so no stale entry decides an access */
	flush_tlb_kernel_range(lm, lm + PAGE_SIZE);
	pr_info("cmd=%s slot=%ld off=%lu va=0x%lx ret=%d\n", op, s, off, lm, ret);
}

static void do_state(long s)
{
	struct slot *sl = get_slot("state", s);
	char vm[96], lm[96];
	unsigned long i;

	if (!sl)
		return;
	for (i = 0; i < sl->npages; i++) {
		describe(vm, sizeof(vm), sl->va + i * PAGE_SIZE);
		describe(lm, sizeof(lm), slot_addr(sl, i, "lm"));
		pr_info("leaf slot=%ld i=%lu map=vm va=0x%lx %s\n", s, i, sl->va + i * PAGE_SIZE, vm);
		pr_info("leaf slot=%ld i=%lu map=lm va=0x%lx %s\n", s, i, slot_addr(sl, i, "lm"), lm);
	}
	if (sl->kind != SLOT_PAGE && sl->kind != SLOT_IMAGE) {
		/* the guard page vmalloc leaves after every area without VM_NO_GUARD */
		describe(vm, sizeof(vm), sl->va + sl->npages * PAGE_SIZE);
		pr_info("leaf slot=%ld i=%lu map=guard va=0x%lx %s\n", s, sl->npages,
			sl->va + sl->npages * PAGE_SIZE, vm);
	}
	pr_info("cmd=state slot=%ld kind=%s n=%lu ret=0\n", s, kind_names[sl->kind], sl->npages);
}

static bool map_ok(const char *cmd, const char *map)
{
	if (map && (!strcmp(map, "vm") || !strcmp(map, "lm")))
		return true;
	pr_info("cmd=%s ret=-22 err=map_is_vm_or_lm\n", cmd);
	return false;
}

static void do_probe(long s, unsigned long off, const char *map, bool write)
{
	struct slot *sl = get_slot(write ? "probe" : "peek", s);
	unsigned long va;
	u8 val = 0;
	long rd, wr;

	if (!sl || !in_slot(write ? "probe" : "peek", s, sl, off) || !map_ok("probe", map))
		return;
	va = slot_addr(sl, off, map);
	rd = copy_from_kernel_nofault(&val, (void *)va, 1);
	if (!write) {
		pr_info("cmd=peek slot=%ld off=%lu map=%s va=0x%lx ret=%ld val=%u\n", s, off, map, va, rd,
			rd ? 0 : val);
		return;
	}
	if (!f_to_nofault) {
		pr_info("cmd=probe slot=%ld ret=missing sym=copy_to_kernel_nofault\n", s);
		return;
	}
	/* the same byte back: a probe changes nothing that it can reach */
	wr = f_to_nofault((void *)va, &val, 1);
	pr_info("cmd=probe slot=%ld off=%lu map=%s va=0x%lx read=%ld write=%ld ret=0\n", s, off, map, va, rd, wr);
}

/*
 * A plain access, outside dma64_lock: when it faults, die_kernel_fault()
 * kills this task in the middle and nothing would release a mutex.  The
 * guest runs it in a child shell, so only the child dies.
 */
static void do_access(long s, unsigned long off, const char *map, bool store, u8 val)
{
	const char *cmd = store ? "store" : "load";
	volatile u8 *p = NULL;
	struct slot *sl;

	if (!map_ok(cmd, map))
		return;
	mutex_lock(&dma64_lock);
	sl = get_slot(cmd, s);
	if (sl && in_slot(cmd, s, sl, off))
		p = (volatile u8 *)slot_addr(sl, off, map);
	mutex_unlock(&dma64_lock);
	if (!p)
		return;
	pr_info("cmd=%s slot=%ld off=%lu map=%s va=0x%lx phase=before\n", cmd, s, off, map, (unsigned long)p);
	if (store) {
		*p = val;
	} else {
		val = *p;
	}
	pr_info("cmd=%s slot=%ld off=%lu map=%s va=0x%lx val=%u ret=0 phase=done\n", cmd, s, off, map,
		(unsigned long)p, val);
}

static void do_info(void)
{
	u32 midr = read_cpuid_id();
	int i;

	pr_info("cmd=info release=%s page_offset=0x%lx phys_offset=0x%llx rodata_full=%d can_set_direct_map=%d bbml2_noabort=%d midr=0x%08x implementer=0x%02x part=0x%03x ret=0\n",
		utsname()->release, (unsigned long)PAGE_OFFSET, (u64)PHYS_OFFSET,
		v_rodata_full ? (int)*v_rodata_full : -1,
		f_can_set_direct_map ? (int)f_can_set_direct_map() : -1,
		f_bbml2 ? (int)f_bbml2() : -1, midr, MIDR_IMPLEMENTOR(midr), MIDR_PARTNUM(midr));
	for (i = 0; i < ARRAY_SIZE(image_syms); i++) {
		unsigned long va = kln(image_syms[i]);

		/* __pa_symbol(): a kernel image address minus kimage_voffset */
		pr_info("image sym=%s pa=0x%llx\n", image_syms[i], va ? (u64)__pa_symbol(va) : 0ULL);
	}
	for (i = 0; i < ARRAY_SIZE(symtab); i++)
		pr_info("sym name=%s found=%d\n", symtab[i].name, *symtab[i].ptr ? 1 : 0);
}

/* ------------------------------------------------------------ parsing */

static bool num(const char *tok, u64 *out)
{
	return tok && !kstrtoull(tok, 0, out);
}

static ssize_t dma64_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	char buf[160], *cur, *tok[MAXTOK] = { NULL };
	u64 a = 0, b = 0, c = 0, d = 0;
	size_t len = min(count, sizeof(buf) - 1);
	const char *cmd;
	int ntok = 0;

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

	if (!strcmp(cmd, "store") && ntok >= 5 && num(tok[4], &d)) {
		do_access((long)a, (unsigned long)b, tok[3], true, (u8)d);
		return count;
	}
	if (!strcmp(cmd, "load") && ntok >= 4) {
		do_access((long)a, (unsigned long)b, tok[3], false, 0);
		return count;
	}

	mutex_lock(&dma64_lock);
	if (!strcmp(cmd, "info")) {
		do_info();
	} else if (!strcmp(cmd, "vmalloc") && ntok >= 3) {
		do_vmalloc(cmd, (long)a, (unsigned long)b, false);
	} else if (!strcmp(cmd, "vmalloc_huge") && ntok >= 3) {
		do_vmalloc(cmd, (long)a, (unsigned long)b, true);
	} else if (!strcmp(cmd, "vmap") && ntok >= 3) {
		do_vmap((long)a, (unsigned long)b);
	} else if (!strcmp(cmd, "page") && ntok >= 2) {
		do_page((long)a);
	} else if (!strcmp(cmd, "image") && ntok >= 3) {
		do_image((long)a, tok[2]);
	} else if ((!strcmp(cmd, "ro") || !strcmp(cmd, "rw")) && ntok >= 4) {
		do_setmem(cmd, (long)a, (unsigned long)b, (unsigned long)c, (unsigned long)d);
	} else if ((!strcmp(cmd, "dminv") || !strcmp(cmd, "dmdef")) && ntok >= 3) {
		do_dm(cmd, (long)a, (unsigned long)b);
	} else if (!strcmp(cmd, "state") && ntok >= 2) {
		do_state((long)a);
	} else if (!strcmp(cmd, "probe") && ntok >= 4) {
		do_probe((long)a, (unsigned long)b, tok[3], true);
	} else if (!strcmp(cmd, "peek") && ntok >= 4) {
		do_probe((long)a, (unsigned long)b, tok[3], false);
	} else {
		pr_info("cmd=%s ret=-22 err=unknown_or_usage\n", cmd);
	}
	mutex_unlock(&dma64_lock);
	return count;
}

static const struct proc_ops dma64_ops = {
	.proc_write = dma64_write,
};

static struct proc_dir_entry *dma64_entry;

static int __init dma64_init(void)
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
	dma64_entry = proc_create("dmoracle_arm64", 0200, NULL, &dma64_ops);
	if (!dma64_entry)
		return -ENOMEM;
	pr_info("cmd=init ret=0 missing_syms=%d\n", missing);
	return 0;
}

/*
 * Areas stay mapped until unload.  An area whose pages were made read-only
 * keeps them that way (vfree() would hand read-only linear aliases back to
 * the page allocator without VM_FLUSH_RESET_PERMS), so nothing is freed here:
 * the guest powers off instead of unloading.
 */
static void __exit dma64_exit(void)
{
	proc_remove(dma64_entry);
}

module_init(dma64_init);
module_exit(dma64_exit);
