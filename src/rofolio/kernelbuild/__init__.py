"""Linux kernels built from source for the oracle: Debian's linux-source-7.2, tinyconfig plus rofolio's checked
Kconfig fragment, with or without the RFC v2 series (package data in ``patches/``), cached outside the clone.

``build(arch, rfc=..., fragment=..., log=...)`` returns a ``Built`` (image, .config, System.map, the O= directory
a module builds against); ``smoke_boot(built)`` boots it once under QEMU.  ``rofolio kernel build`` is the
command line; docs/kernel-build.md explains the tree, the fragment and the cache key.
"""

from rofolio.kernelbuild.kbuild import TARGETS, Built, build, kbuild_dir, options
from rofolio.kernelbuild.smoke import SmokeBoot, smoke_boot

__all__ = ["TARGETS", "Built", "SmokeBoot", "build", "kbuild_dir", "options", "smoke_boot"]
