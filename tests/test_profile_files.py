"""Profiles as TOML files: every built-in one round-trips, a file gets every rule a built-in
profile gets, each bad file is one line and exit 2, and `serve`, `preflight` and the Modal
settings take a file wherever they take a name."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import ConfigError
from supervisor.__main__ import main
from supervisor._cli import build_parser
from supervisor.deploy.commands import add_commands
from supervisor.deploy.env_vars import ENV_PROFILE, ENV_PROFILE_FILE, PROFILE_FILE_MOUNT
from supervisor.deploy.settings import DeploySettings
from supervisor.engines.sglang_traits import SGLANG
from supervisor.profiles import get_profile, profile_names
from supervisor.profiles.files import dump_profile, load_profile_file, profile_from_toml
from tests.conftest import ROOT
from tests.test_engine import needs_parser


def run_main(*argv: str) -> tuple[int, str, str]:
    """The CLI in-process (a bad-input case needs no process of its own): rc, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exc:  # argparse's own usage errors
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", profile_names())
def test_every_built_in_profile_round_trips_through_a_file(name: str, tmp_path: Path) -> None:
    profile = get_profile(name)
    path = tmp_path / f"{name}.toml"
    rc, out, err = run_main("profile", "show", name)
    assert rc == 0 and err == ""
    path.write_text(out)
    assert load_profile_file(path) == profile
    assert dump_profile(load_profile_file(path)) == out  # and writes back the same text


def edited(name: str, old: str, new: str) -> str:
    text = dump_profile(get_profile(name))
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


# Each bad file: what was changed, and what the one line must say (after the file's name).
BAD = [
    (
        "typo-top",
        "gpu_count = 1",
        "gpu_cuont = 1",
        r"unknown key gpu_cuont; did you mean gpu_count\?",
    ),
    (
        "typo-launch",
        "tp_size = 1",
        "tp_sise = 1",
        r"unknown key launch.tp_sise; did you mean launch.tp_size\?",
    ),
    (
        "typo-warmup",
        'expect = ["reasoning_content"]',
        'expects = ["reasoning_content"]',
        r"unknown key warmups\[0\].expects; did you mean warmups\[0\].expect\?",
    ),
    ("typo-speculative", "", "", None),  # placeholder replaced below (qwen has no speculative)
    (
        "type-int",
        "gpu_count = 1",
        'gpu_count = "1"',
        r'key gpu_count: expected an integer, got "1"',
    ),
    (
        "type-bool",
        "uses_deepgemm = false",
        'uses_deepgemm = "no"',
        r'key uses_deepgemm: expected true or false, got "no"',
    ),
    (
        "type-list",
        "extra_args = []",
        'extra_args = "--foo"',
        r"key launch.extra_args: expected a list of strings",
    ),
    (
        "type-warmup-timeout",
        "timeout = 300.0",
        'timeout = "5m"',
        r'key warmups\[0\].timeout: expected a number, got "5m"',
    ),
    (
        "range-port",
        "port = 8000",
        "port = 70000",
        r"key launch.port: 70000 is out of range; use 1 to 65535",
    ),
    (
        "range-mem",
        "mem_fraction_static = 0.85",
        "mem_fraction_static = 1.5",
        r"key launch.mem_fraction_static: 1.5 is out of range",
    ),
    ("range-gpus", "gpu_count = 1", "gpu_count = 0", r"key gpu_count: 0 is out of range"),
    (
        "tp-vs-gpus",
        "tp_size = 1",
        "tp_size = 2",
        r"profile qwen3-8b: tensor parallelism 2 must equal 1 GPUs per node x 1 node",
    ),
    ("missing-key", 'hf_repo = "Qwen/Qwen3-8B"\n', "", r"missing key hf_repo \(required\)"),
    ("bad-toml", "gpu_count = 1", "gpu_count = ", r"not valid TOML \(.*line \d+"),
    (
        "warmup-expect",
        'expect = ["reasoning_content"]',
        'expect = ["vibes"]',
        r"warmups\[0\]: warmup 'chat-thinking': unknown expect \['vibes'\]",
    ),
    ("snapshot-tp", "", "", None),  # placeholder replaced below
]
BAD = [b for b in BAD if b[3] is not None]


@pytest.mark.parametrize(("old", "new", "says"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_each_bad_file_is_one_line_naming_the_file_and_the_key(
    tmp_path: Path, old: str, new: str, says: str
) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(edited("qwen3-8b", old, new))
    rc, out, err = run_main("profile", "check", str(path))
    assert rc == 2 and out == "", (rc, out, err)
    assert err.count("\n") == 1, err  # one line
    assert re.search(rf"error: profile file {re.escape(str(path))}: {says}", err), err


def test_a_blackwell_flag_on_hopper_and_the_snapshot_rules_hold_for_files() -> None:
    glm = dump_profile(get_profile("glm-5.1-fp8"))  # B200, flashinfer_trtllm MoE runner
    with pytest.raises(ConfigError, match="needs a Blackwell GPU, not H100"):
        profile_from_toml(glm.replace('gpu = "B200"', 'gpu = "H100"', 1))
    qwen = dump_profile(get_profile("qwen3-8b"))  # snapshot-capable
    with pytest.raises(ConfigError, match="snapshot-capable yet names a blocker"):
        profile_from_toml(qwen.replace('snapshot_blocker = ""', 'snapshot_blocker = "no"'))
    tiny = dump_profile(get_profile("cpu-tiny"))  # not capable, so it must say why
    with pytest.raises(ConfigError, match="not snapshot-capable, so snapshot_blocker must say"):
        profile_from_toml(re.sub(r"snapshot_blocker = .*", 'snapshot_blocker = ""', tiny))
    with pytest.raises(ConfigError, match=r"unknown key launch.speculative.num_step; did you"):
        profile_from_toml(glm.replace("num_steps = 3", "num_step = 3", 1))


def test_a_missing_file_and_a_name_and_file_together_are_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    rc, _, err = run_main("serve", "--profile-file", str(missing), "--dry-run")
    assert rc == 2 and f"profile file {missing}: no such file" in err and err.count("\n") == 1
    rc, _, err = run_main("serve", "--profile", "qwen3-8b", "--profile-file", str(missing))
    assert rc == 2 and "not allowed with argument" in err


@pytest.mark.process
def test_serve_and_preflight_take_a_file_wherever_they_take_a_name(tmp_path: Path) -> None:
    """A new model from a file: its own repository and name, no edit to the package."""
    path = tmp_path / "my-model.toml"
    text = edited("qwen3-8b", 'name = "qwen3-8b"', 'name = "my-model"')
    text = text.replace('served_model_name = "qwen3-8b"', 'served_model_name = "my-model"')
    path.write_text(text)
    shown = {}
    for flag, value in (("--profile", "qwen3-8b"), ("--profile-file", str(path))):
        rc, out, err = run_main("serve", flag, value, "--dry-run", "--skip-preflight")
        assert rc == 0, err
        # the keys' file is a fresh private directory per run: its name differs
        shown[flag] = re.sub(r"--config \S+", "--config KEYS", out.splitlines()[0])
    assert shown["--profile-file"] == shown["--profile"].replace(
        "--served-model-name qwen3-8b", "--served-model-name my-model"
    )
    assert "--served-model-name my-model" in shown["--profile-file"]


def test_demo_and_compile_take_a_file_too(tmp_path: Path) -> None:
    path = tmp_path / "glm.toml"
    path.write_text(dump_profile(get_profile("glm-5.1-fp8")))
    from supervisor.deploy.profile_flags import chosen_profile

    parser = build_parser(extra=[add_commands], engines=[SGLANG])
    for command in ("demo", "compile", "serve", "preflight"):
        args = parser.parse_args([command, "--profile-file", str(path)])
        assert chosen_profile(args) == get_profile("glm-5.1-fp8"), command


@pytest.mark.process
@needs_parser
def test_preflight_runs_sglangs_parser_on_a_files_flags(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(edited("qwen3-8b", "extra_args = []", 'extra_args = ["--load-formt", "dummy"]'))
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "preflight", "--profile-file", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.search(r"\[FAIL\] argv: unrecognized argument: --load-formt", done.stdout), (
        done.stdout
    )


def test_the_modal_settings_take_a_file_and_bake_where_it_travels(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(dump_profile(get_profile("qwen3-8b")))
    settings = DeploySettings.from_env({ENV_PROFILE_FILE: str(path)})
    assert settings.profile == get_profile("qwen3-8b") and settings.profile_file == str(path)
    baked = settings.baked_env()
    assert baked[ENV_PROFILE_FILE] == PROFILE_FILE_MOUNT and ENV_PROFILE not in baked
    assert ("profile file", str(path)) in [(s.name, s.value) for s in settings.table()]
    with pytest.raises(ConfigError, match=f"set it or {ENV_PROFILE_FILE}, not both"):
        DeploySettings.from_env({ENV_PROFILE_FILE: str(path), ENV_PROFILE: "qwen3-8b"})
    path.write_text("gpu_count = 0\n")
    with pytest.raises(ConfigError, match=rf"^{ENV_PROFILE_FILE}: profile file .*: "):
        DeploySettings.from_env({ENV_PROFILE_FILE: str(path)})
