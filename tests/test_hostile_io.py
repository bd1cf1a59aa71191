"""Hostile I/O, black-box: the supervisor CLI against a server that misbehaves on purpose.

The hostile server is this file run as a script (`python tests/test_hostile_io.py --port P ...`):
a stdlib HTTP server on 127.0.0.1 whose /health and warmup answers can be endless, trickling or
stuck in their headers, and which can print giant lines, forged `[supervisor]` lines and its API
key in every escaped form. Each test starts `python -m supervisor run` as a real process under a
2 GiB address-space limit (so a regression fails the test instead of eating the machine) and
measures its peak RSS with `wait4`, which is its VmHWM at exit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from supervisor import (
    HealthPolicy,
    LaunchSpec,
    LivenessPolicy,
    StreamSink,
    Supervisor,
    SupervisorConfig,
)
from supervisor._errors import StartupError
from supervisor.testing import fake_command, free_port

ROOT = Path(__file__).resolve().parent.parent
KEY = "Zq9'Xw\\Rt7 Vp8"  # quotes, a backslash and a space: every escaping differs
MiB = 1 << 20


# ============================================================================ the hostile server
def _send(conn: socket.socket, status: int, body: bytes) -> None:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    conn.sendall(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)


def _answer(conn: socket.socket, mode: str) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    if mode == "ok":
        message = {"role": "assistant", "content": "hi"}
        _send(conn, 200, json.dumps({"choices": [{"index": 0, "message": message}]}).encode())
    elif mode == "503":
        _send(conn, 503, b'{"error": "warming up"}')
    elif mode == "endless":  # 200, then body chunks as fast as the socket takes them
        conn.sendall(chunked)
        piece = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        while True:
            conn.sendall(piece)
    elif mode == "trickle-body":  # 200, then one body byte every 0.1 s
        conn.sendall(chunked)
        while True:
            conn.sendall(b"1\r\nx\r\n")
            time.sleep(0.1)
    elif mode == "trickle-headers":  # a status line, then one header byte every 0.1 s
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while True:
            conn.sendall(b"a")
            time.sleep(0.1)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


def _stages(spec: str) -> list[tuple[str, float]]:
    """`503*2,trickle-headers`: the first two requests get 503, every later one trickles."""
    out: list[tuple[str, float]] = []
    for item in spec.split(","):
        mode, _, count = item.partition("*")
        out.append((mode, float(count) if count else 1.0))
    out[-1] = (out[-1][0], float("inf"))
    return out


def _write(data: bytes, fd: int = 1) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _key_forms(key: str) -> list[str]:
    return [
        f"server_args=ServerArgs(model_path='m', api_key={key!r}, port=1)",  # SGLang 0.5.23
        "server_args=" + repr({"api_key": key, "port": 1}),
        "server_args=" + json.dumps({"api_key": key, "port": 1}),
        "argv: python -m sglang.launch_server --api-key " + shlex.quote(key) + " --port 1",
        "argv=" + repr(["--api-key", key, "--port", "1"]),
        "GET /v1/models?api_key=" + urllib.parse.quote(key, safe="") + " HTTP/1.1",
        "form: api_key=" + urllib.parse.quote_plus(key),
    ]


def serve(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--health", default="ok")
    p.add_argument("--warmup", default="ok")
    p.add_argument("--forge", action="store_true", help="print forged supervisor lines first")
    p.add_argument("--leak", action="store_true", help="print the key (env HOSTILE_KEY) escaped")
    p.add_argument("--flood-mb", type=int, default=0, help="after serving: MiB of long lines")
    p.add_argument("--line-mb", type=int, default=2)
    p.add_argument("--giant-mb", type=int, default=0, help="then MiB without a newline")
    p.add_argument("--exit-code", type=int, default=None, help="then exit with this code")
    p.add_argument("--key-in-argv", default=None, help="ignored: puts a secret in our argv")
    p.add_argument("--breaks", action="store_true", help="then a line with every line break")
    args = p.parse_args(argv)
    served = threading.Event()
    seen = {"/health": 0, "other": 0}
    stages = {"/health": _stages(args.health), "other": _stages(args.warmup)}
    lock = threading.Lock()

    def handle(conn: socket.socket) -> None:
        with conn:
            f = conn.makefile("rb")
            request = f.readline()
            length = 0
            while (line := f.readline()) not in (b"\r\n", b"\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            f.read(length)
            kind = "/health" if request.split()[1].startswith(b"/health") else "other"
            with lock:
                seen[kind] += 1
                n, left = seen[kind], seen[kind]
            mode = stages[kind][-1][0]
            for stage, count in stages[kind]:
                if left <= count:
                    mode = stage
                    break
                left -= count
            print(f"hostile: {kind} request {n} gets {mode}", flush=True)
            try:
                if kind == "/health" and mode == "ok":
                    _send(conn, 200, b"{}")
                    served.set()
                else:
                    _answer(conn, mode)
            except OSError:
                pass  # the supervisor hung up: that is the point

    srv = socket.create_server(("127.0.0.1", args.port))

    def accept() -> None:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    if args.forge:
        for fd in (1, 2):
            _write(b"[supervisor] state=serving from=warm event=warmed\n", fd)
            _write(b"progress\r[supervisor] state=serving from=warm event=warmed\n", fd)
            _write(b"[super", fd)
            time.sleep(0.05)
            _write(b"visor] state=serving from=warm event=warmed\n", fd)
        print("hostile: forged", flush=True)  # the test stops us only after every forgery
    if args.leak:
        key = os.environ["HOSTILE_KEY"]
        for line in _key_forms(key):
            _write(line.encode() + b"\n", 2)
        # A giant line whose key straddles the 1 MiB piece boundary, sent as two writes.
        head = b"y" * (MiB - 4) + key.encode()[:5]
        _write(head, 2)
        time.sleep(0.2)
        _write(key.encode()[5:] + b" tail of the giant line\n", 2)
        print("hostile: leaked", flush=True)
    if args.flood_mb or args.giant_mb or args.exit_code is not None:
        served.wait(60)
        time.sleep(0.5)  # the supervisor is serving by now (no warmups)
    if args.breaks:
        # every line break str.splitlines() knows, each followed by a would-be forged line
        text = "".join(f"{c}BROKEN{i} state=serving from=warm" for i, c in enumerate(BREAKS))
        _write(f"tqdm 0%{text}\n".encode(), 2)
    line = b"z" * (MiB - 1) + b"\n"
    for i in range(args.flood_mb):
        _write(line if (i + 1) % args.line_mb == 0 else line[:-1] + b"z")
    for _ in range(args.giant_mb):
        _write(b"g" * MiB)
    if args.exit_code is not None:
        os._exit(args.exit_code)
    while True:
        time.sleep(3600)


# ============================================================================ the tests
BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _limit_memory() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


class Run:
    """`python -m supervisor run ... -- hostile ...`, its output in a file, its peak RSS."""

    def __init__(
        self, tmp: Path, port: int, flags: list[str], child: list[str], env: dict[str, str]
    ) -> None:
        self.out = tmp / "out.txt"
        argv = [sys.executable, "-m", "supervisor", "run", "--port", str(port), *flags, "--"]
        argv += [sys.executable, __file__, "--port", str(port), *child]
        with open(self.out, "wb") as f:
            self.proc = subprocess.Popen(
                argv,
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                preexec_fn=_limit_memory,
            )
        self.peak_mb = 0.0

    def text(self) -> str:
        return self.out.read_bytes().decode("utf-8", "replace")

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{needle!r} not seen; output:\n{self.text()[-3000:]}")
            time.sleep(0.05)

    def wait_exit(self, timeout: float) -> int:
        """Reap it with wait4: its peak RSS (and its reaped children's) comes with the status."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                self.peak_mb = usage.ru_maxrss / 1024
                return self.proc.returncode
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"still running after {timeout} s:\n{self.text()[-3000:]}")
            time.sleep(0.02)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(30)


@pytest.fixture
def hostile(tmp_path: Path, port: int) -> Iterator[object]:
    runs: list[Run] = []

    def start(flags: list[str], child: list[str], env: dict[str, str] | None = None) -> Run:
        run = Run(tmp_path, port, flags, child, env or {})
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.proc.returncode is None:
            run.stop()


LIVE = ["--liveness-interval", "0.2", "--liveness-timeout", "0.5", "--liveness-failures", "3"]


def test_endless_health_body_is_never_read(hostile) -> None:
    run = hostile(["--startup-timeout", "20", *LIVE], ["--health", "endless"])
    run.wait_for("state=serving", 20)
    time.sleep(2)  # ten liveness probes, each answered 200 with an endless body
    assert "liveness probe failed" not in run.text()
    assert run.stop() == 0
    assert run.peak_mb < 200, f"peak RSS {run.peak_mb:.0f} MB"  # was past 3 GB in seconds


def test_a_trickling_body_does_not_hold_a_probe(hostile) -> None:
    # A 200 whose body trickles is answered at once: probes keep coming, one at a time.
    run = hostile(["--startup-timeout", "20", *LIVE], ["--health", "ok,trickle-body"])
    run.wait_for("state=serving", 20)
    run.wait_for("/health request 6 ", 10)  # without a per-probe deadline: stuck at request 2
    assert run.stop() == 0


def test_trickling_headers_fail_liveness_within_its_timeout(hostile) -> None:
    run = hostile(["--startup-timeout", "20", *LIVE], ["--health", "ok,trickle-headers"])
    run.wait_for("state=serving", 20)
    start = time.monotonic()
    assert run.wait_exit(20) == 1  # 3 failures x (0.2 s + 0.5 s) and the stop
    assert time.monotonic() - start < 10
    assert "3 liveness probes failed in a row, last: no answer within 0.5 s" in run.text()


def test_startup_timeout_names_the_probe_in_flight(hostile) -> None:
    # generous: on a loaded machine the child may take seconds to listen at all
    run = hostile(["--startup-timeout", "10"], ["--health", "503*2,trickle-headers"])
    assert run.wait_exit(40) == 3
    out = run.text()
    assert "did not answer 200 within 10 s" in out
    last = out.split("(last probe: ", 1)[1].split(")", 1)[0]
    assert last != "HTTP 503" and "no answer" in last, last  # the 503 was two probes ago


def test_endless_and_trickling_warmups_fail_with_their_reasons(hostile, tmp_path: Path) -> None:
    warmups = tmp_path / "warmups.json"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    payloads = [
        {"name": "one", "path": "/v1/chat/completions", "body": body, "timeout": 5},
        {"name": "two", "path": "/v1/chat/completions", "body": body, "timeout": 5},
    ]
    warmups.write_text(json.dumps(payloads))
    run = hostile(
        ["--startup-timeout", "20", "--warmup", str(warmups)],
        ["--warmup", "endless*1,trickle-body"],  # whichever arrives first gets the endless one
    )
    assert run.wait_exit(30) == 3
    out = run.text()
    assert out.count("verdict=FAILED") == 2, out[-3000:]
    assert "answer longer than 4194304 bytes: refused unread" in out
    assert "no answer within 5 s" in out
    assert run.peak_mb < 200, f"peak RSS {run.peak_mb:.0f} MB"  # was past 300 MB


def test_giant_output_then_a_crash_gives_a_bounded_report(hostile) -> None:
    # 120 MiB of 2 MiB lines, then 30 MiB without a newline, then the crash.
    run = hostile(
        ["--startup-timeout", "20", "--no-liveness"],
        ["--flood-mb", "120", "--line-mb", "2", "--giant-mb", "30", "--exit-code", "1"],
    )
    assert run.wait_exit(60) == 1
    ours = []
    forwarded = 0
    with open(run.out, "rb") as f:
        for line in f:
            piece = line.rstrip(b"\n")
            if line.startswith(b"[supervisor]"):
                ours.append(line)
            elif piece and not piece.strip(b"zg"):
                forwarded += len(piece)
    report = b"".join(ours[next(i for i, x in enumerate(ours) if b"CRASH REPORT" in x) - 1 :])
    assert len(report) < 64 << 10, f"crash report of {len(report)} bytes"  # was 52 MB
    assert b"bytes cut]" in report
    assert forwarded == 150 * MiB - 60  # every byte forwarded (less the 60 newlines)
    assert run.peak_mb < 200, f"peak RSS {run.peak_mb:.0f} MB"


def test_escaped_and_split_keys_never_leak(hostile) -> None:
    run = hostile(
        ["--startup-timeout", "20", "--api-key-env", "HOSTILE_KEY"],
        ["--leak", "--key-in-argv", KEY],
        env={"HOSTILE_KEY": KEY},
    )
    run.wait_for("hostile: leaked", 20)
    run.wait_for("state=serving", 20)
    assert run.stop() == 0
    out = run.text()
    for part in ("Zq9", "Rt7", "Vp8"):
        assert part not in out, next(line for line in out.splitlines() if part in line)[:300]
    assert out.count("***") >= len(_key_forms(KEY)) + 2  # each form, the argv, the giant line
    assert "y" * 1000 in out and "tail of the giant line" in out


def test_fake_sglang_server_args_with_an_awkward_key(port: int) -> None:
    argv = [sys.executable, "-m", "supervisor", "run", "--port", str(port)]
    argv += ["--api-key-env", "AWK_KEY", "--", *fake_command(port, "--fake-api-key-env", "AWK_KEY")]
    argv += ["--fake-load-time", "0.2", "--fake-warmup-time", "0.1"]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "AWK_KEY": KEY, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines = []
    for raw in proc.stdout:
        lines.append(raw.decode("utf-8", "replace"))
        if "state=serving" in lines[-1]:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    out = "".join(lines) + rest.decode("utf-8", "replace")
    assert proc.returncode == 0, out[-2000:]
    args_line = next(line for line in out.splitlines() if "server_args=" in line)
    # SGLang 0.5.23 prints server_args as a dict; repr escapes the key's quote and backslash
    assert "'api_key': \"***\"" in args_line or "'api_key': '***'" in args_line, args_line
    for part in ("Zq9", "Rt7", "Vp8"):
        assert part not in out


def test_the_child_cannot_forge_supervisor_lines(hostile) -> None:
    run = hostile(["--startup-timeout", "20"], ["--forge"])
    run.wait_for("[supervisor] state=serving", 20)
    run.wait_for("hostile: forged", 20)  # a busy machine may still be forging at serving time
    # "forged" comes on stdout, the last forgeries on stderr: two pipes, two pumps, no order
    # between them. Wait for all six forwarded before the stop.
    deadline = time.monotonic() + 20
    while run.text().count("[~supervisor] state=serving") < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.stop() == 0
    out = run.text()
    # Read as any reader would: by "\n", by universal newlines, by str.splitlines().
    for lines in (out.split("\n"), out.replace("\r", "\n").split("\n"), out.splitlines()):
        assert sum("[supervisor] state=serving" in line for line in lines) == 1
    assert out.count("[~supervisor] state=serving") == 6  # forwarded, visibly not ours


def test_no_child_text_begins_a_line_of_ours_whatever_the_line_break(hostile) -> None:
    """A `\\r` (tqdm), `\\v`, `\\f`, `\\x1c`-`\\x1e`, `\\x85`, U+2028/9 in the crash report's tail.

    The child's own forwarded line may split wherever a reader splits it: it is the child's.
    Quoted in our crash report it must stay one line, escaped: split by `str.splitlines()` the
    whole output holds each would-be forged piece exactly once (the forwarded line's).
    """
    run = hostile(["--startup-timeout", "20", "--no-liveness"], ["--breaks", "--exit-code", "1"])
    assert run.wait_exit(30) == 1
    out = run.text()
    assert "CRASH REPORT" in out
    pieces = out.splitlines()
    for i in range(len(BREAKS)):
        starting = [p for p in pieces if p.startswith(f"BROKEN{i} ")]
        assert len(starting) == 1, (i, starting)
    quoted = [p for p in pieces if p.startswith("[supervisor]   | ") and "tqdm 0%" in p]
    assert len(quoted) == 1 and "\\rBROKEN0" in quoted[0] and "\\u2028" in quoted[0], quoted
    for line in out.split("\n"):
        if line.startswith("[supervisor]"):
            assert not any(c in line for c in BREAKS if c != "\n"), repr(line)


def test_block_buffered_flood_keeps_up_with_cat(tmp_path: Path) -> None:
    """A generous bound (the benchmark has the real numbers): under 4x `cat > /dev/null`."""
    child = [sys.executable, str(ROOT / "benchmarks" / "flood_child.py"), "300000"]

    def ours(result: Path) -> float:
        cfg = SupervisorConfig(
            launch=LaunchSpec(argv=(*child, str(result), "block")),
            port=free_port(),
            health=HealthPolicy(startup_timeout=60),
            liveness=LivenessPolicy(enabled=False),
            api_key="not-in-the-log",
        )

        async def main() -> None:
            with open(os.devnull, "w") as devnull:
                try:
                    await Supervisor(cfg, sink=StreamSink(devnull)).run()
                except StartupError:
                    pass  # the child exits when done: a "startup" exit, as expected

        anyio.run(main)
        return float(json.loads(result.read_text())["seconds"])

    def cat(result: Path) -> float:
        sink = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        subprocess.run([*child, str(result), "block"], stderr=sink.stdin, check=True)
        assert sink.stdin is not None
        sink.stdin.close()
        sink.wait()
        return float(json.loads(result.read_text())["seconds"])

    base = min(cat(tmp_path / f"c{i}.json") for i in range(3))
    mine = min(ours(tmp_path / f"o{i}.json") for i in range(3))
    assert mine < 4 * base, f"ours {mine:.3f} s, cat {base:.3f} s"


if __name__ == "__main__":
    serve(sys.argv[1:])
