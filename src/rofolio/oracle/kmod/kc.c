/*
 * kc - read kernel memory and walk the kernel's page tables through /proc/kcore,
 * from userspace, so a boot can be inspected without loading any module.
 * Static, for the oracle's initramfs.  4-level paging with the direct map at
 * 0xffff888000000000 (nokaslr), which is what rofolio's oracle boots.
 *
 *   kc read VA NBYTES           "KC read va=0x.. q=0x.. err=0" per 64-bit word
 *   kc walk PGD_VA START END    coalesced leaf runs of [START, END):
 *       "KC run va=0x..-0x.. pa=0x..-0x.. level=4K|2M|1G P=1 RW= NX= PCD= PWT= PAT= G= D="
 *       "KC run va=0x..-0x.. level=none"         (zero entries, or no table at all)
 *       "KC run va=0x..-0x.. level=4K|2M|1G P=0 RW= NX= ..."   (not present, non-zero)
 *     then "KC walk_summary ... kb_4k= kb_2m= kb_1g=" (present leaves only)
 */
#include "kcore.h"

#define DM 0xffff888000000000ULL
#define PFN_MASK 0x000ffffffffff000ULL
#define LVL_NONE 0


static const char *lname(int l)
{
	return l == 1 ? "4K" : l == 2 ? "2M" : l == 3 ? "1G" : l == 4 ? "512G" : "none";
}

/* attributes that make a run: present, RW, NX, PCD, PWT, PAT, G, D (and the level) */
static uint64_t attrs(uint64_t e, int lvl)
{
	/* bit 12 of a large leaf is PAT only when present: otherwise a bit of the inverted pfn (L1TF) */
	uint64_t pat = lvl == 1 ? !!(e & 0x80) : ((e & 1) && (e & 0x1000));

	return (e & (1 | 2 | 8 | 0x10 | 0x40 | 0x100)) | (e & (1ULL << 63)) | (pat << 62);
}

static struct {
	int valid, lvl;
	uint64_t va, end, pa, key;
} r;
static unsigned long kb[5];

static void flush_run(void)
{
	uint64_t k = r.key;

	if (!r.valid)
		return;
	if (r.lvl == LVL_NONE)
		printf("KC run va=0x%lx-0x%lx level=none\n", r.va, r.end);
	else if (k & 1)
		printf("KC run va=0x%lx-0x%lx pa=0x%lx-0x%lx level=%s P=1 RW=%d NX=%d PCD=%d PWT=%d PAT=%d G=%d D=%d\n",
		       r.va, r.end, r.pa, r.pa + (r.end - r.va), lname(r.lvl), !!(k & 2), !!(k >> 63),
		       !!(k & 0x10), !!(k & 8), !!(k & (1ULL << 62)), !!(k & 0x100), !!(k & 0x40));
	else
		printf("KC run va=0x%lx-0x%lx level=%s P=0 RW=%d NX=%d PCD=%d PWT=%d PAT=%d G=%d D=%d\n",
		       r.va, r.end, lname(r.lvl), !!(k & 2), !!(k >> 63), !!(k & 0x10), !!(k & 8),
		       !!(k & (1ULL << 62)), !!(k & 0x100), !!(k & 0x40));
	r.valid = 0;
}

static void leaf(uint64_t va, uint64_t size, int lvl, uint64_t e)
{
	uint64_t key = 0, pa = 0;

	if (!e) {
		lvl = LVL_NONE;
	} else {
		key = attrs(e, lvl);
		if (e & 1) {
			pa = (e & PFN_MASK & ~(size - 1)) + (va & (size - 1));
			kb[lvl] += size >> 10;
		}
	}
	if (r.valid && r.lvl == lvl && r.end == va && r.key == key &&
	    (!(key & 1) || r.pa + (r.end - r.va) == pa)) {
		r.end = va + size;
		return;
	}
	flush_run();
	r.valid = 1;
	r.va = va;
	r.end = va + size;
	r.pa = pa;
	r.key = key;
	r.lvl = lvl;
}

static int walk(uint64_t pgd, uint64_t start, uint64_t end)
{
	uint64_t va = start;
	int err;

	while (va < end && va >= start) {
		uint64_t e4, e3, e2, sz;

		if ((err = kread(pgd + ((va >> 39) & 511) * 8, &e4, 8))) {
			printf("KC err level=pgd va=0x%lx err=%d\n", va, err);
			return 1;
		}
		sz = 1ULL << 39;
		if (!(e4 & 1)) {
			uint64_t next = (va & ~(sz - 1)) + sz;

			leaf(va, (next > end ? end : next) - va, LVL_NONE, 0);
			va = next;
			continue;
		}
		if ((err = kread(DM + (e4 & PFN_MASK) + ((va >> 30) & 511) * 8, &e3, 8))) {
			printf("KC err level=pud va=0x%lx err=%d\n", va, err);
			return 1;
		}
		sz = 1ULL << 30;
		if (!e3 || !(e3 & 1) || (e3 & 0x80)) {
			leaf(va & ~(sz - 1), sz, 3, e3);
			va = (va & ~(sz - 1)) + sz;
			continue;
		}
		if ((err = kread(DM + (e3 & PFN_MASK) + ((va >> 21) & 511) * 8, &e2, 8))) {
			printf("KC err level=pmd va=0x%lx err=%d\n", va, err);
			return 1;
		}
		sz = 1ULL << 21;
		if (!e2 || !(e2 & 1) || (e2 & 0x80)) {
			leaf(va & ~(sz - 1), sz, 2, e2);
			va = (va & ~(sz - 1)) + sz;
			continue;
		}
		{
			uint64_t ptes[512];

			if ((err = kread(DM + (e2 & PFN_MASK), ptes, sizeof(ptes)))) {
				printf("KC err level=pte va=0x%lx err=%d\n", va, err);
				return 1;
			}
			for (int i = (va >> 12) & 511; i < 512 && va < end; i++, va += 4096)
				leaf(va, 4096, 1, ptes[i]);
		}
	}
	flush_run();
	printf("KC walk_summary start=0x%lx end=0x%lx kb_4k=%lu kb_2m=%lu kb_1g=%lu\n",
	       start, end, kb[1], kb[2], kb[3]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (kcore_open("kc"))
		return 1;
	if (!strcmp(argv[1], "read") && argc == 4)
		return kcore_read_cmd(argv[2], argv[3]);
	if (!strcmp(argv[1], "walk") && argc == 5)
		return walk(strtoull(argv[2], 0, 0), strtoull(argv[3], 0, 0), strtoull(argv[4], 0, 0));
	fprintf(stderr, "usage: kc read VA NBYTES | kc walk PGD_VA START END\n");
	return 2;
}
