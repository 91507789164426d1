"""Verify the class insensitivity of LRP-α1β0 on two-object scenes (Sixt Fig. 1b–e).
Thin caller of :mod:`chainlab.verify`; `chainlab verify` runs every claim at once.
Usage: python scripts/verify_class_insensitivity.py [--quick] [--extended] [-o report/]
"""
import sys

from chainlab.app.verify import script_main

if __name__ == "__main__":
    sys.exit(script_main(['S8']))
