/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kln.h - kallsyms_lookup_name() for rofolio's oracle modules (dmoracle.c,
 * dmoracle_arm64.c, rfctest.c).  It is not exported since v5.7; registering a
 * kprobe on it fills in its address, and the probe is removed at once.
 */
#ifndef ROFOLIO_KLN_H
#define ROFOLIO_KLN_H

#include <linux/errno.h>
#include <linux/kprobes.h>

typedef unsigned long (*kln_t)(const char *name);

/* kallsyms_lookup_name(), or NULL with *err set to why not */
static inline kln_t find_kallsyms_lookup_name(int *err)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	kln_t found;

	*err = register_kprobe(&kp);
	if (*err < 0)
		return NULL;
	found = (kln_t)kp.addr;
	unregister_kprobe(&kp);
	*err = found ? 0 : -ENOENT;
	return found;
}

#endif /* ROFOLIO_KLN_H */
