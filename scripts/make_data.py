"""Write data/digits.npz from scikit-learn's bundled 8x8 digits (no download).

Pixels are kept as uint8 0..16; a stratified split with seed 0 gives 1437 train / 360 test
images.  Run: python scripts/make_data.py   (needs scikit-learn: pip install -e .[scripts])
"""
import argparse
from pathlib import Path

import numpy as np

from chainlab.nets import manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "data" / "digits.npz"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = d.data.astype(np.uint8).reshape(-1, 8, 8)
    y = d.target.astype(np.uint8)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=360, stratify=y, random_state=args.seed)
    idx_train.sort()
    idx_test.sort()
    np.savez_compressed(args.out, x_train=X[idx_train], y_train=y[idx_train], x_test=X[idx_test], y_test=y[idx_test],
                        train_index=idx_train, test_index=idx_test)
    manifest.record(args.out)                  # data/SHA256SUMS
    print(f"wrote {args.out}: {len(idx_train)} train, {len(idx_test)} test images")


if __name__ == "__main__":
    main()
