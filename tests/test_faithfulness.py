"""Pixel deletion / insertion AUC (chainlab.studies.faithfulness) against a loop written from the definition, and
its optimality on a linear model (where the best order is known in closed form)."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from chainlab.studies.faithfulness import deletion_insertion, pixel_order, step_counts, trapezoid_auc


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3)).double().eval()


def reference(model, X, maps, targets, baseline, steps):
    """The definition, one image and one step at a time: pixels sorted by (−m, index), n_t = round(t·HW/T),
    p_k by softmax, the trapezoid rule written as a sum of intervals."""
    out = {"deletion": [], "insertion": []}
    n, C, H, W = X.shape
    for i in range(n):
        m = maps[i].reshape(-1)
        order = sorted(range(H * W), key=lambda j: (-m[j], j))
        for mode in out:
            s = []
            for t in range(steps + 1):
                k = int(round(t * H * W / steps))
                chosen = set(order[:k])
                x = np.empty((C, H, W))
                for j in range(H * W):
                    r, c = divmod(j, W)
                    src = baseline if (j in chosen) == (mode == "deletion") else X[i]
                    x[:, r, c] = src[:, r, c]
                with torch.no_grad():
                    logits = model(torch.as_tensor(x[None])).numpy()[0]
                e = np.exp(logits - logits.max())
                s.append(e[targets[i]] / e.sum())
            out[mode].append(sum((s[t] + s[t + 1]) / 2 / steps for t in range(steps)))
    return np.array(out["deletion"]), np.array(out["insertion"])


@pytest.mark.parametrize("steps", [4, 7])
def test_against_the_loop_of_the_definition(steps):
    rng = np.random.default_rng(0)
    X = rng.random((3, 3, 8, 8))
    maps = rng.normal(size=(3, 8, 8))
    maps[0, :2] = 0.5                                  # ties: resolved by position
    baseline = np.full((3, 8, 8), 0.4)
    t = np.array([0, 2, 1])
    net = small_net(1)
    d, i, sd, si = deletion_insertion(net, X, maps, t, baseline, steps=steps, batch=7)
    rd, ri = reference(net, X, maps, t, baseline, steps)
    assert np.allclose(d, rd, rtol=1e-12, atol=1e-14) and np.allclose(i, ri, rtol=1e-12, atol=1e-14)
    assert sd.shape == (3, steps + 1)
    with torch.no_grad():                               # step 0 is the image itself / the baseline itself
        p = torch.softmax(net(torch.as_tensor(X)), 1).numpy()
        pb = torch.softmax(net(torch.as_tensor(np.broadcast_to(baseline, X.shape).copy())), 1).numpy()
    assert np.allclose(sd[:, 0], p[np.arange(3), t]) and np.allclose(si[:, 0], pb[np.arange(3), t])
    assert np.allclose(sd[:, -1], si[:, 0]) and np.allclose(si[:, -1], sd[:, 0])


def test_helpers():
    assert list(step_counts(10, 4)) == [0, 2, 5, 8, 10]          # round(2.5) = 2 (half to even), round(7.5) = 8
    assert trapezoid_auc([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert trapezoid_auc([0.0, 1.0]) == pytest.approx(0.5)
    assert pixel_order(np.array([[[1.0, 3.0], [3.0, 2.0]]])).tolist() == [[1, 2, 3, 0]]


def test_the_linear_models_own_weights_are_the_most_faithful_order():
    """For f = W x (two classes) and x = b + δ·1, deleting pixel j lowers the margin f_k − f_j by δ·Σ_c (w_k − w_j)_cj:
    deleting in the order of that map lowers p_k fastest at every step — the smallest deletion AUC of all
    orders — and the reversed order gives the largest; insertion the other way round."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=(2, 3, 6, 6))
    net = nn.Sequential(nn.Flatten(), nn.Linear(108, 2, bias=False)).double().eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.as_tensor(w.reshape(2, -1)))
    b = np.full((3, 6, 6), 0.3)
    X = (b + 0.2)[None]
    g = (w[0] - w[1]).sum(axis=0)[None]
    k = np.array([int(np.argmax(net(torch.as_tensor(X)).detach().numpy()))])
    g = g if k[0] == 0 else -g
    best = deletion_insertion(net, X, g, k, b, steps=36)
    worst = deletion_insertion(net, X, -g, k, b, steps=36)
    for s in range(5):
        other = deletion_insertion(net, X, rng.normal(size=(1, 6, 6)), k, b, steps=36)
        assert best[0][0] <= other[0][0] <= worst[0][0]
        assert best[1][0] >= other[1][0] >= worst[1][0]
