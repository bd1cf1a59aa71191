"""Command line of the fake: the SGLang flags that matter here, plus the `--fake-*` knobs.

Unknown flags are accepted and ignored (and named in one log line), so a profile's real SGLang
argv runs on the fake unchanged. Defaults are SGLang's own timings; `--fake-time-scale 0.1`
shrinks every one of them (drain, health, health-check timeout, heartbeat, compile polling)
tenfold for fast tests.
"""

from __future__ import annotations

import argparse
import json
import sys

from ._compile import compile_deep_gemm
from ._faults import FAULTS
from ._gpu_faults import GPU_FAULTS
from ._ranks import parse_dist_init_addr
from ._server import FakeSGLang


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fake-sglang", description="A fake SGLang server for tests.")
    # SGLang's flags (the ones the fake uses or shows in server_args=)
    p.add_argument("--model-path", "--model", default="fake/model")
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--api-key", default=None)
    p.add_argument("--admin-api-key", default=None)
    p.add_argument("--tp-size", "--tensor-parallel-size", "--tp", type=int, default=1)
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--kv-cache-dtype", default="auto")
    p.add_argument("--mem-fraction-static", type=float, default=None)
    p.add_argument("--max-running-requests", type=int, default=None)
    p.add_argument("--max-total-tokens", type=int, default=None)
    p.add_argument("--reasoning-parser", default=None)
    p.add_argument("--tool-call-parser", default=None)
    p.add_argument("--max-prefill-tokens", type=int, default=16384)
    p.add_argument("--context-length", type=int, default=65536)
    p.add_argument("--watchdog-timeout", type=float, default=300)
    p.add_argument("--enable-metrics", action="store_true")
    p.add_argument("--enable-metrics-for-all-schedulers", action="store_true")
    p.add_argument("--enable-dp-attention", action="store_true")
    p.add_argument("--dp-size", "--data-parallel-size", "--dp", type=int, default=1)
    p.add_argument("--skip-server-warmup", action="store_true")
    p.add_argument("--enable-memory-saver", action="store_true")
    p.add_argument("--enable-weights-cpu-backup", action="store_true")
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--node-rank", type=int, default=0)
    p.add_argument("--dist-init-addr", default=None)
    p.add_argument("--dist-timeout", type=int, default=None)
    p.add_argument("--timeout", type=int, default=3600, help="compile mode: SGLang's --timeout")
    # the fake's own knobs
    p.add_argument("--fake-load-time", type=float, default=1.0, help="seconds with the port closed")
    p.add_argument(
        "--fake-warmup-time", type=float, default=0.5, help="seconds of 503 after binding"
    )
    p.add_argument(
        "--fake-health-time",
        type=float,
        default=None,
        help="seconds /health takes (default: SGLang's 1 s generation step, time-scaled)",
    )
    p.add_argument("--fake-gen-time", type=float, default=0.0, help="seconds each generation takes")
    p.add_argument(
        "--fake-token-time",
        type=float,
        default=0.0,
        help="seconds each generated token takes (streamed as made; the decode counter moves)",
    )
    p.add_argument(
        "--fake-health-check-timeout",
        type=float,
        default=None,
        help="seconds before /health gives up with 503 (SGLANG_HEALTH_CHECK_TIMEOUT or 20, scaled)",
    )
    p.add_argument(
        "--fake-stall-after-requests",
        type=int,
        default=None,
        help="stall fault: strike once N client generations finished after ready (not by time)",
    )
    p.add_argument(
        "--fake-memory-release-time",
        type=float,
        default=0.2,
        help="seconds /release_memory_occupation takes",
    )
    p.add_argument(
        "--fake-resume-time",
        type=float,
        default=0.2,
        help="seconds /resume_memory_occupation takes",
    )
    p.add_argument(
        "--fake-dist-timeout",
        type=float,
        default=None,
        help="multi-node rendezvous bound (default: --dist-timeout, else torch's 1800 s)",
    )
    p.add_argument(
        "--fake-time-scale",
        type=float,
        default=1.0,
        help="multiply SGLang's own timings (drain 5 s/5 s/15 s, /health 1 s, compile polls 10 s)",
    )
    p.add_argument(
        "--fake-release-time",
        type=float,
        default=None,
        help="seconds a scheduler takes to release its memory after ShutdownReq (0.5, scaled)",
    )
    p.add_argument(
        "--fake-architecture",
        default=None,
        help="the served model's architecture (default: guessed from --model-path)",
    )
    p.add_argument("--fake-fault", action="append", choices=FAULTS, default=[])
    p.add_argument(
        "--fake-crash-after",
        type=float,
        default=None,
        help="seconds after ready (crash-after-serving and hang: default 1; stall: default 10)",
    )
    p.add_argument(
        "--fake-crash-log",
        action="append",
        default=None,
        help="lines logged before a crash (by the failing scheduler after serving)",
    )
    p.add_argument(
        "--fake-gpu-fault",
        choices=sorted(GPU_FAULTS),
        default=None,
        help="log this GPU fault's record before the crash (crash-after-serving or crash-loading)",
    )
    p.add_argument(
        "--fake-extra-log", action="append", default=None, help="lines logged while loading"
    )
    p.add_argument("--fake-flood-lines", type=int, default=300_000)
    p.add_argument(
        "--fake-leak-mb-per-s", type=float, default=50.0, help="memory-leak: MiB a second"
    )
    p.add_argument("--fake-long-line", type=int, default=0, help="pad server_args= by N bytes")
    p.add_argument("--fake-gpu-mem-gib", type=float, default=0.0, help="GPU memory per scheduler")
    p.add_argument(
        "--fake-grandchildren", action="store_true", help="each scheduler forks one more"
    )
    p.add_argument("--fake-api-key-env", default=None, help="read the API key from this variable")
    p.add_argument(
        "--fake-mode",
        choices=("serve", "compile"),
        default="serve",
        help="compile: behave like `python -m sglang.compile_deep_gemm`",
    )
    return p


def merge_config(argv: list[str]) -> list[str]:
    """`--config FILE.yaml` as 0.5.23 merges it (srt/utils/server_args_config_parser.py
    `ConfigArgumentMerger.merge_config_with_args`): the file's `key: value` pairs become
    `--key value`, ahead of the command line's flags, which win. The fake reads the flat form
    the supervisor writes (`name: "JSON string"` lines, `#` comments); SGLang reads any YAML."""
    if "--config" not in argv:
        return argv
    at = argv.index("--config")
    if at == len(argv) - 1:
        raise SystemExit("ValueError: No config file specified after --config flag!")
    path = argv[at + 1]
    if not path.lower().endswith((".yaml", ".yml")):
        raise SystemExit(f"ValueError: Config file must be YAML format, got: {path}")
    flags: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, _, value = line.partition(":")
            flags += [f"--{key.strip()}", str(json.loads(value))]
    return flags + argv[:at] + argv[at + 2 :]


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, unknown = parser.parse_known_args(
        merge_config(list(sys.argv[1:] if argv is None else argv))
    )
    args.unknown = unknown
    args.fake_compile_warmup = False
    if args.fake_gpu_fault:  # the fault's record is the crash's log
        args.fake_crash_log = [*(args.fake_crash_log or ()), *GPU_FAULTS[args.fake_gpu_fault]]
    if not args.fake_time_scale > 0:
        raise SystemExit(f"fake-sglang: --fake-time-scale must be > 0, got {args.fake_time_scale}")
    if args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes:
        parser.error(f"--node-rank must be in [0, {args.nnodes}), got {args.node_rank}")
    if args.nnodes > 1:
        if not args.dist_init_addr:
            parser.error("--dist-init-addr is required with --nnodes > 1")
        try:
            parse_dist_init_addr(args.dist_init_addr)
        except ValueError as e:
            parser.error(str(e))
    if args.fake_mode == "compile":
        compile_deep_gemm(args)
    else:
        FakeSGLang(args).run()
