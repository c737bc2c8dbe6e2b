"""The test vector published in docs/challenge-blob.md §7."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec

from enrollment.blob import BlobClaims, key_id, mint_blob, open_blob

N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

BLOB = (
    "AQrytmKJyn2uA68IMaGOi+VSKI2Rnzz5Y7NFkUtTyTEYKQnKw/t2336aXBj+ze77GPAVrCBEtIu5sg+O"
    "AsW2vrreL1WZj7Q1DBSTqQXh6QsFEahg0z6Lqy+Jm2Nd0Sh7hGmaOJ4cL5JdtZfkfUYly1TrLKCKiUq4"
    "0hpOnwSifGw3fh0Sp2bn/Xm0UOLzIx7zCuxkWE754wMbJeOqGF+N5lmqfiUltfF+vCldV3ka/hBwbKKn"
    "Pzgbc5TGseUDf0aUAJM+WTteqK6otMw3R5zdLtmaXDSj1ACCCoJGKIMcjPBoYxEibTaQNVjDZVYouqsd"
    "waJ4/2LTi3WqHsnb+zygcgt4WWWHbMnPcJQjA3GwBU2+Xxlh84N1KZOhtT171m9kaMwfN1PJ9fEcfuKu"
    "oBcC/5lgnvxz67vwEDw512eYSCVyV/XAEQV6qbv+q3mrvHsm2b/S3tuQKUR81FNmB3qrW4WtGrpioUG4"
    "EDL/7OrEXcZzrvwQSuDw14ALAIzfFE3HJXQqYoab3671ojmpsDbM3PrxCid0SfT7wYI3D2x9C14HdJun"
    "qGZ7k20QZEvS9q1cu4d/SQ+560G1zWdqwFLnIwYwYPCtSV9SFgGV7RbWR/c5w4WAhMN5oMft2xYF2VRi"
    "eMt6BZcAEIwQ5fLiW38gqqs8l3d+pY9R/sAelb3hT/v2jnzi"
)


def key(label: bytes) -> ec.EllipticCurvePrivateKey:
    d = int.from_bytes(hashlib.sha256(b"certgate blob vector: " + label).digest(), "big") % N
    return ec.derive_private_key(d, ec.SECP256R1())


NBF = datetime.fromtimestamp(1793620800, UTC)
CLAIMS = BlobClaims(
    group="staff", sub="dev-01.example.com", sans=("dns:dev-01.example.com",),
    eku=("1.3.6.1.5.5.7.3.2",), key=("ec-p256", "rsa-2048+"), validity_days=365,
    nbf=NBF, exp=datetime.fromtimestamp(1793624400, UTC),
    jti="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
)


def test_vector_opens():
    mdm, cg = key(b"mdm"), key(b"certgate")
    assert key_id(mdm.public_key()) == "7e540108750abfa0"
    assert key_id(cg.public_key()) == "0af2b66289ca7dae"
    assert open_blob(BLOB, cg, [mdm.public_key()], NBF) == CLAIMS


def test_vector_layout():
    """Everything but the (randomized) signature bytes is reproduced by mint_blob."""
    mdm, cg, eph = key(b"mdm"), key(b"certgate"), key(b"ephemeral")
    mine = mint_blob(CLAIMS, mdm, cg.public_key(), NBF, ephemeral_key=eph)
    assert len(mine) == len(BLOB)
    assert mine[:56] == BLOB[:56]  # version, rkid, epk (42 bytes = 56 base64 chars)
    assert open_blob(mine, cg, [mdm.public_key()], NBF) == CLAIMS


JWS = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6IjdlNTQwMTA4NzUwYWJmYTAifQ.eyJ2IjoxLCJncm91cCI6InN0"
    "YWZmIiwic3ViIjoiZGV2LTAxLmV4YW1wbGUuY29tIiwic2FucyI6WyJkbnM6ZGV2LTAxLmV4YW1wbG"
    "UuY29tIl0sImVrdSI6WyIxLjMuNi4xLjUuNS43LjMuMiJdLCJrZXkiOlsiZWMtcDI1NiIsInJzYS0y"
    "MDQ4KyJdLCJ2YWxpZGl0eV9kYXlzIjozNjUsImV4cCI6MTc5MzYyNDQwMCwibmJmIjoxNzkzNjIwOD"
    "AwLCJqdGkiOiIwZjFlMmQzYzRiNWE2OTc4ODc5NmE1YjRjM2QyZTFmMCJ9.jvw5t1idCt46hInlSqI"
    "GxokUxaRgHzZ8EvpDf6fRymxzf9eLW7P6Z0uFTbfhkzJkVSSoJKvFkSgG6tYhEJa1iQ"
)


def test_vector_sealing_is_exact():
    """Sealing the documented JWS with the documented ephemeral key gives the blob, per §4."""
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    cg, eph = key(b"certgate").public_key(), key(b"ephemeral")
    spki = cg.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    epk = eph.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    header = b"\x01" + hashlib.sha256(spki).digest()[:8] + epk
    assert header.hex() == (
        "010af2b66289ca7dae03af0831a18e8be552288d919f3cf963b345914b53c931182909cac3fb76df7e9a"
    )
    z = eph.exchange(ec.ECDH(), cg)
    okm = HKDF(hashes.SHA256(), 44, None, b"certgate/scep-challenge-blob/v1\x00" + header).derive(z)
    assert okm[32:].hex() == "bf6b2ea4ae46a86b031ad959"
    sealed = AESGCM(okm[:32]).encrypt(okm[32:], JWS.encode(), header)
    assert base64.b64encode(header + sealed).decode() == BLOB
