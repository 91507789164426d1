"""Verify the sanity checks of Sixt §4: random-logit SSIM (Fig. 4a) and cascading randomization (Fig. 4b).

Thin caller of :mod:`chainlab.verify`; `chainlab verify` runs every claim at once.
Usage: python scripts/verify_sanity.py [--quick] [-o report/]
"""
import sys

from chainlab.app.verify import script_main

if __name__ == "__main__":
    sys.exit(script_main(['S5', 'S7']))
