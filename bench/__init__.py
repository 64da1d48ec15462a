"""Benchmarks of epics-meta-devices, each measured side by side with a bare-p4p baseline.

Run with ``make bench`` (``python -m bench``; ``--quick`` for a short check). This package
imports only the standard library, so ``python -m bench`` can set up the loopback EPICS
environment before anything imports p4p.
"""
