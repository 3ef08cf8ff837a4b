"""Media-independent watermark machinery shared by the image (and a future audio) scheme.

* key derivation: every keyed quantity (chip signs, chip permutation, payload scrambling, MAC key) is derived from
  the user key with SHA-256 under a distinct label, so two keys give statistically independent patterns;
* channel code: 64 payload bits + 24-bit keyed MAC (BLAKE2b) -> scrambled with a keyed mask -> rate-1/2, K=7
  convolutional code (generators 171/133 octal, the NASA/CCSDS code), zero-tail terminated: 94 steps, 188 coded bits;
* soft-decision Viterbi decoding, vectorised over the 64 trellis states (the only Python loop is over the 94 steps);
* list decoding (the LIST_SIZE best paths, each checked against the MAC) for a mark whose pilot is already
  significant but whose best path is wrong;
* the p-value bound used by detectors (Hoeffding bound for a Rademacher sum, Bonferroni-corrected).

Nothing here touches pixels or files.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "CODED_BITS",
    "DEFAULT_KEY",
    "INFO_BITS",
    "MAC_BITS",
    "PAYLOAD_BITS",
    "PAYLOAD_BYTES",
    "P_THRESHOLD",
    "WatermarkResult",
    "combined_pvalue",
    "conv_encode",
    "decode_payload",
    "derive",
    "encode_payload",
    "list_decode",
    "list_pvalue",
    "rademacher_pvalue",
    "rng",
    "viterbi",
]

#: kzlabel's public watermark key. Marks made with it can be detected by any verifier (that is the point: the
#: watermark announces "AI-generated, see the registry for payload X"); pass a private key to make a mark only its
#: owner can find.
DEFAULT_KEY = b"kzlabel/watermark/public-key/v1"

PAYLOAD_BITS = 64
PAYLOAD_BYTES = PAYLOAD_BITS // 8
MAC_BITS = 24
INFO_BITS = PAYLOAD_BITS + MAC_BITS  # 88
_K = 7  # constraint length
_GENS = (0o171, 0o133)
_TAIL = _K - 1
STEPS = INFO_BITS + _TAIL  # 94
CODED_BITS = STEPS * len(_GENS)  # 188
P_THRESHOLD = 1e-6  # the false-positive rate every detector is calibrated to
# List decoding (see list_decode): the paths tried, and the pilot p-value a candidate must reach first. Under H0 a
# list hit needs both the pilot gate (probability ≤ LIST_GATE) and a MAC pass on one of LIST_SIZE paths (≤ LIST_SIZE ·
# 2^-24, whatever the paths are: the MAC key is independent of everything the decoder sees), so it happens with
# probability ≤ LIST_GATE · LIST_SIZE · 2^-24 ≈ 3.8e-8.
LIST_SIZE, LIST_GATE = 64, 1e-2


@dataclass(frozen=True)
class WatermarkResult:
    """Outcome of a detector (image or audio).

    ``found`` is True only when the keyed MAC of the decoded payload verifies and ``p_value < 1e-6``. ``payload`` is
    the decoded 8 bytes when found (None otherwise); ``bits`` the 188 soft coded bits of the best candidate (useful
    for diagnostics), ``p_value`` an upper bound on the probability that unmarked content (or content marked with
    another key) gives evidence at least this strong anywhere in the searched space.

    ``unreadable`` is True when no payload decoded but the keyed pilot alone is significant (``p_value < 1e-6``): a
    mark made with this key is there, too damaged (or overwritten by a second mark) to read. Only a detector whose
    pilot bound holds on its own sets it (images and video; the audio sync statistic's bound is loose, so audio
    decides on the MAC alone).
    """

    found: bool
    payload: bytes | None
    bits: np.ndarray | None
    p_value: float
    unreadable: bool = False

    @property
    def present(self) -> bool:
        """A mark made with this key is there, its payload read or not."""
        return self.found or self.unreadable


def derive(key: bytes | None, label: str, n: int = 32) -> bytes:
    """``n`` bytes of key material for ``label`` (SHA-256 in counter mode over the key)."""
    k = DEFAULT_KEY if key is None else bytes(key)
    out = b""
    ctr = 0
    while len(out) < n:
        out += hashlib.sha256(b"kzlabel-wm\x00" + label.encode() + b"\x00" + ctr.to_bytes(4, "big") + k).digest()
        ctr += 1
    return out[:n]


def rng(key: bytes | None, label: str) -> np.random.Generator:
    """A numpy generator seeded from the key material for ``label`` (PCG64, 256-bit seed)."""
    return np.random.Generator(np.random.PCG64(int.from_bytes(derive(key, label, 32), "big")))


def _bits(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))


def _mac(key: bytes | None, payload: bytes) -> bytes:
    return hmac.new(derive(key, "mac"), payload, hashlib.blake2b).digest()[: MAC_BITS // 8]


@lru_cache(maxsize=64)
def _scramble(key: bytes | None) -> np.ndarray:
    return _bits(derive(key, "scramble", INFO_BITS // 8))


def conv_encode(info: np.ndarray) -> np.ndarray:
    """Rate-1/2 K=7 convolutional code with a zero tail: ``len(info)+6`` steps, outputs interleaved g0,g1."""
    u = np.concatenate([info.astype(np.int64), np.zeros(_TAIL, np.int64)])
    outs = []
    for g in _GENS:
        taps = np.array([(g >> (_K - 1 - i)) & 1 for i in range(_K)], np.int64)  # taps[0] = newest bit
        outs.append(np.convolve(u, taps)[: len(u)] & 1)
    return np.stack(outs, axis=1).reshape(-1).astype(np.uint8)


@lru_cache(maxsize=1)
def _trellis() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each next state ns and branch b: predecessor state, input bit, and the 2 output symbols (±1)."""
    n_states = 1 << (_K - 1)
    ns = np.arange(n_states)
    u = ns & 1  # newest bit is the LSB of the state
    prev = np.stack([(ns >> 1), (ns >> 1) | (1 << (_K - 2))], axis=1)  # oldest bit 0 / 1
    reg = (prev << 1) | u[:, None]  # 7-bit register, newest in LSB, oldest in bit 6
    sym = np.empty((n_states, 2, len(_GENS)), np.float64)
    for j, g in enumerate(_GENS):
        # g's MSB tap multiplies the newest bit: reverse g into register bit order
        grev = int(f"{g:0{_K}b}"[::-1], 2)
        par = np.array([(int(r) & grev).bit_count() & 1 for r in reg.reshape(-1)]).reshape(reg.shape)
        sym[:, :, j] = 1.0 - 2.0 * par
    return prev, np.broadcast_to(u[:, None], prev.shape).copy(), sym


def viterbi(soft: np.ndarray) -> np.ndarray:
    """Soft Viterbi decoding; ``soft[k] > 0`` means coded bit k is more likely 0. Returns the info bits."""
    prev, uin, sym = _trellis()
    n_states = prev.shape[0]
    y = np.asarray(soft, np.float64).reshape(STEPS, len(_GENS))
    pm = np.full(n_states, -1e18)
    pm[0] = 0.0
    decisions = np.empty((STEPS, n_states), np.int8)
    for t in range(STEPS):  # loop over the 94 trellis steps (not pixels)
        cand = pm[prev] + sym @ y[t]  # (n_states, 2)
        d = np.argmax(cand, axis=1)
        decisions[t] = d
        pm = cand[np.arange(n_states), d]
    state = 0  # zero-tail: the path ends in state 0
    out = np.empty(STEPS, np.uint8)
    for t in range(STEPS - 1, -1, -1):
        b = decisions[t, state]
        out[t] = uin[state, b]
        state = prev[state, b]
    return out[:INFO_BITS]


def list_viterbi(soft: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` most likely info words (``size`` × INFO_BITS, best first; row 0 is :func:`viterbi`'s).

    A parallel list Viterbi: every state keeps its ``size`` best paths (a (64, size) metric array, so the loop is
    still over the 94 steps only), and the traceback follows all final ranks of the zero state at once."""
    prev, uin, sym = _trellis()
    n_states = prev.shape[0]
    y = np.asarray(soft, np.float64).reshape(STEPS, len(_GENS))
    pm = np.full((n_states, size), -1e18)
    pm[0, 0] = 0.0
    back = np.empty((STEPS, n_states, size), np.int32)  # branch * size + rank of the predecessor path
    rows = np.arange(n_states)[:, None]
    for t in range(STEPS):
        cand = (pm[prev] + (sym @ y[t])[:, :, None]).reshape(n_states, 2 * size)  # (state, branch · rank)
        idx = np.argsort(-cand, axis=1, kind="stable")[:, :size]
        back[t] = idx
        pm = cand[rows, idx]
    alive = int(np.count_nonzero(pm[0] > -1e17))
    state, rank = np.zeros(alive, np.intp), np.arange(alive)
    out = np.empty((alive, STEPS), np.uint8)
    for t in range(STEPS - 1, -1, -1):
        b, rank = np.divmod(back[t, state, rank], size)
        out[:, t] = uin[state, b]
        state = prev[state, b]
    return out[:, :INFO_BITS]


def list_decode(soft: np.ndarray, key: bytes | None, size: int = LIST_SIZE) -> bytes | None:
    """The payload of the most likely of the ``size`` best paths whose MAC verifies, or None.

    At CRF 32 and 240 px a video mark's pilot stays significant (z ≈ 7-8) while 15-20% of the coded bits are wrong and
    the single best path is not the codeword; the codeword was 1st to 98th in the list on such clips."""
    info = list_viterbi(soft, size) ^ _scramble(key)
    for word in info:
        payload = np.packbits(word[:PAYLOAD_BITS]).tobytes()
        if hmac.compare_digest(np.packbits(word[PAYLOAD_BITS:]).tobytes(), _mac(key, payload)):
            return payload
    return None


def list_pvalue(n_lists: int = 1) -> float:
    """Chance under H0 of a list hit (see LIST_GATE): the pilot gate passed and a listed path's MAC verified."""
    return n_lists * LIST_GATE * LIST_SIZE * 2.0**-MAC_BITS


def encode_payload(payload: bytes, key: bytes | None) -> np.ndarray:
    """64-bit payload -> 188 coded bits (0/1): payload ‖ MAC, keyed scramble, convolutional code."""
    info = np.concatenate([_bits(payload), _bits(_mac(key, payload))]) ^ _scramble(key)
    return conv_encode(info)


def decode_payload(soft: np.ndarray, key: bytes | None) -> tuple[bytes, bool]:
    """Soft coded bits -> (payload, mac_ok)."""
    info = viterbi(soft) ^ _scramble(key)
    payload = np.packbits(info[:PAYLOAD_BITS]).tobytes()
    mac = np.packbits(info[PAYLOAD_BITS:]).tobytes()
    return payload, hmac.compare_digest(mac, _mac(key, payload))


def rademacher_pvalue(z: float, n_tests: int) -> float:
    """Upper bound on P(max of ``n_tests`` statistics >= z) under H0.

    Each statistic is ``z = sum_i p_i f_i / sqrt(sum_i f_i^2)`` with keyed signs ``p_i`` i.i.d. ±1 and independent of
    the data ``f`` (true for any content not marked with this key): Hoeffding gives ``P(z >= t) <= exp(-t^2/2)``
    whatever ``f`` is, and the union (Bonferroni) bound multiplies by the number of statistics searched.
    """
    if not math.isfinite(z) or z <= 0:
        return 1.0
    return float(min(1.0, n_tests * math.exp(-0.5 * z * z)))


def combined_pvalue(z: float, n_tests: int, mac_ok: bool, n_decodes: int) -> float:
    """Bonferroni combination of the two independent H0 tests: the pilot correlation peak and the keyed MAC.

    A weak pilot (heavy crop of a smooth image, coarse codec) with a verified MAC is still a confident detection:
    with ``n_decodes`` decodes per call the MAC alone passes by chance with probability ``n_decodes * 2^-24``.
    """
    p_mac = n_decodes * 2.0**-MAC_BITS if mac_ok else 1.0
    return min(1.0, 2.0 * min(rademacher_pvalue(z, n_tests), p_mac))
