"""A DNS server for the egress tests (dnslib), on 127.0.0.1, UDP, a free port.

Usage: dns.py '<zones as JSON>'. The zones map a name to the list of answers it gives in turn,
each answer a list of IPv4 addresses: {"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]} answers
127.0.0.1, then 127.0.0.2, then 127.0.0.1... Every answer has TTL 0 (nothing may be cached).
AAAA queries get no records; unknown names NXDOMAIN.

Prints {"port": N} first, then one JSON line per query: {"name", "type", "answer"}.
"""

import json
import sys
import threading
import time

from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

PRINTING = threading.Lock()


class Rotating(BaseResolver):
    def __init__(self, zones):
        self.zones = {name.rstrip(".").lower(): answers for name, answers in zones.items()}
        self.turns = {name: 0 for name in self.zones}
        self.lock = threading.Lock()

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        answer = []
        if name not in self.zones:
            reply.header.rcode = RCODE.NXDOMAIN
        elif qtype == "A":
            with self.lock:
                answers = self.zones[name]
                answer = answers[self.turns[name] % len(answers)]
                self.turns[name] += 1
            for address in answer:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=0))
        # One line per query, whole: queries are answered on threads of their own, and two
        # prints at once would interleave their lines.
        with PRINTING:
            print(json.dumps({"name": name, "type": qtype, "answer": answer}), flush=True)
        return reply


def main():
    zones = json.loads(sys.argv[1])
    server = DNSServer(Rotating(zones), port=0, address="127.0.0.1",
                       logger=DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data"))
    server.start_thread()
    print(json.dumps({"port": server.server.server_address[1]}), flush=True)
    while server.isAlive():
        time.sleep(0.5)


if __name__ == "__main__":
    main()
