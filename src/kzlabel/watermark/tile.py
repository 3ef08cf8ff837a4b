"""The keyed tile of the image watermark and reading it back from a whitened canvas.

The layout (which chips are pilots, which carry which coded bit, their keyed signs) is shared by the embedder and the
detector; the rest is the detector's search: folds of the canvas modulo the tile on a candidate lattice
(:mod:`.lattice` proposes them), the pilot's phase and tile symmetry, despreading and decoding, and the budget of
lattices, phases and decodes that the p-value's Bonferroni count (:data:`N_TESTS`) covers (docs/watermark.md).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from . import core
from .lattice import CANVAS, TILE, lattice_candidates, peak_refine

__all__ = [
    "CHIPS",
    "N_DATA",
    "N_PILOT",
    "N_TESTS",
    "REPEAT",
    "layout",
    "p_value",
    "payload_pvalue",
    "payload_tile",
    "search",
]

CHIPS = TILE * TILE
REPEAT = 4  # chips per coded bit per tile
N_DATA = core.CODED_BITS * REPEAT  # 752
N_PILOT = CHIPS - N_DATA  # 272
P_THRESHOLD = core.P_THRESHOLD

# search space of the synchronisation (drives the Bonferroni correction of the p-value)
_N_LATTICE = 17  # lattice candidates whose pilot is measured (identity, 5 from _families, autocorrelation peaks)
_N_FINE = 4  # of those, measured again on bilinear folds (the pilots that may be decoded)
_N_DECODE = 6  # of those, decoded at most (best pilot first): bounds the MAC's chance pass to 6 · 2^-24
# the 8 symmetries of the square tile (mirror, 90° turns): chip index k -> D @ k on the tile torus
_DIHEDRAL = np.array(
    [[[a, 0], [0, b]] for a in (1, -1) for b in (1, -1)] + [[[0, a], [b, 0]] for a in (1, -1) for b in (1, -1)],
    np.float64,
)
# the sub-chip offsets (chip units) at which a candidate lattice's fold may be measured: a crop leaves the tile at any
# phase, and a fold sampled half a chip off mixes neighbouring chips (a centre crop's pilot fell from z ≈ 11 to 5-6)
_OFFSETS = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5], [0.5, 0.5]])
# the ranking's nearest-pixel folds use two of them, none and the diagonal half chip (all four found the same crops
# on the held-out pictures, in 1.25x the time)
_COARSE = _OFFSETS[[0, 3]]
N_TESTS = CHIPS * _N_LATTICE * len(_OFFSETS) * len(_DIHEDRAL)  # phases × lattices × sub-chip offsets × symmetries
_FINE_BELOW = 0.9  # decode on the 2× canvas when a lattice vector is shorter than this many canvas px per chip
_DECODE_GATE = 0.05  # decode a lattice only when its pilot peak is at least suggestive


def p_value(z: float, mac_ok: bool) -> float:
    """Pilot peak and keyed MAC combined (see :func:`.core.combined_pvalue`) over this detector's search space."""
    return core.combined_pvalue(z, N_TESTS, mac_ok, _N_DECODE)


def payload_pvalue(list_decoding: bool = True) -> float:
    """Chance under H0 that :func:`.image.detect_image` returns a MAC-verified payload at all, whatever p it reports. A
    lattice is decoded only when its pilot passes ``_DECODE_GATE`` (at most ``_N_DECODE`` of them), the list only when
    it passes ``core.LIST_GATE``; the MAC key is independent of what the decoder sees. A caller trying several pictures
    (the video detector) bounds each by this, not by the MAC alone (``_N_DECODE`` · 2^-24 ignores the gate)."""
    best_path = _DECODE_GATE * _N_DECODE * 2.0**-core.MAC_BITS
    return best_path + (core.list_pvalue() if list_decoding else 0.0)


@lru_cache(maxsize=32)
def layout(key: bytes | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keyed tile layout: pilot positions/signs, data positions, their coded-bit index and signs (flat indices)."""
    g = core.rng(key, "image-layout")
    perm = g.permutation(CHIPS)
    signs = g.integers(0, 2, CHIPS).astype(np.float32) * 2 - 1
    pilot_pos = np.sort(perm[:N_PILOT])
    data_pos = perm[N_PILOT:]
    data_bit = np.arange(N_DATA) % core.CODED_BITS
    pilot = np.zeros(CHIPS, np.float32)
    pilot[pilot_pos] = signs[pilot_pos]
    for a in (pilot_pos, data_pos, data_bit, signs, pilot):
        a.setflags(write=False)
    return pilot_pos, data_pos, data_bit, signs, pilot


@lru_cache(maxsize=32)
def _pilot_fft(key: bytes | None, single: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Conjugate spectra of the pilot and of its magnitude under each tile symmetry D (the chip at k moved to D k):
    correlating a fold with them stands for correlating the fold's 8 permutations with the pilot (see _phase).
    ``single``: in single precision, for the ranking folds."""
    _, _, _, _, pilot = layout(key)
    inverse = _dihedral_index()[[int(np.flatnonzero((_DIHEDRAL == D.T).all(axis=(1, 2)))[0]) for D in _DIHEDRAL]]
    p = pilot.astype(np.float32 if single else np.float64)[inverse].reshape(len(_DIHEDRAL), TILE, TILE)
    return np.conj(np.fft.rfft2(p)), np.conj(np.fft.rfft2(np.abs(p)))


def payload_tile(payload: bytes, key: bytes | None) -> np.ndarray:
    _, data_pos, data_bit, signs, pilot = layout(key)
    coded = core.encode_payload(payload, key)
    t = pilot.copy()
    t[data_pos] = signs[data_pos] * (1.0 - 2.0 * coded[data_bit])
    return t.reshape(TILE, TILE)


# ------------------------------------------------------------------------------------------------------- search


def _bilinear_inside(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``a`` sampled bilinearly at ``pos`` (2, ...); 0 outside the pixel centres' hull (no content beyond the edge).

    OpenCV's remap (interpolation weights in 1/32 px, far below a chip), ~10× faster than numpy gathers: the folds are
    most of a search's cost."""
    n0, n1 = a.shape
    shape = pos.shape[1:]
    side = CHIPS if pos[0].size % CHIPS == 0 else pos[0].size  # remap wants 2-D maps under 32767 a side
    rows = pos[0].reshape(-1, side).astype(np.float32, copy=False)
    cols = pos[1].reshape(-1, side).astype(np.float32, copy=False)
    out = cv2.remap(a.astype(np.float32, copy=False), cols, rows, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out[(rows < 0) | (rows > n0 - 1) | (cols < 0) | (cols > n1 - 1)] = 0.0
    return out.reshape(shape)


@lru_cache(maxsize=32)
def _grid(m: int) -> np.ndarray:
    g = np.arange(-(m // 2) * TILE, (m - m // 2) * TILE, dtype=np.float64)  # g ≡ fold index (mod TILE)
    gr, gc = np.meshgrid(g, g, indexing="ij")
    return np.stack([gr.ravel(), gc.ravel()])


_CORNERS = np.array([[-1, -1, 1, 1], [-1, 1, -1, 1]], np.float64) * (CANVAS / 2.0)


def _fold(w: np.ndarray, A: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Sample ``w`` (bilinear) at chip positions ``centre + A @ (g + offset)`` and sum modulo the tile.

    ``A`` is in canvas units; ``w`` may be a finer canvas (an integer multiple of :data:`CANVAS`)."""
    return _folds(w, A, offset[None])[0]


def _folds(w: np.ndarray, A: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`_fold` at each of ``offsets`` (k, 2): one grid of positions and one remap for all of them."""
    half = np.abs(np.linalg.solve(A, _CORNERS)).max() + 1.0
    m = int(np.ceil(2 * half / TILE))
    ctr = CANVAS / 2.0  # integer pixel index: identity lattice samples chip centres exactly
    scale = w.shape[0] / CANVAS  # canvas pixel i covers fine pixels scale·i ... scale·(i+1)
    base = (scale * (A @ _grid(m) + ctr) + (scale - 1) / 2).astype(np.float32)  # remap's precision
    pos = base[:, None, :] + (scale * (A @ offsets.T)).astype(np.float32)[:, :, None]
    s = _bilinear_inside(w, pos)
    return s.reshape(len(offsets), m, TILE, m, TILE).sum(axis=(1, 3))


@lru_cache(maxsize=1)
def _chip_offsets() -> np.ndarray:
    k = np.stack(np.meshgrid(np.arange(TILE), np.arange(TILE), indexing="ij")).reshape(2, -1)
    return k.astype(np.float64)


def _fold_nearest(w: np.ndarray, A: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`_folds` with nearest-pixel sampling on the canvas, for ranking lattices by their pilot (a few times
    cheaper). A chip's position is (its copy's origin) + (its place in the tile): the two parts are computed
    separately and broadcast, and a zero border stands in for everything outside the canvas."""
    half = np.abs(np.linalg.solve(A, _CORNERS)).max() + 1.0
    m = int(np.ceil(2 * half / TILE))
    j = np.arange(-(m // 2), m - m // 2, dtype=np.float64) * TILE
    jr, jc = np.meshgrid(j, j, indexing="ij")
    origin = (A @ np.stack([jr.ravel(), jc.ravel()]) + (CANVAS / 2.0 + 1.0)).astype(np.float32)  # +1: zero border
    place = (A @ (_chip_offsets()[:, None, :] + offsets.T[:, :, None]).reshape(2, -1)).astype(np.float32)
    n = w.shape[0] + 2
    wp = np.zeros((n, n), np.float32)
    wp[1:-1, 1:-1] = w
    r = np.clip(np.rint(origin[0][:, None] + place[0][None, :]), 0, n - 1).astype(np.int32)
    c = np.clip(np.rint(origin[1][:, None] + place[1][None, :]), 0, n - 1).astype(np.int32)
    r *= n
    r += c
    return wp.ravel()[r].sum(axis=0, dtype=np.float64).reshape(len(offsets), TILE, TILE)


@lru_cache(maxsize=1)
def _dihedral_index() -> np.ndarray:
    """(8, 1024) flat indices: the fold on lattice ``A @ D`` is ``fold.ravel()[idx[d]]`` (D maps the tile to itself)."""
    k = np.stack(np.meshgrid(np.arange(TILE), np.arange(TILE), indexing="ij")).reshape(2, -1)
    dk = np.einsum("dij,jn->din", _DIHEDRAL, k).astype(np.int64) % TILE
    return dk[:, 0] * TILE + dk[:, 1]


def _phase(folds: np.ndarray, key: bytes | None, single: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best pilot match of each fold (L, TILE, TILE) over tile phases and the 8 tile symmetries, in one batch of
    FFTs: z (L,), the argmax as a flat index into (8, TILE, TILE) (L,), and the z maps (L, 8, TILE, TILE).

    Mirrored or quarter-turned images fold to a permuted tile, so each symmetry is one permutation D of the same
    fold x: the correlation of x∘D with the pilot p at phase s is that of x with p∘D⁻¹ at phase D s, so each fold is
    transformed once and the symmetries cost only the inverse transforms. ``single``: in single precision (half the
    FFT time; z to ~1e-6, enough to rank lattices, while decisions use double).
    """
    fp, fa = _pilot_fft(key, single)
    folds = folds.astype(np.float32) if single else folds
    n, idx = len(folds), _dihedral_index()
    num = np.fft.irfft2(np.fft.rfft2(folds)[:, None] * fp, s=(TILE, TILE)).reshape(n, len(_DIHEDRAL), -1)
    den = np.fft.irfft2(np.fft.rfft2(folds * folds)[:, None] * fa, s=(TILE, TILE)).reshape(n, len(_DIHEDRAL), -1)
    z = np.take_along_axis(num, idx[None], 2) / np.sqrt(np.maximum(np.take_along_axis(den, idx[None], 2), 1e-12))
    z = z.reshape(n, len(_DIHEDRAL), TILE, TILE)
    flat = z.reshape(n, -1).argmax(axis=1)
    return z.reshape(n, -1)[np.arange(n), flat], flat, z


def _despread(fold: np.ndarray, key: bytes | None) -> np.ndarray:
    _, data_pos, data_bit, signs, _ = layout(key)
    f = fold.reshape(-1)
    soft = np.bincount(data_bit, weights=f[data_pos] * signs[data_pos], minlength=core.CODED_BITS)
    return soft / (np.std(soft) + 1e-12)


def _pilots(
    w: np.ndarray,
    lattices: list[np.ndarray],
    key: bytes | None,
    cache: dict | None = None,
    nearest: bool = False,
    offsets: np.ndarray = _OFFSETS[:1],
) -> list[tuple]:
    """Pilot peak on each lattice: (z, the lattice with the matching tile symmetry, sub-chip tile shift).

    Each lattice is folded at every one of ``offsets`` (a subset of _OFFSETS, which N_TESTS counts) and the best is
    kept. ``nearest``: fold with nearest-pixel sampling (several times cheaper; ranks lattices well, but its peaks are
    lower, so decisions use bilinear folds). ``cache`` keeps the key-independent folds between calls on the same
    canvas (the false-positive benchmark tries thousands of keys on one image).
    """
    if not lattices:
        return []
    folds = []
    for A in lattices:
        tag = (A.tobytes(), offsets.tobytes(), nearest)
        fold = None if cache is None else cache.get(tag)
        if fold is None:
            fold = _fold_nearest(w, A, offsets) if nearest else _folds(w, A, offsets)
            if cache is not None:
                cache[tag] = fold
        folds.append(fold)
    z0, flat, z = _phase(np.concatenate(folds), key, single=nearest)
    k = len(offsets)
    out = []
    for n, A in enumerate(lattices):
        b = n * k + int(np.argmax(z0[n * k : (n + 1) * k]))
        d, i, j = np.unravel_index(flat[b], z.shape[1:])
        # the fold index g holds chip g - shift: refine the shift to sub-chip precision; the fold on A at offset o is
        # the fold on A @ D at offset D^T o, permuted
        shift = np.array(peak_refine(z[b, d], int(i), int(j))) + _DIHEDRAL[d].T @ offsets[b - n * k]
        out.append((float(z0[b]), A @ _DIHEDRAL[d], (shift + TILE / 2) % TILE - TILE / 2))
    return out


def _decode(w: np.ndarray, A: np.ndarray, shift: np.ndarray, key: bytes | None) -> tuple[bytes, bool, np.ndarray]:
    """Resample the fold aligned to the tile, despread, Viterbi-decode, check the MAC."""
    soft = _despread(_fold(w, A, shift), key)
    payload, ok = core.decode_payload(soft, key)
    return payload, ok, soft


def search(w: np.ndarray, shape: tuple[int, int], key: bytes | None, cache: dict | None = None, fine=None):
    """(z, payload, mac_ok, soft bits) of the best lattice: the identity first (no geometric change, the common
    case), then the pilots of the autocorrelation lattice candidates, decoding the most promising ones (at most
    ``_N_DECODE`` decodes per call, each only when its pilot is suggestive).

    ``fine()`` gives a 2× finer whitened canvas: where the content was shrunk on the canvas (borders, a picture
    pasted into a larger one), chips are smaller than a canvas pixel and are decoded there instead.
    """
    ident = _pilots(w, [np.eye(2)], key, cache)[0]
    best: tuple[float, bytes, bool, np.ndarray | None] = (ident[0], b"", False, None)
    decodes = 0

    def decode_best(pilots: list) -> bool:
        nonlocal best, decodes
        for z1, A2, shift in pilots:
            if decodes >= _N_DECODE or core.rademacher_pvalue(z1, N_TESTS) >= _DECODE_GATE:
                return False
            decodes += 1
            shrunk = fine is not None and np.linalg.svd(A2, compute_uv=False)[-1] < _FINE_BELOW
            r = (z1, *_decode(fine() if shrunk else w, A2, shift, key))
            # an equal pilot replaces a best that holds no soft bits yet (the list decoder needs them)
            if (r[2], r[0]) > (best[2], best[0]) or (best[3] is None and not best[2] and r[0] >= best[0]):
                best = r
            if r[2] and p_value(r[0], True) < P_THRESHOLD:
                return True
        return False

    if decode_best([ident]):
        return best
    lattices = None if cache is None else cache.get("lattices")
    if lattices is None:
        found = lattice_candidates(w, shape, _N_LATTICE)
        lattices = [A for A in found if np.abs(A - np.eye(2)).max() > 1e-3][: _N_LATTICE - 1]
        if cache is not None:
            cache["lattices"] = lattices
    # rank every candidate on cheap folds, then measure the most promising on bilinear ones, in rank order, each
    # decoded before the next is measured (a marked picture usually decodes on the first; the decodes stay within
    # _N_DECODE whatever the order, so only the work changes)
    coarse = [t[0] for t in _pilots(w, lattices, key, cache, nearest=True, offsets=_COARSE)]
    for i in np.argsort(coarse)[::-1][:_N_FINE]:
        pilot = _pilots(w, [lattices[i]], key, cache, offsets=_OFFSETS)[0]
        if best[3] is None and pilot[0] > best[0]:
            best = (pilot[0], b"", False, None)
        if decode_best([pilot]):
            break
    return best
