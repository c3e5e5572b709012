"""The vectorised leave-two-out engine behind the 2 vs 2 test (no loop over class pairs).

For rows ``a`` of one similarity matrix and ``b`` of another, Pearson r over the columns that remain after
dropping columns ``x`` and ``y`` follows from sufficient statistics. With every row first centred and scaled
to unit norm over all ``n`` columns (Pearson r is invariant to both, and the numbers stay well conditioned),
and ``m = n - 2``:

    S_a = -(a_x + a_y)                      sum of the remaining entries
    V_a = m (1 - a_x^2 - a_y^2) - S_a^2     m^2 times their variance
    r   = (m (a.b - a_x b_x - a_y b_y) - S_a S_b) / sqrt(V_a V_b)

For the pair (i, j) the test needs r(A_i, B_i), r(A_j, B_j), r(A_i, B_j), r(A_j, B_i), all with columns i and j
dropped. Writing ``R_self[x, y] = r(A_x, B_x)`` and ``R_cross[x, y] = r(A_x, B_y)`` (columns x, y dropped) and
``D = R_self - R_cross``, the 2 vs 2 margin of the pair is ``D[i, j] + D[j, i]``. ``D`` needs one cross-product
matrix ``A B^T`` and elementwise work on n x n arrays, done in row blocks that stay in cache.

A row that is constant over the remaining columns has no Pearson r: its terms are NaN and every comparison
that involves it counts as a failure (``NaN > x`` is false), as a literal loop with ``np.corrcoef`` would.
A margin within ``TIE`` (1e-9) of zero is a tie, not a success: with few classes (four leave two columns, and
every r is then +1 or -1) exact ties are common and rounding noise must not decide them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# variance below this fraction of the mean square: the row is constant over the remaining columns
_FLAT = 1e-10
_BLOCK_BYTES = 1 << 18
# a margin this close to zero is a tie (rounding noise decides its sign), and a tie is not a success
TIE = 1e-9


def _unit_rows(s: np.ndarray) -> np.ndarray:
    z = s - s.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, z / np.where(norm > 0, norm, 1.0), np.nan)


def _row_terms(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Diagonal, S (sums) and 1/sqrt(V) for every row x with columns x and y dropped."""
    m = len(z) - 2
    d = np.diag(z).copy()
    s = -(d[:, None] + z)
    v = m * (1.0 - d[:, None] ** 2 - z * z) - s * s
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(v > _FLAT * m, 1.0 / np.sqrt(np.maximum(v, _FLAT * m)), np.nan)
    return d, s, inv


def _check(s: np.ndarray, name: str) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {s.shape}")
    if s.shape[0] < 4:
        raise ValueError(f"the 2 vs 2 test needs at least 4 classes, got {s.shape[0]}")
    return s


@dataclass(frozen=True)
class NetSide:
    """The side that is relabelled under permutation: its row-normalised matrix and per-row factors."""

    z: np.ndarray  # row-normalised matrix
    d: np.ndarray  # its diagonal
    p: np.ndarray  # m / sqrt(V); S / sqrt(V) = -p (d[x] + z[x, y]) / m follows from z

    @classmethod
    def of(cls, s: np.ndarray) -> NetSide:
        s = _check(s, "s_a")
        z = _unit_rows(s)
        d, _, inv = _row_terms(z)
        return cls(z=z, d=d, p=(len(s) - 2) * inv)


@dataclass(frozen=True)
class WordSide:
    """The fixed side: row-normalised matrix, the factors of the margin formula and a low-rank split."""

    z: np.ndarray
    d: np.ndarray
    inv: np.ndarray  # 1/sqrt(V) of row x, columns x, y dropped
    inv_t: np.ndarray  # its transpose (row y, columns x, y dropped), contiguous
    e: np.ndarray  # (inv z)^T + w, with w = (S inv - (S inv)^T) / m
    g: np.ndarray  # w - inv z + inv^T d[y]
    u_t: np.ndarray | None  # z = u diag(sv) v^T, kept when the rank is low
    sv: np.ndarray | None
    v: np.ndarray | None

    @classmethod
    def of(cls, s: np.ndarray, factor: bool = False) -> WordSide:
        s = _check(s, "s_b")
        z = _unit_rows(s)
        d, ss, inv = _row_terms(z)
        g = inv * z
        w = ss * inv
        inv_t = np.ascontiguousarray(inv.T)
        u_t = sv = v = None
        if factor and np.isfinite(z).all():
            u, sv_all, vt = np.linalg.svd(z)
            rank = int((sv_all > sv_all[0] * len(z) * np.finfo(np.float64).eps).sum())
            if rank < len(z) // 4:  # only then are two thin products cheaper than one square one
                u_t, sv, v = np.ascontiguousarray(u[:, :rank].T), sv_all[:rank], vt[:rank].T
        dw = (w - w.T) / (len(z) - 2)
        return cls(z=z, d=d, inv=inv, inv_t=inv_t, e=g.T + dw, g=dw - g + inv_t * d[None, :], u_t=u_t, sv=sv, v=v)


def _block_rows(n: int) -> int:
    return int(min(n, max(8, _BLOCK_BYTES // (8 * n))))


def margin_matrix(net: NetSide, word: WordSide, perm: np.ndarray | None = None) -> np.ndarray:
    """``D = R_self - R_cross`` for the net side relabelled by ``perm`` (``A[perm][:, perm]``) against the word
    side; the 2 vs 2 margin of pair (i, j) is ``D[i, j] + D[j, i]``."""
    n = len(word.z)
    if len(net.z) != n:
        raise ValueError(f"the similarity matrices differ in size: {len(net.z)} vs {n}")
    dp = net.d if perm is None else net.d[perm]
    if word.u_t is None:
        cross = (net.z if perm is None else net.z[perm][:, perm]) @ word.z.T
    else:
        left = (net.z @ (word.v if perm is None else word.v[np.argsort(perm)])) * word.sv
        cross = (left if perm is None else left[perm]) @ word.u_t
    diag = np.diagonal(cross) - dp * word.d
    out = np.empty((n, n))
    step = _block_rows(n)
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, n, step):
            rows = slice(start, min(n, start + step))
            if perm is None:
                zp, pp = net.z[rows], net.p[rows]
            else:  # relabel one block of rows at a time, in cache
                zp, pp = net.z[perm[rows]][:, perm], net.p[perm[rows]][:, perm]
            # D = p (diag inv + d_a e - C inv^T + z_a g), the terms of R_self - R_cross gathered
            t = diag[rows, None] * word.inv[rows]
            c = dp[rows, None] * word.e[rows]
            t += c
            np.multiply(cross[rows], word.inv_t[rows], out=c)
            t -= c
            np.multiply(zp, word.g[rows], out=c)
            t += c
            np.multiply(t, pp, out=out[rows])
    return out


def successes_relabelled(net: NetSide, word: WordSide, invs: np.ndarray) -> np.ndarray:
    """``count_successes(margin_matrix(net, word, inv))`` for every row ``inv`` of ``invs`` at once: the same
    formula batched over relabellings, for few classes, where a loop would spend its time in Python."""
    n = len(word.z)
    out = np.empty(len(invs), dtype=np.int64)
    iu = np.triu_indices(n, 1)
    ar = np.arange(n)
    chunk = max(1, (1 << 22) // (n * n))
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, len(invs), chunk):
            inv = invs[start:start + chunk]
            zp = net.z[inv[:, :, None], inv[:, None, :]]
            pp = net.p[inv[:, :, None], inv[:, None, :]]
            dp = net.d[inv]
            cross = zp @ word.z.T
            diag = cross[:, ar, ar] - dp * word.d
            t = diag[:, :, None] * word.inv + dp[:, :, None] * word.e - cross * word.inv_t + zp * word.g
            d = t * pp
            margins = d[:, iu[0], iu[1]] + d[:, iu[1], iu[0]]
            out[start:start + chunk] = np.count_nonzero(margins > TIE, axis=1)
    return out


SMALL = 64  # up to this many classes the relabellings are batched


def count_successes(d: np.ndarray) -> int:
    """Pairs i < j with ``D[i, j] + D[j, i] > TIE`` (NaN counts as a failure)."""
    n = len(d)
    step = _block_rows(n)
    total = 0
    with np.errstate(invalid="ignore"):
        for start in range(0, n, step):
            stop = min(n, start + step)
            tile = d[start:stop, start:stop]
            total += int(np.count_nonzero(np.triu(tile + tile.T > TIE, 1)))
            if stop < n:
                total += int(np.count_nonzero(d[start:stop, stop:] + d[stop:, start:stop].T > TIE))
    return total


def pair_margins(s_a: np.ndarray, s_b: np.ndarray) -> np.ndarray:
    """Margins ``r(A_i,B_i) + r(A_j,B_j) - r(A_i,B_j) - r(A_j,B_i)`` for the pairs ``np.triu_indices(n, 1)``."""
    d = margin_matrix(NetSide.of(s_a), WordSide.of(s_b))
    i, j = np.triu_indices(len(d), 1)
    return d[i, j] + d[j, i]
