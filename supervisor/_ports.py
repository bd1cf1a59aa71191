"""Whose port is it: refuse a taken port before spawning, and check who answers after.

A health check proves only that *something* answers 200 on the port. A stale server left there
(a previous container's, a forgotten demo) would be taken for ours: `starting -> serving` for a
child that never listens. Two checks close that:

- before spawning, a bind test (with SO_REUSEADDR, so a port in TIME_WAIT after a stop is free,
  as it is for the server) says whether anything listens on the port;
- after the first healthy answer (Linux), the listening socket on the port, found in
  /proc/net/tcp{,6}, must be held by a process of the server's tree (its inode among their file
  descriptors). Where that cannot be told (no /proc, another network namespace, an unreadable
  owner), the caller says so once and trusts the answer.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Iterable

from ._process import ListenerCheck

__all__ = ["check_listener", "port_conflict"]

_LISTEN = "0A"


def probe_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _addresses(host: str, port: int) -> list[tuple[int, str]]:
    try:
        infos = socket.getaddrinfo(probe_host(host), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    found: list[tuple[int, str]] = []
    for family, _, _, _, addr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, addr[0]) not in found:
            found.append((family, str(addr[0])))
    return found


def port_conflict(host: str, port: int) -> str | None:
    """Why the server could not listen on `host:port` now, or None if it could (or can't tell).

    Only "in use" counts: an address that is not local (EADDRNOTAVAIL) or a privileged port
    (EACCES) says nothing about a stale server, and the server may have rights we lack.
    """
    for family, address in _addresses(host, port):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return f"port {port} on {address} is already in use"
    return None


# --------------------------------------------------------------------------- who listens
def _decode(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":  # /proc prints each 32-bit word in host order
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, raw)


def _covers(listen: str, probe: str) -> bool:
    if listen in (probe, "0.0.0.0", "::"):
        return True
    return listen == f"::ffff:{probe}"  # a v4-mapped IPv6 listener


def _listening_inodes(port: int, probes: Iterable[str]) -> set[int] | None:
    """Inodes of LISTEN sockets on `port` that a probe to `probes` reaches; None: no /proc."""
    inodes: set[int] = set()
    seen_any = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        seen_any = True
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            address, _, hex_port = fields[1].partition(":")
            try:
                if int(hex_port, 16) != port:
                    continue
                listen = _decode(address)
            except ValueError:
                continue
            if any(_covers(listen, p) for p in probes):
                inodes.add(int(fields[9]))
    return inodes if seen_any else None


def _sockets_of(pid: int) -> set[int] | None:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    found: set[int] = set()
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = "?"
    return f"pid {pid} ({cmd[:80]})"


def check_listener(host: str, port: int, members: Iterable[int]) -> ListenerCheck:
    """Is the socket that answers on `port` held by one of `members` (the server's tree)?"""
    probes = [address for _, address in _addresses(host, port)]
    inodes = _listening_inodes(port, probes)
    if inodes is None:
        return ListenerCheck("unknown", "/proc/net/tcp is not readable here")
    if not inodes:
        return ListenerCheck(
            "unknown", f"no listening socket for port {port} is visible in this network namespace"
        )
    ours: set[int] = set()
    for pid in members:
        ours |= (_sockets_of(pid) or set()) & inodes
    strangers = inodes - ours
    if not strangers:
        return ListenerCheck("ours")
    for name in os.listdir("/proc"):  # this process too: its own metrics server, say
        if name.isdigit():
            held = _sockets_of(int(name))
            if held and held & strangers:
                return ListenerCheck(
                    "foreign", f"port {port} is held by {_describe(int(name))}, not by the server"
                )
    if ours:
        return ListenerCheck("ours")
    return ListenerCheck(
        "unknown", f"the socket listening on port {port} belongs to no process readable here"
    )
