"""A sick GPU is not a software crash (issue #19, item 4): each GPU fault gets its own cause, which
wins over SGLang's generic lines after it, a hint that says what to do, and its label on the
death metric. The fake prints the texts a real H200 printed where one was provoked there
(benchmarks/gpu/RESULTS-fault-texts-H200.txt) and the source-read ones elsewhere
(supervisor/testing/fake_sglang/_gpu_faults.py says which)."""

from __future__ import annotations

import anyio
import pytest

from supervisor import (
    ChildExited,
    LaunchSpec,
    LivenessPolicy,
    OutcomeKind,
    ProgressPolicy,
    StopPolicy,
    Supervisor,
    SupervisorConfig,
)
from supervisor.engines.sglang_causes import CAUSE_HINTS, classify_crash
from supervisor.testing.fake_sglang._gpu_faults import GPU_FAULTS
from tests._watch import Watched
from tests.conftest import cli, fake_argv

FAST = ["--fake-load-time", "0.2", "--fake-warmup-time", "0.2", "--fake-time-scale", "0.1"]

#: fake fault -> the cause the crash report must name.
AFTER_SERVING = {
    "illegal-memory-access": "gpu-illegal-memory-access",
    "ecc": "gpu-ecc-error",
    "requires-reset": "gpu-requires-reset",
    "nccl-cuda": "nccl-unhandled-cuda-error",
    "cuda-oom": "cuda-out-of-memory",
}


def test_every_fake_gpu_fault_has_a_cause_and_a_hint() -> None:
    assert set(AFTER_SERVING) | {"graph-capture-oom"} == set(GPU_FAULTS)
    for cause in [*AFTER_SERVING.values(), "cuda-graph-capture-failed"]:
        assert CAUSE_HINTS.get(cause), cause


@pytest.mark.parametrize("fault", sorted(AFTER_SERVING))
def test_a_gpu_fault_after_serving_is_named_over_the_generic_crash_lines(
    port: int, fault: str
) -> None:
    argv = fake_argv(
        port, *FAST, "--fake-fault", "crash-after-serving", "--fake-crash-after", "0.3",
        "--fake-gpu-fault", fault,
    )  # fmt: skip
    with Watched(cli("run", "--port", str(port), "--", *argv)) as w:
        rc, _ = w.wait_exit(30)
        out = w.output()
        assert rc == 1, out
        cause = AFTER_SERVING[fault]
        # SGLang's own generic lines came after the fault's, and lost
        assert "It usually means one child failed." in out
        assert f"cause={cause}" in out and out.count("CRASH REPORT") == 1
        assert f"what to do: {CAUSE_HINTS[cause]}" in out


def test_a_graph_capture_oom_at_startup_is_a_configuration_error_with_the_flags_to_change(
    port: int,
) -> None:
    argv = fake_argv(
        port, *FAST, "--fake-fault", "crash-loading", "--fake-gpu-fault", "graph-capture-oom"
    )
    with Watched(cli("run", "--port", str(port), "--", *argv)) as w:
        rc, _ = w.wait_exit(30)
        out = w.output()
        assert rc == 3, out
        assert "(cause: cuda-graph-capture-failed; a configuration error" in out
        assert "--mem-fraction-static or --cuda-graph-max-bs-decode" in out


@pytest.mark.anyio
async def test_the_death_metric_is_labelled_with_the_gpu_cause(port: int) -> None:
    flags = ["--fake-fault", "crash-after-serving", "--fake-crash-after", "0.2"]
    config = SupervisorConfig(
        launch=LaunchSpec(argv=tuple(fake_argv(port, *FAST, *flags, "--fake-gpu-fault", "ecc"))),
        port=port,
        ready_line="fired up",
        liveness=LivenessPolicy(enabled=False),
        progress=ProgressPolicy(enabled=False),
        stop=StopPolicy(stop_timeout=2),
    )
    sup = Supervisor(config, classify=classify_crash, hints=CAUSE_HINTS)
    with anyio.fail_after(30):
        outcome = await sup.run()
    assert outcome.kind is OutcomeKind.DIED
    assert sup.report is not None and sup.report.hint == CAUSE_HINTS["gpu-ecc-error"]
    exposition = sup.metrics.exposition().decode()
    assert 'supervisor_deaths_total{cause="gpu-ecc-error"} 1.0' in exposition


def test_a_startup_failure_carries_the_hint_in_its_message(port: int) -> None:
    """The library's ChildExited says what to do too, not only the CLI's lines."""

    async def start() -> None:
        argv = fake_argv(
            port, *FAST, "--fake-fault", "crash-loading", "--fake-gpu-fault", "graph-capture-oom"
        )
        config = SupervisorConfig(
            launch=LaunchSpec(argv=tuple(argv)), port=port, ready_line="fired up"
        )
        await Supervisor(config, classify=classify_crash, hints=CAUSE_HINTS).run()

    with pytest.raises(ChildExited, match="cuda-graph-capture-failed; a configuration error"):
        anyio.run(start)
