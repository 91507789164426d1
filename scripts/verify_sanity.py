"""Verify random-logit SSIM sanity check (Sixt §4, Fig. 4a).

Thin caller of :mod:`chainlab.verify`; `chainlab verify` runs every claim at once.
Usage: python scripts/verify_sanity.py [--quick] [-o report/]
"""
import sys

from chainlab.app.verify import script_main

if __name__ == "__main__":
    sys.exit(script_main(['S5']))
