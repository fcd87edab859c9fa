"""The QEMU oracle: run a scenario on a real Linux kernel and compare it with the model, step by step.

* ``setup``: Debian packages, the kernel image and the module, into a cache directory;
* ``kmod/``: the module (``dmoracle.c``) and the /proc/kcore walker (``kc.c``), package data;
* ``translate``: scenario steps to module commands, or a refusal;
* ``guest``: the initramfs, the QEMU boot and the serial log;
* ``model``: the same scenario on the model, reporting what the guest reports;
* ``compare`` / ``bootcheck``: side by side, per step and for the boot;
* ``session``: grouping experiments into boots; ``cli``: the ``rofolio oracle`` commands;
* ``suite/``: the oracle suite, ordinary scenario files.
"""
