"""The synchronous wrapper against the real fake server, and the core's import boundary."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
import pytest

from supervisor import (
    ChildExited,
    HealthPolicy,
    LaunchSpec,
    LivenessPolicy,
    OutcomeKind,
    State,
    StoppedBeforeServing,
    StopPolicy,
    SupervisorConfig,
)
from supervisor.blocking import BlockingSupervisor
from tests.conftest import fake_argv

FAST = ["--fake-load-time", "0.3", "--fake-warmup-time", "0.2", "--fake-time-scale", "0.1"]


def config(port: int, *flags: str) -> SupervisorConfig:
    return SupervisorConfig(
        launch=LaunchSpec(argv=tuple(fake_argv(port, *FAST, *flags))),
        port=port,
        health=HealthPolicy(startup_timeout=30, initial_backoff=0.05, max_backoff=0.2),
        liveness=LivenessPolicy(enabled=False),
        stop=StopPolicy(stop_timeout=5),
        ready_line="fired up",
    )


@pytest.mark.process
def test_blocking_start_serves_and_stop_cleans_up(port: int) -> None:
    with BlockingSupervisor(config(port, "--tp-size", "2")) as sup:
        assert sup.state is State.SERVING
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    assert sup.state is State.DEAD


@pytest.mark.process
def test_blocking_start_raises_startup_error_and_leaves_nothing(port: int) -> None:
    sup = BlockingSupervisor(config(port, "--fake-fault", "crash-loading"))
    with pytest.raises(ChildExited, match="exit code 1"):
        sup.start()
    assert sup.state is State.DEAD


@pytest.mark.process
def test_blocking_death_calls_the_handler_from_the_loop_thread(port: int) -> None:
    reports = []
    sup = BlockingSupervisor(
        config(port, "--fake-fault", "crash-after-serving", "--fake-crash-after", "0.3"),
        on_death=reports.append,
    )
    sup.start()
    outcome = sup.wait(timeout=20)
    sup.close()
    assert outcome.kind is OutcomeKind.DIED and len(reports) == 1
    assert reports[0].returncode == -9


@pytest.mark.process
def test_stop_from_another_thread_while_start_waits_wins(port: int) -> None:
    import threading
    import time

    sup = BlockingSupervisor(config(port, "--fake-load-time", "20"))
    outcomes = []

    def stopper() -> None:
        while sup.supervisor is None or sup.supervisor.child is None:
            time.sleep(0.02)
        time.sleep(0.3)
        outcomes.append(sup.stop(timeout=20))

    thread = threading.Thread(target=stopper)
    thread.start()
    began = time.monotonic()
    try:
        with pytest.raises(StoppedBeforeServing, match="before serving"):
            sup.start()
    finally:
        thread.join(30)
    assert time.monotonic() - began < 15, "start() waited for the server instead of the stop"
    assert sup.state is State.DEAD
    assert outcomes and outcomes[0].kind is OutcomeKind.STOPPED


@pytest.mark.process
def test_wait_with_no_timeout_waits_as_long_as_the_server_serves(port: int) -> None:
    """It gave up with TimeoutError after stop + kill timeouts + 10 s (11 s here), serving."""
    import threading
    import time

    cfg = config(port)
    cfg = SupervisorConfig(**{**vars(cfg), "stop": StopPolicy(stop_timeout=0.5, kill_timeout=0.5)})
    sup = BlockingSupervisor(cfg)
    sup.start()
    ended: list[object] = []
    waiter = threading.Thread(target=lambda: ended.append(_outcome_or_error(sup.wait)))
    waiter.start()
    try:
        time.sleep(12.5)  # past the old bound of 11 s
        assert ended == [] and sup.state is State.SERVING, ended
    finally:
        sup.stop(timeout=20)
        waiter.join(20)
    assert len(ended) == 1 and getattr(ended[0], "kind", None) is OutcomeKind.STOPPED, ended


def _outcome_or_error(call):  # type: ignore[no-untyped-def]
    try:
        return call()
    except Exception as exc:  # the thread's verdict, read by the test
        return exc


@pytest.mark.anyio
async def test_the_stop_bound_counts_a_workers_drain_and_the_linger(port: int) -> None:
    from supervisor import ClusterSpec, Supervisor
    from supervisor.engines.sglang_cluster import SGLANG_WORKER_RULES

    cfg = config(port)
    single = Supervisor(cfg).stop_bound
    assert single == cfg.stop.stop_timeout + cfg.stop.kill_timeout + 10.0
    peers = ("127.0.0.1:1", "127.0.0.1:2")
    for rank in (0, 1):
        spec = ClusterSpec(
            rank=rank, size=2, peers=peers, status_port=1 + rank, worker=SGLANG_WORKER_RULES
        )
        clustered = Supervisor(SupervisorConfig(**{**vars(cfg), "cluster": spec})).stop_bound
        extra = spec.linger + (SGLANG_WORKER_RULES.shutdown_grace if rank else 0.0)
        assert clustered == pytest.approx(single + extra), rank


def test_stop_before_start_means_start_spawns_nothing(port: int) -> None:
    sup = BlockingSupervisor(config(port))
    assert sup.stop() is None
    with pytest.raises(StoppedBeforeServing):
        sup.start()
    assert sup.supervisor is None and sup.state is State.DEAD


@pytest.mark.process
def test_core_never_imports_modal_or_sglang() -> None:
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("modal", "sglang"):
                    raise ImportError(f"blocked: {name}")
        sys.meta_path.insert(0, Block())
        import supervisor, supervisor.blocking, supervisor._cli, supervisor.testing
        import supervisor.testing.fake_sglang
        print("ok", sorted(m for m in sys.modules if m.split(".")[0] in ("modal", "sglang")))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok []"


@pytest.mark.process
def test_cancelling_a_serving_supervisor_stops_the_real_tree_promptly(port: int) -> None:
    import anyio

    from supervisor import Supervisor

    cfg = config(port, "--tp-size", "2")
    cfg = SupervisorConfig(**{**cfg.__dict__, "stop": StopPolicy(stop_timeout=20)})

    async def main() -> float:
        sup = Supervisor(cfg, sink=Quiet())
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            # a request first, so the fake drains on SIGTERM instead of dying of it
            async with httpx.AsyncClient() as client:
                await client.post(f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "x"})
            start = anyio.current_time()
            tg.cancel_scope.cancel()
        assert sup.state is State.DEAD
        return anyio.current_time() - start

    took = anyio.run(main)
    assert took < 10, f"cancellation waited {took:.1f} s: the exit was not seen"


class Quiet:
    def child(self, stream: str, text: str) -> None: ...

    def supervisor(self, line: str) -> None: ...


def test_the_package_ships_its_types_marker_keeper_and_license() -> None:
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["supervisor"]
    assert (root / "supervisor" / "py.typed").is_file()
    assert (root / "supervisor" / "_keeper.py").is_file()  # a module: packaged like any other
    assert project["project"]["license"] == "Apache-2.0"
    assert project["project"]["license-files"] == ["LICENSE"]
    license_text = (root / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
