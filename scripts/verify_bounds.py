"""Verify Binder et al.'s claims as measurements: empirical constants across weight norms (B1, B2) and the
convergence of averages of attributions (B3) on the weight-norm study nets.

Thin caller of :mod:`chainlab.verify`; `chainlab verify` runs every claim at once.
Usage: python scripts/verify_bounds.py [--quick] [-o report/]
"""
import sys

from chainlab.app.verify import script_main

if __name__ == "__main__":
    sys.exit(script_main(['B1', 'B2', 'B3']))
