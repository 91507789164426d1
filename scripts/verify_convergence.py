"""Verify CSC convergence of the modified-BP methods (Sixt Fig. 5, §4) and Theorem 1's exponential convergence.

Thin caller of :mod:`chainlab.verify`; `chainlab verify` runs every claim at once.
Usage: python scripts/verify_convergence.py [--quick] [-o report/]
"""
import sys

from chainlab.app.verify import script_main

if __name__ == "__main__":
    sys.exit(script_main(['S1', 'S2', 'S3', 'S6']))
