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

import httpx
import requests


def with_requests(method, url, ca, body):
    try:
        r = requests.request(method, url, data=body, verify=ca, timeout=30)
        return {"status": r.status_code, "body": r.text}
    except Exception as e:  # the test reads the error
        return {"error": f"{type(e).__name__}: {e}"}


def with_httpx(method, url, ca, body):
    try:
        with httpx.Client(verify=ca, timeout=30, trust_env=True) as client:
            r = client.request(method, url, content=body)
            return {"status": r.status_code, "body": r.text}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    url, body = sys.argv[1], sys.argv[2]
    ca = os.environ["CA_FILE"]
    out = {
        name: {"get": call("GET", url, ca, None), "post": call("POST", url, ca, body.encode())}
        for name, call in (("requests", with_requests), ("httpx", with_httpx))
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
