"""nodirectmap: an architecture without ARCH_HAS_SET_DIRECT_MAP, where the RFC's hook takes the weak default.

``kernel`` holds the machine (a direct map built once, permission changes that
do nothing and report so); ``entry`` is its registry entry.
"""
