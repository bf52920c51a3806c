#!/usr/bin/env python3
# Sends what a hostile guest would, byte for byte (the isolation tests' attacker; run inside the
# attacker's namespace):
#   raw-send.py frame <dev> <hex>                      one Ethernet frame, as given (AF_PACKET)
#   raw-send.py udp <dst> <dport> <sport> <hex>       one UDP datagram from <sport> (broadcast allowed)
#   raw-send.py udpflood <dst> <count>                 <count> datagrams to as many ports (new flows)
#   raw-send.py udprepeat <dst> <port> <count>         <count> datagrams to one port (one flow)
#   raw-send.py icmp6 <dev> <src> <dst> <hex>          one ICMPv6 message (the kernel fills its
#                                                      checksum), hop limit 255 as ND requires
#   raw-send.py udp6 <dev> <dst> <dport> <sport> <hex> one UDP datagram over IPv6 from <sport>
#   raw-send.py icmp6opts <dev> <src> <dst> <opts> <hex>
#                                                      the same as icmp6, behind a destination
#                                                      options header <opts> (RFC 8200 4.6)
import binascii
import socket
import sys

kind = sys.argv[1]
if kind == "frame":
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((sys.argv[2], 0))
    s.send(binascii.unhexlify(sys.argv[3]))
elif kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind(("0.0.0.0", int(sys.argv[4])))
    s.sendto(binascii.unhexlify(sys.argv[5]), (sys.argv[2], int(sys.argv[3])))
elif kind == "udpflood":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for p in range(10000, 10000 + int(sys.argv[3])):
        try:
            s.sendto(b"x", (sys.argv[2], p))
        except OSError:
            pass  # an ICMP error from an earlier datagram, reported on this socket
elif kind == "udprepeat":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(int(sys.argv[4])):
        try:
            s.sendto(b"x", (sys.argv[2], int(sys.argv[3])))
        except OSError:
            pass  # an ICMP error from an earlier datagram, reported on this socket
elif kind in ("icmp6", "icmp6opts"):
    dev, src, dst = sys.argv[2:5]
    payload = sys.argv[-1]
    scope = socket.if_nametoindex(dev)
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    if kind == "icmp6opts":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, binascii.unhexlify(sys.argv[5]))
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
    # not to the sender itself: a forged advertisement would poison its own neighbour cache
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    s.bind((src, 0, 0, scope))
    s.sendto(binascii.unhexlify(payload), (dst, 0, 0, scope))
elif kind == "udp6":
    dev, dst, dport, sport, payload = sys.argv[2:7]
    scope = socket.if_nametoindex(dev)
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    s.bind(("::", int(sport), 0, scope))
    s.sendto(binascii.unhexlify(payload), (dst, int(dport), 0, scope))
else:
    sys.exit(f"raw-send: unknown kind {kind}")
