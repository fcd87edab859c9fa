/*
 * kc_arm64 - read arm64 kernel memory and walk the kernel's page tables through
 * /proc/kcore, from userspace, for the arm64 oracle's initramfs (static,
 * cross-compiled with aarch64-linux-gnu-gcc).  4K granule, 48-bit VA, 4 levels
 * (level 0 "PGD" 512G, level 1 "PUD" 1G, level 2 "PMD" 2M, level 3 "PTE" 4K),
 * which is what Debian's arm64 kernel is built with.
 *
 *   kc_arm64 read VA NBYTES
 *       "KC read va=0x.. q=0x.. err=0" per 64-bit word
 *   kc_arm64 vmcoreinfo
 *       the VMCOREINFO note of /proc/kcore, one "KC vmcoreinfo KEY=VALUE" per line
 *       (SYMBOL(swapper_pg_dir), NUMBER(PHYS_OFFSET), NUMBER(kimage_voffset), ...:
 *       Debian's kernel has no CONFIG_KALLSYMS_ALL, so data symbols are not in kallsyms)
 *   kc_arm64 walk PGD_VA PHYS_OFFSET PAGE_OFFSET START END
 *       every entry of [START, END) that the kernel's ptdump would note (a leaf,
 *       or an empty entry at the level where the walk found it), coalesced while
 *       the level and the descriptor's attribute bits (all but the output
 *       address) stay the same:
 *       "KC run va=0x..-0x.. pa=0x.. level=PGD|PUD|PMD|PTE attrs=0x.."
 *       (pa and attrs are 0 for an empty entry) then
 *       "KC walk_summary start=0x.. end=0x.. kb_pte= kb_pmd= kb_pud= entries="
 *   Table pages are read through the linear map: va = (pa - PHYS_OFFSET) | PAGE_OFFSET.
 */
#include "kcore.h"

#define OA_MASK 0x0000fffffffff000ULL /* output address, 48-bit PA, 4K granule */

static uint64_t phys_offset, page_offset;

static uint64_t lm(uint64_t pa)
{
	return (pa - phys_offset) | page_offset;
}

static const char *const lname[] = { "PGD", "PUD", "PMD", "PTE" };
static const int shift[] = { 39, 30, 21, 12 };

static struct {
	int valid, lvl;
	uint64_t va, end, pa, attrs;
} r;
static unsigned long kb[4], entries;

static void flush_run(void)
{
	if (!r.valid)
		return;
	printf("KC run va=0x%lx-0x%lx pa=0x%lx level=%s attrs=0x%lx\n", r.va, r.end, r.pa, lname[r.lvl], r.attrs);
	r.valid = 0;
}

/* one entry the ptdump would note: a leaf (block or page), an invalid non-zero entry, or none */
static void note(uint64_t va, uint64_t size, int lvl, uint64_t e)
{
	uint64_t attrs = e & ~OA_MASK, pa = (e & 1) ? (e & OA_MASK) + (va & (size - 1)) : 0;

	entries++;
	if (e & 1)
		kb[lvl] += size >> 10;
	if (r.valid && r.lvl == lvl && r.end == va && r.attrs == attrs) {
		r.end = va + size;
		return;
	}
	flush_run();
	r.valid = 1;
	r.va = va;
	r.end = va + size;
	r.pa = pa;
	r.attrs = attrs;
	r.lvl = lvl;
}

/* walk the table at table_va (level lvl) over [va, end), both inside the table's span */
static int walk_table(uint64_t table_va, int lvl, uint64_t va, uint64_t end)
{
	uint64_t t[512];
	int err;

	if ((err = kread(table_va, t, sizeof(t)))) {
		printf("KC err level=%s va=0x%lx table=0x%lx err=%d\n", lname[lvl], va, table_va, err);
		return 1;
	}
	while (va < end) {
		uint64_t size = 1ULL << shift[lvl];
		uint64_t base = va & ~(size - 1), next = base + size;
		uint64_t e = t[(va >> shift[lvl]) & 511];
		int table = lvl < 3 && (e & 3) == 3;

		if (next > end || next == 0)
			next = end;
		if (table) {
			if (walk_table(lm(e & OA_MASK), lvl + 1, va, next))
				return 1;
		} else {
			note(va, next - va, lvl, e);
		}
		va = next;
	}
	return 0;
}

static int vmcoreinfo(void)
{
	for (int i = 0; i < nph; i++) {
		char *buf, *p, *end;

		if (ph[i].p_type != PT_NOTE)
			continue;
		buf = malloc(ph[i].p_filesz + 1);
		if (!buf || pread(fd, buf, ph[i].p_filesz, ph[i].p_offset) != (ssize_t)ph[i].p_filesz) {
			perror("kc: PT_NOTE");
			return 1;
		}
		p = buf;
		end = buf + ph[i].p_filesz;
		while (p + sizeof(Elf64_Nhdr) <= end) {
			Elf64_Nhdr *n = (Elf64_Nhdr *)p;
			char *name = p + sizeof(*n), *desc = name + ((n->n_namesz + 3) & ~3U);

			if (desc + n->n_descsz > end)
				break;
			if (n->n_namesz >= 10 && !memcmp(name, "VMCOREINFO", 10)) {
				char *line = desc, *stop = desc + n->n_descsz;

				while (line < stop && *line) {
					char *nl = memchr(line, '\n', stop - line);

					if (!nl)
						nl = stop;
					printf("KC vmcoreinfo %.*s\n", (int)(nl - line), line);
					line = nl + 1;
				}
				free(buf);
				return 0;
			}
			p = desc + ((n->n_descsz + 3) & ~3U);
		}
		free(buf);
	}
	printf("KC err vmcoreinfo=missing\n");
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (kcore_open("kc_arm64"))
		return 1;
	if (!strcmp(argv[1], "read") && argc == 4)
		return kcore_read_cmd(argv[2], argv[3]);
	if (!strcmp(argv[1], "vmcoreinfo"))
		return vmcoreinfo();
	if (!strcmp(argv[1], "walk") && argc == 7) {
		uint64_t pgd = strtoull(argv[2], 0, 0), start, end;
		int ret;

		phys_offset = strtoull(argv[3], 0, 0);
		page_offset = strtoull(argv[4], 0, 0);
		start = strtoull(argv[5], 0, 0);
		end = strtoull(argv[6], 0, 0);
		ret = walk_table(pgd, 0, start, end);
		flush_run();
		printf("KC walk_summary start=0x%lx end=0x%lx kb_pte=%lu kb_pmd=%lu kb_pud=%lu entries=%lu ret=%d\n",
		       start, end, kb[3], kb[2], kb[1], entries, ret);
		return ret;
	}
	fprintf(stderr, "usage: kc_arm64 read VA NBYTES | kc_arm64 vmcoreinfo | kc_arm64 walk PGD_VA PHYS_OFFSET PAGE_OFFSET START END\n");
	return 2;
}
