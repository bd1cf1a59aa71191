"""Profiles: every node's argv against SGLang 0.5.23's own parser, the two-node H100 profile's
choices, the GPU and node arithmetic, and which profiles may take the GPU-snapshot path."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from supervisor import ConfigError
from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_check import ParseVerdict, check_argv, check_argvs
from supervisor.engines.sglang_release import SGLANG_VERSION
from supervisor.profiles import Profile, get_profile, profile_names
from tests.test_engine import PARSER, needs_parser

IPV4 = "10.0.0.1:5000"
IPV6 = "[fd00:1::1]:5000"  # Modal's container_ips() are IPv6; SGLang wants them in brackets
TWO_NODES = "glm-5.1-fp8-2x8xh100"


def node_launches(profile: Profile) -> Iterator[tuple[str, SGLangLaunch]]:
    """Each launch a node of this profile runs: one, or one per rank and address family."""
    if profile.nnodes == 1:
        yield "single node", profile.launch
        return
    for addr in (IPV4, IPV6):
        for rank in range(profile.nnodes):
            yield f"rank {rank} @ {addr}", profile.launch.for_rank(rank, addr)


# ----------------------------------------------------------------------------- parser
def every_node_argv(name: str) -> list[tuple[str, list[str]]]:
    return [
        (f"{label} {kind}", argv)
        for label, launch in node_launches(get_profile(name))
        for kind, argv in (
            ("serve", launch.serve_argv("some-key")),
            ("compile", launch.compile_argv(1800)),
        )
    ]


@pytest.fixture(scope="module")
def verdicts() -> dict[str, list[tuple[str, ParseVerdict]]]:
    """Every profile's argvs through one parser child: SGLang's import is paid once, not 20 times."""
    argvs = {name: every_node_argv(name) for name in profile_names()}
    flat = [argv for name in argvs for _, argv in argvs[name]]
    results = iter(check_argvs(flat, python=PARSER))
    return {name: [(label, next(results)) for label, _ in argvs[name]] for name in argvs}


@needs_parser
@pytest.mark.parametrize("name", profile_names())
def test_every_node_serve_and_compile_argv_parse_with_sglang(name: str, verdicts) -> None:
    for label, verdict in verdicts[name]:
        assert verdict.version == SGLANG_VERSION, label
        assert verdict.problems == (), (label, verdict.problems)
        assert verdict.warnings == (), (label, verdict.warnings)
    expected = 8 if get_profile(name).nnodes == 2 else 2  # every rank x address x serve/compile
    assert len(verdicts[name]) == expected


@pytest.mark.process
@needs_parser
def test_the_parser_check_would_catch_a_wrong_multi_node_or_snapshot_flag() -> None:
    """The flags exist only as 0.5.23 spells them: a near miss is a problem, not a pass."""
    launch = get_profile(TWO_NODES).launch.for_rank(1, IPV4)
    argv = [t.replace("--node-rank", "--node_rank") for t in launch.serve_argv()]
    argv += ["--enable-weight-cpu-backup"]
    problems = "\n".join(check_argv(argv, python=PARSER).problems)
    assert "unrecognized argument: --node_rank" in problems
    assert "unrecognized argument: --enable-weight-cpu-backup" in problems


# ----------------------------------------------------------------------------- nodes and GPUs
def test_each_node_gets_the_same_argv_but_its_rank() -> None:
    profile = get_profile(TWO_NODES)
    for addr in (IPV4, IPV6):
        rank0, rank1 = (profile.launch.for_rank(r, addr).serve_argv("k") for r in (0, 1))
        j = " ".join(rank0)
        assert f"--tp-size 16 --nnodes 2 --node-rank 0 --dist-init-addr {addr} " in j
        assert rank1 == [
            "1" if i == rank0.index("--node-rank") + 1 else t for i, t in enumerate(rank0)
        ]
        compile1 = profile.launch.for_rank(1, addr).compile_argv(60)
        assert "--api-key" not in compile1
        assert compile1[compile1.index("--node-rank") + 1] == "1"


def test_the_two_node_template_needs_a_rank_before_it_has_an_argv() -> None:
    launch = get_profile(TWO_NODES).launch
    assert (launch.nnodes, launch.node_rank, launch.dist_init_addr) == (2, 0, None)
    with pytest.raises(ConfigError, match=r"^this is a 2-node launch template") as info:
        launch.serve_argv("k")
    assert "\n" not in str(info.value)


def test_tensor_parallelism_is_gpus_per_node_times_nodes() -> None:
    for name in profile_names():
        p = get_profile(name)
        assert p.launch.tp_size == p.gpu_count * p.nnodes
        assert p.launch.gpus_per_node == p.gpu_count and p.launch.nnodes == p.nnodes
    two = get_profile(TWO_NODES)
    with pytest.raises(
        ConfigError,
        match=r"^profile glm-5.1-fp8-2x8xh100: tensor parallelism 16 must equal "
        r"4 GPUs per node x 2 node\(s\)$",
    ):
        dataclasses.replace(two, gpu_count=4)
    with pytest.raises(ConfigError, match=r"the launch has nnodes 2, the profile 1$"):
        dataclasses.replace(two, nnodes=1, gpu_count=16)
    one = get_profile("glm-5.1-fp8")
    with pytest.raises(ConfigError, match=r"must equal 8 GPUs per node x 2 node\(s\)$"):
        dataclasses.replace(one, launch=one.launch.with_overrides(nnodes=2), nnodes=2)


# ----------------------------------------------------------------------------- the H100 profile
def test_the_two_node_profile_is_glm_51_on_two_nodes_of_eight_h100() -> None:
    two, b200 = get_profile(TWO_NODES), get_profile("glm-5.1-fp8")
    assert (two.gpu, two.gpu_count, two.nnodes, two.launch.tp_size) == ("H100", 8, 2, 16)
    assert two.hf_repo == b200.hf_repo and two.launch.model_path == b200.launch.model_path
    assert two.weights_volume == b200.weights_volume  # the same files
    assert two.dg_cache_volume != b200.dg_cache_volume  # SM100 kernels are no use on SM90
    assert two.app_name != b200.app_name and two.uses_deepgemm
    assert two.launch.dg_cache_dir == "/dg-cache"
    assert [w.name for w in two.warmups] == [w.name for w in b200.warmups]


def test_the_two_node_profile_uses_only_hopper_backends() -> None:
    launch = get_profile(TWO_NODES).launch
    assert launch.blackwell_only() == []
    argv = launch.for_rank(0, IPV4).serve_argv("k")

    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    # what 0.5.23 resolves on SM90 (overrides.py: _dsa_kv_cache_dtype_default,
    # _dsa_split_backend_resolution), stated; and the Hopper MoE runner (fp8.py)
    assert value("--kv-cache-dtype") == "bfloat16"
    assert value("--dsa-prefill-backend") == "flashmla_sparse"
    assert value("--dsa-decode-backend") == "fa3"
    assert value("--moe-runner-backend") == "triton"
    assert not any("trtllm" in t or "cutedsl" in t or "mnnvl" in t for t in argv)
    assert "--flashinfer-allreduce-fusion-backend" not in argv  # multi-node: Blackwell only
    assert "--enable-flashinfer-allreduce-fusion" not in argv


def test_a_hopper_profile_with_a_blackwell_backend_is_refused() -> None:
    b200 = get_profile("glm-5.1-fp8")
    with pytest.raises(
        ConfigError,
        match=r"^profile glm-5.1-fp8: --moe-runner-backend flashinfer_trtllm needs a Blackwell "
        r"GPU, not H100$",
    ):
        dataclasses.replace(b200, gpu="H100")
    two = get_profile(TWO_NODES)
    fused = two.launch.with_overrides(flashinfer_allreduce_fusion_backend="trtllm")
    with pytest.raises(ConfigError, match=r"fusion-backend trtllm on 2 nodes needs a Blackwell"):
        dataclasses.replace(two, launch=fused)


def test_the_two_node_memory_plan_fits_an_80_gb_card() -> None:
    """The module docstring's arithmetic: weights + the capped KV pool within the static share."""
    two = get_profile(TWO_NODES)
    launch = two.launch
    h100_gib = 79.6
    weights_gib = two.weights_gb * 1e9 / launch.tp_size / 2**30
    # MLA latent (kv_lora_rank 512 + rope 64) in BF16 + the DSA indexer key (128 B + 4 B scale),
    # 78 layers plus the MTP layer, replicated on every TP rank
    kv_bytes_per_token = 79 * (576 * 2 + 132)
    assert launch.max_total_tokens is not None and launch.mem_fraction_static is not None
    static_gib = launch.mem_fraction_static * h100_gib
    pool_gib = launch.max_total_tokens * kv_bytes_per_token / 2**30
    room = static_gib - weights_gib
    assert 20 < room < 30  # ~26 GiB for the KV pool
    assert pool_gib < room * 0.6  # the cap binds, with memory to spare
    assert launch.max_running_requests is not None and launch.max_prefill_tokens is not None
    assert launch.max_total_tokens >= launch.max_running_requests * 2048
    assert launch.max_total_tokens >= 2 * launch.max_prefill_tokens
    assert h100_gib - weights_gib - pool_gib > 20  # activations, graphs, NCCL/IB buffers


# ----------------------------------------------------------------------------- snapshots
def test_only_qwen3_8b_is_snapshot_capable_and_only_it_launches_the_flags() -> None:
    capable = {n for n in profile_names() if get_profile(n).snapshot_capable}
    assert capable == {"qwen3-8b"}
    for name in profile_names():
        profile = get_profile(name)
        for label, launch in node_launches(profile):
            argv = launch.serve_argv("k")
            flags = {"--enable-memory-saver", "--enable-weights-cpu-backup"} & set(argv)
            if profile.snapshot_capable:
                assert flags == {"--enable-memory-saver", "--enable-weights-cpu-backup"}, label
                assert profile.snapshot_blocker == ""
            else:
                assert flags == set(), (name, label)


@pytest.mark.parametrize("name", ["glm-5.1-fp8", TWO_NODES, "deepseek-r1-fp8"])
def test_the_big_profiles_say_why_they_cannot_be_snapshotted(name: str) -> None:
    profile = get_profile(name)
    blocker = profile.snapshot_blocker
    assert not profile.snapshot_capable and "\n" not in blocker
    assert f"TP={profile.launch.tp_size} uses CUDA IPC memory" in blocker
    assert "NVIDIA's CUDA checkpoint does not support" in blocker
    assert "Modal documents no multi-GPU GPU snapshots" in blocker
    assert f"~{profile.weights_gb} GB" in blocker
    assert ("2-container cluster" in blocker) == (profile.nnodes == 2)


def test_snapshot_fields_must_agree_with_each_other_and_the_launch() -> None:
    qwen, glm = get_profile("qwen3-8b"), get_profile("glm-5.1-fp8")
    with pytest.raises(ConfigError, match=r"^profile glm-5.1-fp8: not snapshot-capable, so"):
        dataclasses.replace(glm, snapshot_blocker=" ")
    with pytest.raises(ConfigError, match=r"^profile qwen3-8b: snapshot-capable yet names a"):
        dataclasses.replace(qwen, snapshot_blocker="why")
    plain = qwen.launch.with_overrides(enable_memory_saver=False, enable_weights_cpu_backup=False)
    # with_overrides skips None only: False is a change
    assert not plain.enable_memory_saver
    with pytest.raises(ConfigError, match=r"snapshot-capable needs launch\.enable_memory_saver$"):
        dataclasses.replace(qwen, launch=plain)
    with pytest.raises(ConfigError, match=r"snapshot-capable needs tensor parallelism 1"):
        dataclasses.replace(
            glm,
            snapshot_capable=True,
            snapshot_blocker="",
            launch=glm.launch.with_overrides(enable_memory_saver=True),
        )
    # a non-capable profile may still launch the saver (other uses); capability is the claim
    dataclasses.replace(qwen, snapshot_capable=False, snapshot_blocker="not wanted here")


def test_dp_attention_brings_every_schedulers_metrics() -> None:
    """A launch with DP attention reports every rank's scheduler (labelled dp_rank), so the
    progress watch can see one wedged rank; without DP attention nothing is added."""
    base = get_profile("qwen3-8b").launch
    dp = dataclasses.replace(base, extra_args=("--enable-dp-attention", "--dp-size", "2"))
    argv = dp.model_args()
    assert argv.count("--enable-metrics-for-all-schedulers") == 1
    assert "--enable-metrics-for-all-schedulers" not in base.model_args()
    off = dataclasses.replace(dp, enable_metrics=False)
    assert "--enable-metrics-for-all-schedulers" not in off.model_args()


@needs_parser
@pytest.mark.process
def test_the_dp_attention_argv_parses_with_sglang() -> None:
    base = get_profile("qwen3-8b").launch
    dp = dataclasses.replace(
        base, tp_size=2, extra_args=("--enable-dp-attention", "--dp-size", "2")
    )
    verdict = check_argv(dp.serve_argv(), python=PARSER)
    assert verdict.problems == (), verdict.problems
