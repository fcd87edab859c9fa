// SPDX-License-Identifier: GPL-2.0
/*
 * rfcuser - the user-space half of `rofolio oracle rfc`, static, run as init's
 * child in the guest with the rfctest module loaded.  Each result is one line
 * "rfcuser: <what> key=value ...".  `rfcuser read` does the first two, before the
 * module is loaded (so the kernel page-table dump that follows shows the direct
 * map as boot left it); `rfcuser probe` all but the first, after it.  In order:
 *
 *   thp         /sys/kernel/mm/transparent_hugepage/{enabled,use_zero_page}
 *   read        a read fault on a 2M-aligned MADV_HUGEPAGE range: pagemap's pfn of
 *               its first and last 4K page and /proc/kpageflags' ZERO_PAGE and
 *               THP bits; consecutive pfns over 2M from a 2M-aligned base mean
 *               the huge zero folio is PMD-mapped (mm/huge_memory.c,
 *               do_huge_pmd_anonymous_page(), set_huge_zero_folio())
 *   cow         a user write to the same range: a new pfn, the byte written,
 *               the rest still zero (do_huge_pmd_wp_page())
 *   freero      rfctest's refused free (patch 5)
 *   migrate     folio_make_readonly() on an anonymous page, then
 *               madvise(MADV_SOFT_OFFLINE), which migrates it
 *               (mm/memory-failure.c, soft_offline_in_use_page())
 *   kwrite      rfctest's kernel store to the huge zero folio, in a child:
 *               it oopses when the folio is read-only
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MADV_SOFT_OFFLINE
#define MADV_SOFT_OFFLINE 101
#endif
#define PMD_SIZE (2UL << 20)
#define KPF_THP 22
#define KPF_ZERO_PAGE 24

static long page_size;

static uint64_t read_u64(const char *path, uint64_t index, int *ok)
{
	uint64_t v = 0;
	int fd = open(path, O_RDONLY);

	*ok = 0;
	if (fd < 0)
		return 0;
	if (pread(fd, &v, sizeof(v), index * sizeof(v)) == sizeof(v))
		*ok = 1;
	close(fd);
	return v;
}

/* The pfn behind a user address (bit 63 present, bits 0-54 the pfn), or 0. */
static uint64_t pfn_of(const void *addr)
{
	int ok;
	uint64_t e = read_u64("/proc/self/pagemap", (uintptr_t)addr / page_size, &ok);

	return ok && (e >> 63) ? e & ((1ULL << 55) - 1) : 0;
}

static void cmd(const char *fmt, unsigned long arg)
{
	char buf[64];
	int fd = open("/proc/rfctest", O_WRONLY);
	int n = snprintf(buf, sizeof(buf), fmt, arg);

	if (fd < 0) {
		printf("rfcuser: rfctest missing errno=%d\n", errno);
		return;
	}
	if (write(fd, buf, n) != n)
		printf("rfcuser: rfctest write failed errno=%d\n", errno);
	close(fd);
}

static void show_file(const char *what, const char *path)
{
	char buf[128] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	printf("rfcuser: thp %s=\"%s\"\n", what, n > 0 ? buf : "missing");
}

/* A read fault on a fresh 2M-aligned MADV_HUGEPAGE range; prints the read line, returns the range. */
static unsigned char *read_huge_zero(uint64_t *pfn_out)
{
	unsigned char *raw, *huge;
	uint64_t pfn, last, flags;
	volatile unsigned char sink;
	int ok;

	raw = mmap(NULL, 2 * PMD_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		printf("rfcuser: read ret=-%d err=mmap\n", errno);
		return NULL;
	}
	huge = (unsigned char *)(((uintptr_t)raw + PMD_SIZE - 1) & ~(PMD_SIZE - 1));
	if (madvise(huge, PMD_SIZE, MADV_HUGEPAGE))
		printf("rfcuser: read madvise_hugepage_errno=%d\n", errno);
	sink = huge[0] + huge[PMD_SIZE - 1];	/* the read faults */
	(void)sink;
	pfn = pfn_of(huge);
	last = pfn_of(huge + PMD_SIZE - page_size);
	flags = pfn ? read_u64("/proc/kpageflags", pfn, &ok) : 0;
	printf("rfcuser: read pfn=0x%llx last=0x%llx aligned=%d zero=%d thp=%d value=%d\n",
	       (unsigned long long)pfn, (unsigned long long)last,
	       pfn && (pfn % (PMD_SIZE / page_size)) == 0,
	       (int)((flags >> KPF_ZERO_PAGE) & 1), (int)((flags >> KPF_THP) & 1), huge[0]);
	*pfn_out = pfn;
	return huge;
}

int main(int argc, char **argv)
{
	unsigned char *huge, *anon;
	uint64_t pfn, cow, before;
	int ok, bad = 0, status;
	size_t i;
	pid_t child;

	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = sysconf(_SC_PAGESIZE);
	if (argc < 2 || (strcmp(argv[1], "read") && strcmp(argv[1], "probe"))) {
		fprintf(stderr, "usage: rfcuser read|probe\n");
		return 2;
	}
	if (!strcmp(argv[1], "read")) {
		show_file("enabled", "/sys/kernel/mm/transparent_hugepage/enabled");
		show_file("use_zero_page", "/sys/kernel/mm/transparent_hugepage/use_zero_page");
		return read_huge_zero(&pfn) ? 0 : 1;
	}
	huge = read_huge_zero(&pfn);
	if (!huge)
		return 1;
	huge[0] = 0x5a;
	cow = pfn_of(huge);
	for (i = 1; i < PMD_SIZE; i++)
		bad += huge[i] != 0;
	printf("rfcuser: cow pfn=0x%llx value=0x%x nonzero_rest=%d\n", (unsigned long long)cow, huge[0], bad);

	cmd("freero", 0);

	anon = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED) {
		printf("rfcuser: migrate ret=-%d err=mmap\n", errno);
	} else {
		anon[0] = 1;
		cmd("ro 0x%lx", (unsigned long)anon);
		before = pfn_of(anon);
		ok = madvise(anon, page_size, MADV_SOFT_OFFLINE);
		printf("rfcuser: migrate before=0x%llx after=0x%llx ret=%d errno=%d\n",
		       (unsigned long long)before, (unsigned long long)pfn_of(anon), ok, ok ? errno : 0);
	}

	if (!pfn)
		return 0;
	child = fork();
	if (child == 0) {
		cmd("write 0x%lx", pfn);
		printf("rfcuser: kwrite survived=1\n");
		_exit(0);
	}
	waitpid(child, &status, 0);
	printf("rfcuser: kwrite exited=%d signal=%d\n", WIFEXITED(status), WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	return 0;
}
