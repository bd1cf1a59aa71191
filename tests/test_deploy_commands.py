"""The profile commands as an operator runs them: multi-node ranks, dummy weights, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from supervisor._errors import ConfigError
from supervisor.deploy.ranks import for_node, parse_peers
from supervisor.profiles import get_profile
from tests.test_engine import PARSER, needs_parser

TWO_NODES = "glm-5.1-fp8-2x8xh100"


def dry_run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"SGLANG_PARSER_PYTHON": PARSER} if PARSER else {})}
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "serve", *args, "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@needs_parser
@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_of_the_two_node_profile_prints_an_argv_sglang_accepts(rank: int) -> None:
    done = dry_run(
        "--profile", TWO_NODES, "--node-rank", str(rank), "--dist-init-addr", "10.0.0.1:5000"
    )
    argv = next(line for line in done.stdout.splitlines() if line.startswith("argv:"))
    assert f"--nnodes 2 --node-rank {rank} --dist-init-addr 10.0.0.1:5000" in argv
    assert "--tp-size 16" in argv
    assert "[ok  ] argv: parses with SGLang 0.5.23" in done.stdout, done.stdout
    assert f"cluster: rank {rank} of 2" in done.stdout


@needs_parser
def test_dummy_weights_add_load_format_dummy_and_still_parse() -> None:
    done = dry_run("--profile", "glm-5.1-fp8", "--dummy-weights")
    argv = next(line for line in done.stdout.splitlines() if line.startswith("argv:"))
    assert "--load-format dummy --config /" in argv  # the keys' file comes last
    assert "--admin-api-key" not in argv and "keys: in " in done.stdout
    assert "[ok  ] argv: parses with SGLang 0.5.23" in done.stdout, done.stdout
    assert "DUMMY WEIGHTS" in done.stdout  # said loudly
    assert "weights: /model-cache" not in done.stdout  # the weights preflight is skipped


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((TWO_NODES,), "runs on 2 nodes: give --node-rank"),
        ((TWO_NODES, "--node-rank", "2", "--dist-init-addr", "h:5000"), "not in 0..1"),
        (("qwen3-8b", "--node-rank", "1"), "runs on one node"),
        (
            (TWO_NODES, "--node-rank", "0", "--dist-init-addr", "h:5000", "--cluster-peers", "x"),
            "is not HOST:PORT",
        ),
    ],
)
def test_node_flags_fail_in_one_line(args: tuple[str, ...], message: str) -> None:
    done = dry_run("--profile", *args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_status_addresses_default_to_one_host_and_follow_hosts_or_peers() -> None:
    launch = get_profile(TWO_NODES).launch
    local = for_node(launch, rank=1, dist_init_addr="127.0.0.1:5000")
    assert local.cluster is not None and local.cluster.rank == 1
    ports = [int(p.rsplit(":", 1)[1]) for p in local.cluster.peers]
    assert ports[1] == ports[0] + 1 and local.cluster.status_port == ports[1]
    hosts = for_node(launch, rank=0, dist_init_addr="[fd00::1]:5000", hosts=["fd00::1", "fd00::2"])
    assert hosts.cluster is not None and hosts.cluster.peers[1].startswith("[fd00::2]:")
    assert len({p.rsplit(":", 1)[1] for p in hosts.cluster.peers}) == 1  # one port, many hosts
    peers = parse_peers("10.0.0.1:21000, 10.0.0.2:21000")
    explicit = for_node(launch, rank=1, dist_init_addr="10.0.0.1:5000", peers=peers)
    assert explicit.cluster is not None and explicit.cluster.peers == peers
    assert "--node-rank 1" in " ".join(explicit.launch.serve_argv())
    with pytest.raises(ConfigError, match="names 1 addresses"):
        for_node(launch, rank=0, dist_init_addr="h:5000", peers=("h:1",))
    single = for_node(get_profile("qwen3-8b").launch, rank=None, dist_init_addr=None)
    assert single.cluster is None
