"""Schemathesis hooks for scripts/schemathesis.sh: how to make the strings whose rule the
OpenAPI document names by a `format` that JSON Schema cannot check.

`ed25519-public-key` (the coordinator's `PublicIdentity`): 64 hex digits that encode a point
of the Ed25519 curve not of small order. Most random 64-hex strings are not such a point (the
coordinator rightly refuses them), so without this, schema-valid requests that carry a key
would mostly be ones the API must refuse. Keys are made as [a]B for a scalar a that
hypothesis draws (RFC 8032's arithmetic): every one is a point of the prime-order subgroup.
"""

from hypothesis import strategies as st

import schemathesis

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _recover_x(y: int, sign: int) -> int:
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if x & 1 != sign:
        x = P - x
    return x


_BY = 4 * pow(5, P - 2, P) % P
_BX = _recover_x(_BY, 0)
BASE = (_BX, _BY, 1, _BX * _BY % P)


def _add(p, q):
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s: int, p):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def ed25519_public_key(scalar: int) -> str:
    x, y, z, _ = _mul(scalar, BASE)
    zinv = pow(z, P - 2, P)
    x, y = x * zinv % P, y * zinv % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little").hex()


# RFC 8032's test vector 1: the secret key 9d61b19d… has the public key d75a9801….
assert ed25519_public_key(
    int.from_bytes(
        bytes.fromhex("307c83864f2833cb427a2ef1c00a013cfdff2768d980c0a3a520f006904de94f"),
        "little",
    )
) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"

schemathesis.openapi.format(
    "ed25519-public-key", st.integers(min_value=1, max_value=L - 1).map(ed25519_public_key)
)
