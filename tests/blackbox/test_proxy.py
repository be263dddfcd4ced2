"""Who the client is behind a load balancer: X-Forwarded-For read from the
end, so that nothing a client sends can push out what a trusted proxy
appended, and, with the PROXY protocol, the PROXY header or the TCP peer only
(X-Forwarded-For is never read there: an L4 balancer does not vouch for it).

Each request here is refused for want of a token: the refusal's audit entry
records client_ip and peer_ip like any other, and nothing is forwarded.
"""
import struct

import pytest

import gwtest

OLD_CAP = 8192  # the buffer X-Forwarded-For fields were once joined into
V2SIG = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])


def head(rid, xffs=(), path="/jobs/j-ok1"):
    out = "DELETE %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n" % (path, rid)
    for v in xffs:
        out += "X-Forwarded-For: %s\r\n" % v
    return (out + "Connection: close\r\n\r\n").encode()


def addresses(gw, rid):
    [e] = gw.audit_for(rid)
    assert e["decision"] == "deny" and e["status"] == 401, e
    return e["client_ip"], e.get("peer_ip")


def send(gw, data):
    out = gwtest.raw_request(gw.port, data)
    assert out.startswith(b"HTTP/1.1 401 "), out[:300]


@pytest.fixture
def behind_proxy(make_gateway, sim):
    return make_gateway(sim.url, config={"trusted_proxies": ["127.0.0.0/8"]})


def test_a_client_field_of_the_old_cap_cannot_push_out_the_proxys_hop(behind_proxy, sim):
    gw = behind_proxy
    spoof = "x" * (OLD_CAP - len(",6.6.6.6")) + ",6.6.6.6"
    assert len(spoof) == OLD_CAP
    # HAProxy's "option forwardfor" appends a field of its own after the client's.
    send(gw, head("xff-cap", [spoof, "203.0.113.9"]))
    assert addresses(gw, "xff-cap") == ("203.0.113.9", "127.0.0.1")
    # The same with the client's bytes spread over several fields, of the cap together and each.
    half = "y" * (OLD_CAP // 2 - 1)
    send(gw, head("xff-cap2", [half, half + ",6.6.6.6", spoof, "203.0.113.10"]))
    assert addresses(gw, "xff-cap2") == ("203.0.113.10", "127.0.0.1")
    # One field over the old cap, client part and proxy part joined (nginx's $proxy_add_x_forwarded_for).
    send(gw, head("xff-cap3", [spoof + "9" * 100 + ",6.6.6.6, 203.0.113.11"]))
    assert addresses(gw, "xff-cap3") == ("203.0.113.11", "127.0.0.1")
    assert sim.requests() == []


def test_several_fields_are_read_from_the_last_backwards(behind_proxy):
    gw = behind_proxy
    send(gw, head("xff-m1", ["6.6.6.6", "1.1.1.1, 6.6.6.6", "198.51.100.7"]))
    assert addresses(gw, "xff-m1") == ("198.51.100.7", "127.0.0.1")
    # Trusted hops (inner proxies) are skipped, across fields.
    send(gw, head("xff-m2", ["6.6.6.6", "198.51.100.8, 127.0.0.7", "127.0.0.9"]))
    assert addresses(gw, "xff-m2") == ("198.51.100.8", "127.0.0.1")
    # Every hop trusted: the leftmost.
    send(gw, head("xff-m3", ["127.0.0.5", "127.0.0.6"]))
    assert addresses(gw, "xff-m3") == ("127.0.0.5", "127.0.0.1")


def test_a_malformed_hop_stops_the_walk_at_the_last_trusted_hop(behind_proxy):
    gw = behind_proxy
    # Nothing right of the bad hop: the peer.
    send(gw, head("xff-b1", ["6.6.6.6", "not-an-address"]))
    assert addresses(gw, "xff-b1") == ("127.0.0.1", None)
    send(gw, head("xff-b2", ["6.6.6.6", "203.0.113.1,"]))
    assert addresses(gw, "xff-b2") == ("127.0.0.1", None)
    # A trusted hop right of it: that hop, never anything left of the bad one.
    send(gw, head("xff-b3", ["6.6.6.6", "garbage, 127.0.0.9"]))
    assert addresses(gw, "xff-b3") == ("127.0.0.9", "127.0.0.1")
    send(gw, head("xff-b4", ["6.6.6.6", "1" * 100, "127.0.0.9"]))
    assert addresses(gw, "xff-b4") == ("127.0.0.9", "127.0.0.1")
    send(gw, head("xff-b5", ["6.6.6.6", "", "127.0.0.9"]))
    assert addresses(gw, "xff-b5") == ("127.0.0.9", "127.0.0.1")
    send(gw, head("xff-b6", ["6.6.6.6", "203.0.113.5:4444"]))
    assert addresses(gw, "xff-b6") == ("127.0.0.1", None)


@pytest.fixture
def behind_l4(make_gateway, sim):
    return make_gateway(sim.url, config={"trusted_proxies": ["127.0.0.0/8"], "proxy_protocol": True})


ADDRESSLESS = [
    ("v1-unknown", b"PROXY UNKNOWN\r\n"),
    ("v1-unknown-addrs", b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"),
    ("v2-local", V2SIG + bytes([0x20, 0x00, 0, 0])),
    ("v2-local-inet", V2SIG + bytes([0x20, 0x11]) + struct.pack(">H", 12) + bytes([6, 6, 6, 6, 127, 0, 0, 1]) +
     struct.pack(">HH", 5555, 80)),
    ("v2-unspec", V2SIG + bytes([0x21, 0x00, 0, 0])),
    ("v2-unix", V2SIG + bytes([0x21, 0x31]) + struct.pack(">H", 216) + b"/tmp/a".ljust(108, b"\0") +
     b"/tmp/b".ljust(108, b"\0")),
]


@pytest.mark.parametrize("name,header", ADDRESSLESS, ids=[n for n, _ in ADDRESSLESS])
def test_proxy_protocol_without_an_address_keeps_the_peer_and_ignores_xff(behind_l4, sim, name, header):
    gw = behind_l4
    send(gw, header + head("pp-" + name, ["6.6.6.6", "198.51.100.1"]))
    assert addresses(gw, "pp-" + name) == ("127.0.0.1", None)
    assert sim.requests() == []


def test_proxy_protocol_address_wins_over_xff(behind_l4):
    gw = behind_l4
    send(gw, b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n" + head("pp-v1", ["6.6.6.6"]))
    assert addresses(gw, "pp-v1") == ("203.0.113.7", "127.0.0.1")
    v2 = V2SIG + bytes([0x21, 0x11]) + struct.pack(">H", 12) + bytes([203, 0, 113, 8, 127, 0, 0, 1]) + \
        struct.pack(">HH", 5555, 80)
    send(gw, v2 + head("pp-v2", ["6.6.6.6"]))
    assert addresses(gw, "pp-v2") == ("203.0.113.8", "127.0.0.1")


def test_proxy_v2_with_a_short_address_block_is_refused(behind_l4, sim):
    gw = behind_l4
    short = V2SIG + bytes([0x21, 0x11]) + struct.pack(">H", 4) + bytes([203, 0, 113, 8])
    out = gwtest.raw_request(gw.port, short + head("pp-short", ["6.6.6.6"]))
    assert out == b"", out[:300]
    assert gw.audit_for("pp-short", wait=0.3) == []
    # An unknown command (neither LOCAL nor PROXY) too.
    bad = V2SIG + bytes([0x22, 0x00, 0, 0])
    assert gwtest.raw_request(gw.port, bad + head("pp-cmd")) == b""
    assert gw.audit_for("pp-cmd", wait=0.3) == []
