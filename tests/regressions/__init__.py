"""Failures scripts/soak found, pinned: each file replays hypothesis's shrunk steps of one state machine."""
