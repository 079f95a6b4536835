"""Python HTTP clients through the egress proxy: `requests` and `httpx`, configured by the
environment as agents are (HTTPS_PROXY, HTTP_PROXY with the token as the proxy password).

Usage: clients.py <https url> <http url>; env HTTPS_PROXY, HTTP_PROXY, CA_FILE.
Prints one JSON object: {"requests": {...}, "httpx": {...}}, each with the status and body of
the https and http calls, or the error.
"""

import json
import os
import sys

import httpx
import requests


def with_requests(url, ca, method="GET", body=None):
    try:
        r = requests.request(method, url, data=body, verify=ca, timeout=30)
        return {"status": r.status_code, "body": r.text}
    except Exception as e:  # the test reads the error
        return {"error": f"{type(e).__name__}: {e}"}


def with_httpx(url, ca, method="GET", body=None):
    try:
        with httpx.Client(verify=ca, timeout=30, trust_env=True) as client:
            r = client.request(method, url, content=body)
            return {"status": r.status_code, "body": r.text}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    https_url, http_url = sys.argv[1], sys.argv[2]
    ca = os.environ["CA_FILE"]
    out = {
        "requests": {"https": with_requests(https_url, ca), "http": with_requests(http_url, ca)},
        "httpx": {"https": with_httpx(https_url, ca), "http": with_httpx(http_url, ca)},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
