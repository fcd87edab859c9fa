// SPDX-License-Identifier: GPL-2.0
/*
 * rfctest - probe what the RFC v2 series (src/rofolio/kernelbuild/patches/)
 * changes, on x86-64 and arm64 alike, for `rofolio oracle rfc`.
 *
 * Interface: /proc/rfctest, one command per write(2); each prints one line
 * "rfctest: cmd=<verb> ... ret=<int|missing>".  Numbers are decimal or 0x.
 *
 *   write PFN     a plain one-byte store of the byte already there, through
 *                 the direct map: oopses the writer if the entry is read-only
 *   freero        alloc_pages(order 0), folio_make_readonly(), __free_pages(),
 *                 then whether the page reached the buddy allocator
 *                 (drain_all_pages(), is_free_buddy_page()): the patch's
 *                 DEBUG_VM check must warn and leak it
 *   ro VA         folio_make_readonly() on the folio behind the caller's user
 *                 address VA (get_user_pages_fast), so that user space can
 *                 then ask for its migration (MADV_SOFT_OFFLINE)
 *
 * folio_make_readonly() is not exported: it is resolved with
 * kallsyms_lookup_name, found through a kprobe; an unpatched kernel has no
 * folio_make_readonly and the commands that need it print ret=missing.  (The
 * huge zero folio's direct-map leaf is read from the kernel page-table dump
 * before this module is loaded: loading it changes the direct map.)
 */
#define pr_fmt(fmt) "rfctest: " fmt

#include <linux/gfp.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "kln.h"

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("rofolio oracle: probes of the read-only folio RFC");

typedef int (*make_ro_t)(struct folio *folio);
typedef void (*drain_t)(struct zone *zone);
typedef bool (*is_free_t)(const struct page *page);

static kln_t kln;
static make_ro_t make_ro;
static drain_t drain_all;
static is_free_t is_free;

/* A plain store of the byte that is already there: changes nothing, faults if read-only. */
static void cmd_write(unsigned long pfn)
{
	volatile unsigned char *p;

	if (!pfn_valid(pfn)) {
		pr_info("cmd=write pfn=0x%lx ret=-22 err=invalid_pfn\n", pfn);
		return;
	}
	p = page_address(pfn_to_page(pfn));
	pr_info("cmd=write pfn=0x%lx va=0x%lx when=before\n", pfn, (unsigned long)p);
	*p = *p;
	pr_info("cmd=write pfn=0x%lx va=0x%lx ret=0\n", pfn, (unsigned long)p);
}

static void cmd_freero(void)
{
	struct page *page;
	int free = -1;
	int ret;

	if (!make_ro) {
		pr_info("cmd=freero ret=missing sym=folio_make_readonly\n");
		return;
	}
	page = alloc_pages(GFP_KERNEL, 0);
	if (!page) {
		pr_info("cmd=freero ret=-12\n");
		return;
	}
	ret = make_ro(page_folio(page));
	pr_info("cmd=freero pfn=0x%lx when=made_readonly made=%d\n", page_to_pfn(page), ret);
	__free_pages(page, 0);
	/*
	 * A freed page may sit on a per-CPU list, not yet in the buddy allocator:
	 * drain_all_pages() moves it there, then is_free_buddy_page() finds it
	 * inside some free block.  A refused free leaves it outside every one.
	 */
	if (drain_all && is_free) {
		drain_all(NULL);
		free = is_free(page);
	}
	pr_info("cmd=freero pfn=0x%lx free=%d refcount=%d ret=%d\n", page_to_pfn(page), free,
		page_ref_count(page), ret);
}

static void cmd_ro(unsigned long va)
{
	struct page *page;
	int ret;

	if (!make_ro) {
		pr_info("cmd=ro va=0x%lx ret=missing sym=folio_make_readonly\n", va);
		return;
	}
	ret = get_user_pages_fast(va, 1, 0, &page);
	if (ret != 1) {
		pr_info("cmd=ro va=0x%lx ret=%d err=gup\n", va, ret < 0 ? ret : -EFAULT);
		return;
	}
	ret = make_ro(page_folio(page));
	pr_info("cmd=ro va=0x%lx pfn=0x%lx ret=%d\n", va, page_to_pfn(page), ret);
	put_page(page);
}

static ssize_t rfctest_write(struct file *file, const char __user *ubuf, size_t len, loff_t *off)
{
	char buf[96], verb[16];
	unsigned long arg = 0;
	int n;

	if (len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';
	n = sscanf(buf, "%15s %li", verb, &arg);
	if (n < 1)
		return -EINVAL;
	if (!strcmp(verb, "write") && n == 2)
		cmd_write(arg);
	else if (!strcmp(verb, "freero"))
		cmd_freero();
	else if (!strcmp(verb, "ro") && n == 2)
		cmd_ro(arg);
	else
		pr_info("cmd=%s ret=-22 err=unknown_command\n", verb);
	return len;
}

static const struct proc_ops rfctest_ops = {
	.proc_write = rfctest_write,
};

static int __init rfctest_init(void)
{
	int ret;

	kln = find_kallsyms_lookup_name(&ret);
	if (!kln) {
		pr_info("cmd=init ret=%d err=kallsyms_lookup_name_unresolved\n", ret);
		return ret;
	}
	make_ro = (make_ro_t)kln("folio_make_readonly");
	drain_all = (drain_t)kln("drain_all_pages");
	is_free = (is_free_t)kln("is_free_buddy_page");
	if (!proc_create("rfctest", 0200, NULL, &rfctest_ops))
		return -ENOMEM;
	pr_info("cmd=init folio_make_readonly=%d ret=0\n", make_ro != NULL);
	return 0;
}

static void __exit rfctest_exit(void)
{
	remove_proc_entry("rfctest", NULL);
}

module_init(rfctest_init);
module_exit(rfctest_exit);
