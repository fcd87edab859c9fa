"""The QEMU oracle: run a scenario on a real Linux kernel and compare it with the model, step by step."""
