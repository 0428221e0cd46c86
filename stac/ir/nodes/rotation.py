"""A host-side orthogonal rotation of an encoder's input: a randomised Hadamard transform."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stac.ir.nodes.base import StacNode, check_array

#: How far ``mix @ mix.T`` may stray from the identity (float32 storage of an orthogonal).
ORTHOGONAL_TOL = 1e-4


def hadamard(size: int) -> np.ndarray:
    """The normalised Sylvester Hadamard matrix of order ``size`` (a power of two): entries
    ``+-1 / sqrt(size)``, ``H = H.T = H^-1``."""
    if size < 1 or size & (size - 1):
        raise ValueError(f"a Sylvester Hadamard matrix needs a power-of-two order, got {size}")
    h = np.ones((1, 1))
    while h.shape[0] < size:
        h = np.block([[h, h], [h, -h]])
    return h / math.sqrt(size)


@dataclass(frozen=True, eq=False)
class Rotation(StacNode):
    r"""``z = x R`` with the orthogonal ``R = diag(signs) (mix \otimes H_b)``.

    ``x`` has ``n = m b`` values, ``b`` the largest power of two dividing n, ``H_b`` the
    normalised Sylvester Hadamard matrix, ``mix`` an orthogonal ``[m, m]`` and ``signs`` a
    vector of +-1. Laid out as ``m`` rows of ``b``, ``x`` is sign-flipped, each row goes
    through a fast Walsh-Hadamard transform (``b log2 b`` additions) and the rows are mixed by
    ``mix^T`` (``m`` multiply-adds per value). QuaRot (Ashkboos et al. 2024) builds an order that
    is not a power of two as the Kronecker product of a small known Hadamard matrix with
    ``H_b``; a random orthogonal ``mix`` takes that matrix's place here, and exists for every m.

    Conversion (``--rotate``) puts one in front of an encoder and gives the linear map behind
    it the weight ``W R``, so ``(W R) z^T = W x^T`` exactly: the rotation spreads a few
    outlier channels over all of them, so that one step per token (the encoder's per-token
    gain) suits every channel.
    """

    signs: np.ndarray  # [n], each +1 or -1
    mix: np.ndarray  # [m, m] orthogonal, m = n / b

    def __post_init__(self) -> None:
        check_array("Rotation", "signs", self.signs, ndim=1)
        check_array("Rotation", "mix", self.mix, ndim=2)
        n, m = self.signs.size, self.mix.shape[0]
        if n == 0 or not np.all(np.abs(self.signs) == 1):
            raise ValueError("Rotation.signs must be a non-empty vector of +1 and -1")
        if self.mix.shape != (m, m) or n % m or (n // m) & (n // m - 1):
            raise ValueError(
                f"Rotation.mix must be square of an order m with {n} / m a power of two, "
                f"got shape {self.mix.shape}"
            )
        gram = self.mix.astype(np.float64) @ self.mix.T.astype(np.float64)
        if not np.allclose(gram, np.eye(m), atol=ORTHOGONAL_TOL):
            raise ValueError("Rotation.mix is not orthogonal (mix @ mix.T is not the identity)")

    @property
    def size(self) -> int:
        return int(self.signs.size)

    @property
    def block(self) -> int:
        """b: the Hadamard transform's order."""
        return self.size // int(self.mix.shape[0])

    def matrix(self) -> np.ndarray:
        """``R`` as a dense float64 ``[n, n]`` (``z = x R``)."""
        return self.signs.astype(np.float64)[:, None] * np.kron(
            self.mix.astype(np.float64), hadamard(self.block)
        )

    def host_ops_per_value(self) -> tuple[int, int]:
        """(multiply-adds, other operations) per value: the mix; the sign flip and the fast
        Walsh-Hadamard transform's additions."""
        return int(self.mix.shape[0]), 1 + int(math.log2(self.block))

    @classmethod
    def random(cls, size: int, rng: np.random.Generator) -> "Rotation":
        """Random signs and a Haar-random ``mix`` (QR of a Gaussian, signs fixed by R's
        diagonal) for a vector of ``size`` values."""
        block = size & -size
        m = size // block
        q, r = np.linalg.qr(rng.standard_normal((m, m)))
        mix = (q * np.sign(np.diagonal(r))).astype(np.float32)
        signs = rng.choice(np.array([-1.0, 1.0], np.float32), size)
        return cls(signs, mix)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.size,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.size,)
