"""The pair graph of offline data: which log-ratio differences the data pin down.

Every offline contrastive loss depends on θ only through θ(y) − θ(y') along pairs with
q(y, y') + q(y', y) > 0; the connected components of that graph are what the data identify
(CoPG Thm 1 assumes a shared support for this reason).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ..prepare import Tables
from ..problems import OfflineData


def pair_graph_components(weights: ArrayLike) -> tuple[int, NDArray[np.int64]]:
    """Connected components of the pair graph of one prompt.

    Args:
      weights: q(y, y'), shape (n, n): actions y ≠ y' are joined when q(y, y') + q(y', y) > 0.
    Returns:
      (number of components, label of each action); an action in no pair is alone.
    """
    w = np.asarray(weights, dtype=np.float64)
    adj = (w + w.T) > 0
    np.fill_diagonal(adj, False)
    k, labels = connected_components(csr_matrix(adj), directed=False)
    return int(k), labels.astype(np.int64)


def sym_weights(tab: Tables, data: OfflineData, x: int) -> NDArray[np.float64]:
    """w(y, y') = ρ(x)(q(y, y') + q(y', y)) with a zero diagonal (self-pairs carry no signal)."""
    q = float(tab.rho[x]) * np.asarray(data.joint[x])
    w = q + q.T
    np.fill_diagonal(w, 0.0)
    return w


def indicator(labels: NDArray[np.int64], k: int) -> NDArray[np.float64]:
    return (labels[:, None] == np.arange(k)[None, :]).astype(np.float64)


def laplacian_solve(
    w: NDArray[np.float64], rhs: NDArray[np.float64], theta0: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Solve L θ = rhs with Σ_{y∈C} θ(y) = Σ_{y∈C} θ0(y) on every component C: one linear solve.

    L = diag(w1) − w is PSD with null space spanned by the component indicators E, so
    (L + E Eᵀ) θ = rhs + E Eᵀ θ0 is positive definite and its solution satisfies both
    (rhs is orthogonal to the null space for the systems built here).
    """
    k, labels = pair_graph_components(w)
    E = indicator(labels, k)
    L = np.diag(w.sum(axis=1)) - w
    A = L + E @ E.T
    return scipy.linalg.solve(A, rhs + E @ (E.T @ theta0), assume_a="pos")


def graph_report(tab: Tables, data: OfflineData) -> tuple[bool, str, dict[str, Any]]:
    """Whether the offline pair graph identifies the policy on every prompt, and why not."""
    X, _n = np.shape(tab.log_ref)
    comps, reasons = [], []
    for x in range(X):
        k, labels = pair_graph_components(sym_weights(tab, data, x))
        comps.append(labels.tolist())
        if k > 1:
            sizes = np.bincount(labels, minlength=k)
            alone = [int(y) for y in np.flatnonzero(sizes[labels] == 1)]
            why = f"prompt {x}: the pair graph has {k} components {labels.tolist()}"
            if float(tab.rho[x]) == 0.0:
                why = f"prompt {x}: ρ(x) = 0, so no data"
            elif alone:
                why += f"; actions {alone} appear in no pair and keep their initial logits"
            reasons.append(why)
    sup1 = data.mu1 > 0
    sup2 = data.mu2 > 0
    thm1 = bool(np.all(sup1 == sup2) and np.all(sup1 == np.isfinite(np.asarray(tab.log_ref))))
    details = {"components": comps, "thm1_support": thm1}
    if not reasons:
        msg = "the pair graph connects all actions on every prompt"
        if not thm1:
            msg += (
                " (μ1, μ2, π_ref do not share a support, so CoPG Thm 1's assumption fails, "
                "but connectivity is what identifies the fixed point)"
            )
        return True, msg, details
    msg = (
        "not unique: "
        + "; ".join(reasons)
        + ". The data fix only differences of log π/π_ref inside a component; the relative "
        "mass between components (and the logits of unpaired actions) stay where the flow "
        "started: returned is the fixed point with the component sums of `init`"
    )
    return False, msg, details
