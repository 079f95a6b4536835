"""Verifies Warden decision receipts as a third party would: by following docs/audit.md#receipts
step by step with nothing of Warden's, only hashlib (SHA-256) and cryptography (Ed25519).

BASE_URL is the admin listener's audit key set (/.well-known/warden-audit-keys.json); each
argument is one receipt (the x-warden-receipt header). Prints one JSON line:
{"receipts": [{"header": {...}, "head": {...}, "claims": {...}, "index": i} or {"error": "..."}]}.
"""

import base64
import hashlib
import json
import os
import sys
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64d(text):
    """base64url without padding, as JOSE writes it; any other character is an error."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def hash32(text):
    """A 32-byte hash of the proof's path."""
    h = b64d(text)
    if len(h) != 32:
        raise ValueError(f"a path hash of {len(h)} bytes, not 32")
    return h


def sha256(data):
    return hashlib.sha256(data).digest()


with urllib.request.urlopen(os.environ["BASE_URL"], timeout=10) as response:
    jwks = json.load(response)
keys = {
    k["kid"]: Ed25519PublicKey.from_public_bytes(b64d(k["x"]))
    for k in jwks["keys"]
    if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"
}


def verify(receipt):
    # 1. Three parts: the signed head, the claims, the proof.
    head, claims, proof = receipt.split("~")
    # 2. The signed head: a compact JWS whose signature the audit key checks.
    protected, payload, signature = head.split(".")
    header = json.loads(b64d(protected))
    if header.get("alg") != "EdDSA" or header.get("typ") != "warden-receipt-batch+jwt":
        raise ValueError(f"not a Warden batch head: {header}")
    keys[header["kid"]].verify(b64d(signature), f"{protected}.{payload}".encode())
    batch = json.loads(b64d(payload))
    root, size = b64d(batch["root"]), batch["size"]
    # 3. The leaf: the claims' bytes as they are, hashed with a 0x00 prefix.
    leaf = b64d(claims)
    r = sha256(b"\x00" + leaf)
    # 4. Up the audit path to the root (RFC 9162 section 2.1.3.2).
    proof = json.loads(b64d(proof))
    fn, sn = proof["index"], size - 1
    if not isinstance(fn, int) or isinstance(fn, bool) or fn < 0:
        raise ValueError("the index is not a whole number from 0")
    if fn > sn:
        raise ValueError("the index is past the batch")
    for p in map(hash32, proof["path"]):
        if sn == 0:
            raise ValueError("the path is too long")
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise ValueError("the claims are not in the signed batch")
    return {"header": header, "head": batch, "claims": json.loads(leaf), "index": proof["index"]}


out = []
for receipt in sys.argv[1:]:
    try:
        out.append(verify(receipt))
    except Exception as e:  # noqa: BLE001 - reported to the test as data
        out.append({"error": f"{type(e).__name__}: {e}"})
print(json.dumps({"receipts": out}))
