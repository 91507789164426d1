"""Statistics of the glyph-on-scene images (chainlab.scenes) and a PNG grid of examples.

Prints the generation time of 20 000 training images (2 threads), the radial power-spectrum slope
(log power vs log frequency, frequencies 2–14 cycles/image) of the scenes, of their bare
backgrounds and of the two-object scenes, with two controls (white noise: 0; a synthetic field of
power exactly 1/f^2: −2), the same slope of 32×32 crops of each photograph at its native
resolution, and the correlation between colour channels.  Writes data/scenes-examples.png (8×8
training scenes with their labels, and a row of two-object test scenes with both labels).

Run: python scripts/scenes_stats.py [--out data/scenes-examples.png] [--n 20000]
"""
import argparse
import time
from pathlib import Path

import numpy as np
import torch

from chainlab.nets import manifest, scenes


def power_law_field(n, beta, rng, size=256, crop=32):
    """32×32 crops of Gaussian random fields with power exactly f^-beta."""
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
    f[0, 0] = 1
    amp = f ** (-beta / 2)
    amp[0, 0] = 0
    out = []
    while len(out) < n:
        z = np.fft.ifft2(amp * np.fft.fft2(rng.standard_normal((size, size)))).real
        out += [z[i:i + crop, j:j + crop] for i in range(0, size, crop) for j in range(0, size, crop)]
    return np.array(out[:n])


def fmt_corr(c):
    return f"R-G {c[0, 1]:.3f}, G-B {c[1, 2]:.3f}, R-B {c[0, 2]:.3f}"


def write_grid(path, rows=8, cols=8):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = scenes.load_scenes("train", rows * cols, seed=0)
    t = scenes.load_two_object_scenes("test", cols, seed=0)
    fig, axes = plt.subplots(rows + 1, cols, figsize=(cols * 0.95, (rows + 1) * 1.05))
    for k, ax in enumerate(axes.flat):
        r, c = divmod(k, cols)
        if r < rows:
            img, title = s.x[k], f"{s.y[k]}"
        else:
            img, title = t.x[c], f"L{t.y_left[c]} R{t.y_right[c]}"
        ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
        ax.set_title(title, fontsize=7, pad=2)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("train scenes (label) / last row: two-object test scenes (left, right label)", fontsize=7)
    fig.tight_layout(pad=0.3, h_pad=0.3, w_pad=0.2, rect=(0, 0, 1, 0.975))
    import io
    from PIL import Image
    buf = io.BytesIO()
    fig.savefig(buf, dpi=80, format="png")
    plt.close(fig)
    buf.seek(0)
    # 256-colour palette (the figure is photographs; keeps the PNG well under 200 KB)
    Image.open(buf).convert("RGB").quantize(256).save(path, optimize=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "data" / "scenes-examples.png"))
    ap.add_argument("--n", type=int, default=20000)
    args = ap.parse_args()
    torch.set_num_threads(2)

    t0 = time.perf_counter()
    scenes.photographs()
    scenes.load_scenes("train", 10, seed=123)          # loads photos, pyramids, digits (cached)
    t_init = time.perf_counter() - t0
    times = []
    for rep in range(3):
        t0 = time.perf_counter()
        s = scenes.load_scenes("train", args.n, seed=rep)
        times.append(time.perf_counter() - t0)
    print(f"generation of {args.n} train scenes (2 threads): {min(times):.2f} s best of 3 "
          f"({', '.join(f'{t:.2f}' for t in times)}); one-off loading of photos/pyramids/digits {t_init:.2f} s")
    t0 = time.perf_counter()
    two = scenes.load_two_object_scenes("test", args.n, seed=0)
    print(f"generation of {args.n} two-object scenes: {time.perf_counter() - t0:.2f} s")

    bg = scenes.load_backgrounds("train", args.n, seed=0)
    te = scenes.load_scenes("test", args.n, seed=0)
    bg_te = scenes.load_backgrounds("test", args.n, seed=0)
    rng = np.random.default_rng(0)
    slope = scenes.radial_power_spectrum_slope
    print("radial power spectrum slope (log-log, f = 2..14 cycles/image; natural images ≈ −2):")
    print(f"  train scenes      {slope(s.x):+.2f}    test scenes      {slope(te.x):+.2f}")
    print(f"  train backgrounds {slope(bg):+.2f}    test backgrounds {slope(bg_te):+.2f}")
    print(f"  two-object scenes {slope(two.x):+.2f}")
    print(f"  glyph alpha maps alone {slope(scenes.load_scenes('train', 5000, seed=0, return_info=True).info['alpha']):+.2f}")
    print(f"  controls: white noise {slope(rng.random((5000, 3, 32, 32))):+.2f}, "
          f"1/f^2 field {slope(power_law_field(5000, 2.0, rng)):+.2f}, 1/f field {slope(power_law_field(5000, 1.0, rng)):+.2f}")
    print("  32×32 crops of each photograph at native resolution (no resampling):")
    for name, a in zip(scenes.PHOTOS, scenes.photographs()):
        a = a.astype(np.float32) / 255
        ys = rng.integers(0, a.shape[0] - 32, 1000)
        xs = rng.integers(0, a.shape[1] - 32, 1000)
        crops = np.stack([a[y:y + 32, x:x + 32].transpose(2, 0, 1) for y, x in zip(ys, xs)])
        print(f"    {name:22s} {a.shape[0]}×{a.shape[1]}: {slope(crops):+.2f}")
    print("channel correlation (Pearson over all pixels):")
    print(f"  train scenes      {fmt_corr(scenes.channel_correlation(s.x))}")
    print(f"  train backgrounds {fmt_corr(scenes.channel_correlation(bg))}")
    print(f"  test scenes       {fmt_corr(scenes.channel_correlation(te.x))}")
    print(f"  white noise       {fmt_corr(scenes.channel_correlation(rng.random((2000, 3, 32, 32))))}")
    print(f"mean pixel value: train scenes {s.x.mean():.3f}, test scenes {te.x.mean():.3f}; "
          f"per channel {np.round(s.x.mean((0, 2, 3)), 3).tolist()}")

    write_grid(args.out)
    manifest.record(args.out)                  # data/SHA256SUMS
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
