/*
 * kcore.h - what the oracle's two /proc/kcore walkers (kc for x86-64, kc_arm64)
 * share: opening /proc/kcore, reading kernel virtual memory through its PT_LOAD
 * segments, and the "read VA NBYTES" command.  Static functions: each walker is
 * one translation unit.
 */
#ifndef ROFOLIO_KCORE_H
#define ROFOLIO_KCORE_H

#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fd;
static Elf64_Phdr *ph;
static int nph;

/* Read n bytes of kernel virtual memory at va: 0, -1 (no segment holds it) or -2 (short read). */
static int kread(uint64_t va, void *buf, size_t n)
{
	for (int i = 0; i < nph; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		if (va >= ph[i].p_vaddr && va + n <= ph[i].p_vaddr + ph[i].p_memsz) {
			off_t off = ph[i].p_offset + (va - ph[i].p_vaddr);
			return pread(fd, buf, n, off) == (ssize_t)n ? 0 : -2;
		}
	}
	return -1;
}

/* Open /proc/kcore and load its program headers; 0, or 1 after printing why not. */
static int kcore_open(const char *prog)
{
	Elf64_Ehdr eh;

	fd = open("/proc/kcore", O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "%s: ", prog);
		perror("open /proc/kcore");
		return 1;
	}
	if (pread(fd, &eh, sizeof(eh), 0) != sizeof(eh)) {
		fprintf(stderr, "%s: ", prog);
		perror("ELF header");
		return 1;
	}
	nph = eh.e_phnum;
	ph = calloc(nph, sizeof(*ph));
	if (!ph || pread(fd, ph, nph * sizeof(*ph), eh.e_phoff) != (ssize_t)(nph * sizeof(*ph))) {
		fprintf(stderr, "%s: ", prog);
		perror("program headers");
		return 1;
	}
	return 0;
}

/* "read VA NBYTES": one "KC read va=0x.. q=0x.. err=N" line per 64-bit word. */
static int kcore_read_cmd(const char *va_arg, const char *n_arg)
{
	uint64_t va = strtoull(va_arg, 0, 0);
	size_t n = strtoul(n_arg, 0, 0);

	for (size_t o = 0; o < n; o += 8) {
		uint64_t v = 0;
		int err = kread(va + o, &v, 8);

		printf("KC read va=0x%lx q=0x%016lx err=%d\n", va + o, v, err);
	}
	return 0;
}

#endif
