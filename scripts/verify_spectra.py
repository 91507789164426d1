"""Verify the data-independent singular-value ratios of A, W and W⊙A and of T_l (Sixt Fig. 3).

Thin caller of :mod:`chainlab.verify`; `chainlab verify` runs every claim at once.
Usage: python scripts/verify_spectra.py [--quick] [-o report/]
"""
import sys

from chainlab.app.verify import script_main

if __name__ == "__main__":
    sys.exit(script_main(['S4']))
