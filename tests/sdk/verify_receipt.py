"""Verifies Warden decision receipts with PyJWT, a JWS library independent of Warden.

BASE_URL is the admin listener's audit key set (/.well-known/warden-audit-keys.json); each
argument is one receipt (the x-warden-receipt header). Prints one JSON line:
{"receipts": [{"header": {...}, "claims": {...}} or {"error": "..."}]}.
"""

import json
import os
import sys
import urllib.request

import jwt

with urllib.request.urlopen(os.environ["BASE_URL"], timeout=10) as response:
    jwks = json.load(response)
keys = {k["kid"]: jwt.PyJWK(k) for k in jwks["keys"]}

out = []
for receipt in sys.argv[1:]:
    try:
        header = jwt.get_unverified_header(receipt)
        key = keys[header["kid"]]
        claims = jwt.decode(
            receipt,
            key=key.key,
            algorithms=["EdDSA"],
            options={"require": ["iat"], "verify_aud": False},
        )
        out.append({"header": header, "claims": claims})
    except Exception as e:  # noqa: BLE001 - reported to the test as data
        out.append({"error": f"{type(e).__name__}: {e}"})
print(json.dumps({"receipts": out}))
