"""Python HTTP clients through an intercepting egress proxy: `requests` and `httpx`, configured
by the environment as agents are (HTTPS_PROXY with the token as the proxy password), trusting
only the CA in CA_FILE (Warden's interception CA).

Usage: intercept_clients.py <https url> <body to POST>; env HTTPS_PROXY, CA_FILE.
Prints one JSON object: {"requests": {"get": {...}, "post": {...}}, "httpx": {...}}, each call
with its status and body, or the error.
"""

import json
import os
import sys

from clients import with_httpx, with_requests


def main():
    url, body = sys.argv[1], sys.argv[2]
    ca = os.environ["CA_FILE"]
    out = {
        name: {"get": call(url, ca), "post": call(url, ca, "POST", body.encode())}
        for name, call in (("requests", with_requests), ("httpx", with_httpx))
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
