"""arm64 at run time: set_memory_ro/rw and set_direct_map_* on a Linux 7.2 kernel under QEMU, against the model.

``rofolio oracle arm64-run`` boots the 7.2 kernel ``rofolio kernel build --arch arm64`` makes under
``qemu-system-aarch64 -M virt -cpu max`` once per ``rodata=`` value (on, noalias, off), runs every
experiment of the suite (``suite_arm64/*.toml``) through the module ``kmod/dmoracle_arm64.c``, and replays
the same steps on the model (``replay``), step by step (``verdict``).  The experiments that need
BBML2_NOABORT, which no QEMU CPU can have, run on the model only and say so.

``boots.run()`` is the library entry; ``command.arm64_run`` the command line.  Importing this package is
cheap: the command imports the model only when it runs.
"""

from __future__ import annotations

__all__: list[str] = []
