"""Deploy-time settings of a server deployment: plain data, parsed from environment variables.

Why a module of its own: the values that decide a deployment's shape (GPUs, volumes, startup and
exit budgets, autoscaling, regions, proxy auth, dummy weights) come from the profile, and an
operator changes them at deploy time with environment variables, never by editing code. Parsing
them here, without importing any platform, makes every rule testable offline and gives one
`ConfigError` line per bad value, naming the variable. The platform binding (`modal_entry.py`)
only passes the parsed values to its decorators, and bakes `baked_env()` into the image so that a
container, importing the same module, resolves exactly the same settings.

The drain budget is derived here too, from SGLang 0.5.23's own shutdown timings (see
`DrainBudget`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from supervisor._errors import ConfigError
from supervisor.deploy.drain import (
    DEFAULT_DRAIN_IN_FLIGHT_S,
    DRAIN_POLL_S,
    MAX_EXIT_GRACE_S,
    REAP_MARGIN_S,
    SCHEDULER_RELEASE_S,
    SIGTERM_NOTICE_S,
    WEB_SERVER_EXIT_GRACE_S,
    DrainBudget,
)
from supervisor.engines import image
from supervisor.engines.sglang import SGLangLaunch
from supervisor.profiles import Profile, get_profile, profile_names
from supervisor.profiles.files import load_profile_file

__all__ = [
    "DEFAULT_PROFILE",
    "DUMMY_WEIGHTS_BANNER",
    "ENTRIES",
    "ENTRY_SERVER",
    "ENTRY_WEB_SERVER",
    "ENV_DUMMY_WEIGHTS",
    "ENV_ENTRY",
    "ENV_PORT",
    "ENV_PROFILE",
    "ENV_PROFILE_FILE",
    "KNOWN_GPUS",
    "PROFILE_FILE_MOUNT",
    "SETTINGS_ENV",
    "DeploySettings",
    "DrainBudget",
    "default_image",
    "dummy_weights_enabled",
    "validate_deployment",
    "with_dummy_weights",
]

DEFAULT_PROFILE = "glm-5.1-fp8"

# ------------------------------------------------------------------ environment variable names
ENV_PROFILE: Final = "SGLANG_SUPERVISOR_PROFILE"
#: A profile in a TOML file instead of a built-in one (`python -m supervisor profile show`).
ENV_PROFILE_FILE: Final = "SGLANG_SUPERVISOR_PROFILE_FILE"
#: Where the deploy puts that file in every container (the binding adds it to the images), and
#: so what a container's ENV_PROFILE_FILE says.
PROFILE_FILE_MOUNT: Final = "/root/sglang-supervisor-profile.toml"
ENV_ENTRY: Final = "SGLANG_SUPERVISOR_MODAL_ENTRY"
ENV_DUMMY_WEIGHTS: Final = "SGLANG_SUPERVISOR_DUMMY_WEIGHTS"
ENV_IMAGE: Final = "SGLANG_IMAGE"
ENV_GPU: Final = "SGLANG_SUPERVISOR_GPU"
ENV_PORT: Final = "SGLANG_SUPERVISOR_PORT"
ENV_WEIGHTS_VOLUME: Final = "SGLANG_SUPERVISOR_WEIGHTS_VOLUME"
ENV_DG_CACHE_VOLUME: Final = "SGLANG_SUPERVISOR_DG_CACHE_VOLUME"
ENV_API_KEY_SECRET: Final = "SGLANG_SUPERVISOR_API_KEY_SECRET"
ENV_HF_SECRET: Final = "SGLANG_SUPERVISOR_HF_SECRET"
#: Optional: a Modal secret providing ADMIN_API_KEY, for an operator who wants SGLang's admin
#: routes (LoRA loading, profiling, weight updates). Unset: a random admin key per container.
ENV_ADMIN_KEY_SECRET: Final = "SGLANG_SUPERVISOR_ADMIN_KEY_SECRET"
ENV_STARTUP_TIMEOUT: Final = "SGLANG_SUPERVISOR_STARTUP_TIMEOUT"
ENV_DRAIN_IN_FLIGHT: Final = "SGLANG_SUPERVISOR_DRAIN_IN_FLIGHT"
ENV_TARGET_CONCURRENCY: Final = "SGLANG_SUPERVISOR_TARGET_CONCURRENCY"
ENV_MAX_CONCURRENCY: Final = "SGLANG_SUPERVISOR_MAX_CONCURRENCY"
ENV_MIN_CONTAINERS: Final = "SGLANG_SUPERVISOR_MIN_CONTAINERS"
ENV_MAX_CONTAINERS: Final = "SGLANG_SUPERVISOR_MAX_CONTAINERS"
ENV_SCALEDOWN_WINDOW: Final = "SGLANG_SUPERVISOR_SCALEDOWN_WINDOW"
ENV_ROUTING_REGION: Final = "SGLANG_SUPERVISOR_ROUTING_REGION"
ENV_COMPUTE_REGION: Final = "SGLANG_SUPERVISOR_COMPUTE_REGION"
ENV_PROXY_AUTH: Final = "SGLANG_SUPERVISOR_PROXY_AUTH"

#: Every variable that shapes a deployment; a container gets the ones given at deploy time.
SETTINGS_ENV: Final = (
    ENV_PROFILE,
    ENV_PROFILE_FILE,
    ENV_ENTRY,
    ENV_DUMMY_WEIGHTS,
    ENV_IMAGE,
    ENV_GPU,
    ENV_PORT,
    ENV_WEIGHTS_VOLUME,
    ENV_DG_CACHE_VOLUME,
    ENV_API_KEY_SECRET,
    ENV_HF_SECRET,
    ENV_ADMIN_KEY_SECRET,
    ENV_STARTUP_TIMEOUT,
    ENV_DRAIN_IN_FLIGHT,
    ENV_TARGET_CONCURRENCY,
    ENV_MAX_CONCURRENCY,
    ENV_MIN_CONTAINERS,
    ENV_MAX_CONTAINERS,
    ENV_SCALEDOWN_WINDOW,
    ENV_ROUTING_REGION,
    ENV_COMPUTE_REGION,
    ENV_PROXY_AUTH,
)

ENTRY_SERVER: Final = "server"  # @app.server: Modal Servers (the default)
ENTRY_WEB_SERVER: Final = "web_server"  # @app.cls + @modal.web_server + @modal.concurrent
ENTRIES: Final = (ENTRY_SERVER, ENTRY_WEB_SERVER)

#: GPU type names Modal accepts (Modal itself accepts any string at definition time).
KNOWN_GPUS = frozenset(
    {
        "T4",
        "L4",
        "A10G",
        "A100",
        "A100-40GB",
        "A100-80GB",
        "L40S",
        "H100",
        "H100!",
        "H200",
        "B200",
        "B200+",
    }
)
MAX_TIMEOUT_S = 24 * 3600  # Modal's limit for a function's timeout and startup timeout

# ------------------------------------------------------------------ defaults not in a profile
MODEL_MOUNT: Final = "/model-cache"  # the weights volume; every profile's model path is under it
DG_MOUNT: Final = "/dg-cache"  # the DeepGEMM cache volume; SGLANG_DG_CACHE_DIR points here
DEFAULT_TARGET_CONCURRENCY: Final = 20.0  # the seed's @modal.concurrent(max_inputs=20)
DEFAULT_MIN_CONTAINERS: Final = 0
DEFAULT_MAX_CONTAINERS: Final = 3  # 24 B200s at most for GLM-5.1
DEFAULT_SCALEDOWN_WINDOW_S: Final = 900  # a cold start costs most of an hour: keep idle ones 15 min
DEFAULT_ROUTING_REGION: Final = "us-east"  # Modal's own default for @app.server
#: Preflight, volume reloads and the runtime check, before the supervisor's own startup deadline
#: starts counting: the part of Modal's startup timeout that is not SGLang's.
ENTER_MARGIN_S: Final = 300
#: The web_server entry's port wait after `serve()` returns: SGLang already answers by then
#: (`@modal.enter` returned only once serving), so this is a formality, not a cold-start bound.
WEB_PORT_WAIT_S: Final = 60
WEB_SERVER_TIMEOUT_S: Final = MAX_TIMEOUT_S  # @app.cls `timeout`: one request's longest life

# ------------------------------------------------------------------ drain budget: see `drain`
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # Modal object names (volumes, secrets)
_REGION = re.compile(r"^[a-z0-9-]{2,40}$")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def default_image() -> str:
    """The SGLang image for the pinned version (the engine edge derives it from the pin)."""
    return image.default_image()


# ------------------------------------------------------------------ parsing helpers (one line each)
def _bad(name: str, raw: str, want: str) -> ConfigError:
    return ConfigError(f"{name}={raw!r}: {want}")


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise _bad(name, raw, f"must be a whole number from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise _bad(name, raw, f"must be a whole number from {lo} to {hi}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _bad(name, raw, "must be 1 or 0 (true/false, yes/no, on/off)")


def _name(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if not _NAME.match(raw.strip()):
        raise _bad(name, raw, "must be a Modal object name: letters, digits, '.', '_', '-' (1-64)")
    return raw.strip()


def dummy_weights_enabled(env: Mapping[str, str]) -> bool:
    """Whether SGLANG_SUPERVISOR_DUMMY_WEIGHTS asks for random weights (`--load-format dummy`)."""
    return _bool(env, ENV_DUMMY_WEIGHTS, False)


DUMMY_WEIGHTS_BANNER: Final = (
    "[supervisor] WARNING: DUMMY WEIGHTS (--load-format dummy): the model runs on RANDOM weights; "
    "every answer is garbage. The weights preflight is skipped and warmup verdicts only warn. "
    f"Drop --dummy-weights / {ENV_DUMMY_WEIGHTS} to serve the real model."
)


def with_dummy_weights(launch: SGLangLaunch) -> SGLangLaunch:
    """The same launch with `--load-format dummy`: SGLang initialises random weights instead of
    reading them, so a deployment's whole path (GPUs, CUDA graphs, warmups, routing, drain) can be
    tried without the ~700 GB download. SGLang still reads config.json and the tokenizer.

    Idempotent; refuses a launch that already names another load format.
    """
    args = list(launch.extra_args)
    for i, token in enumerate(args):
        if token == "--load-format" or token.startswith("--load-format="):
            value = token.partition("=")[2] or (args[i + 1] if i + 1 < len(args) else "")
            if value == "dummy":
                return launch
            raise ConfigError(f"dummy weights: the launch already sets --load-format {value}")
    return launch.with_overrides(extra_args=(*launch.extra_args, "--load-format", "dummy"))


def validate_deployment(
    *,
    gpu: str,
    gpu_count: int,
    timeout_s: int,
    max_inputs: int,
    startup_timeout_s: float,
    secrets_ok: bool,
) -> None:
    """What Modal does not check at definition time, checked before a deploy wastes an hour."""
    if gpu not in KNOWN_GPUS:
        raise ConfigError(f"unknown GPU type {gpu!r}; use one of {sorted(KNOWN_GPUS)}")
    if not 1 <= gpu_count <= 8:
        raise ConfigError(f"GPU count must be 1 to 8, got {gpu_count}")
    if not 1 <= timeout_s <= MAX_TIMEOUT_S:
        raise ConfigError(f"timeout must be 1 to {MAX_TIMEOUT_S} s, got {timeout_s}")
    if max_inputs < 1:
        raise ConfigError(f"concurrent max_inputs must be >= 1, got {max_inputs}")
    if not 0 < startup_timeout_s <= timeout_s:
        raise ConfigError(
            f"startup timeout must be > 0 and <= the timeout, got {startup_timeout_s}"
        )
    if not secrets_ok:
        raise ConfigError("secrets must be modal.Secret objects, not names")


def _longest_warmup_s(profile: Profile) -> int:
    return math.ceil(max((w.timeout for w in profile.warmups), default=0.0))


@dataclass(frozen=True)
class Setting:
    """A row of the settings table: what it is, its value, its variable, where it came from."""

    name: str
    value: object
    env: str
    source: str  # "env", "profile" or "default"


@dataclass(frozen=True)
class DeploySettings:
    """Everything a deployment decides, resolved from a profile and the environment.

    Build it with `DeploySettings.from_env(os.environ)`; every field is already validated.
    """

    profile: Profile
    entry: str
    image: str
    gpu: str
    gpu_count: int
    port: int
    weights_volume: str
    dg_cache_volume: str
    api_key_secret: str
    hf_secret: str
    admin_key_secret: str | None  # None: a random admin key per container, no secret
    startup_timeout_s: int  # the platform's: the whole cold start, @enter included
    supervisor_startup_timeout_s: int  # the supervisor's health deadline inside it
    drain: DrainBudget
    target_concurrency: float
    max_concurrency: int | None  # None: no cap (SGLang queues)
    min_containers: int
    max_containers: int
    scaledown_window_s: int
    routing_region: str
    compute_region: tuple[str, ...] | None
    proxy_auth: bool
    dummy_weights: bool
    overrides: Mapping[str, str] = field(default_factory=dict)
    #: The profile's TOML file as given at deploy time (None: a built-in profile).
    profile_file: str | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DeploySettings:
        """Parse and cross-check; raise ConfigError with one line naming the bad variable."""
        overrides = {k: env[k] for k in SETTINGS_ENV if k in env}
        profile_file = (env.get(ENV_PROFILE_FILE) or "").strip() or None
        raw_profile = env.get(ENV_PROFILE) or DEFAULT_PROFILE
        if profile_file is not None:
            if env.get(ENV_PROFILE):
                raise _bad(ENV_PROFILE, raw_profile, f"set it or {ENV_PROFILE_FILE}, not both")
            try:
                profile = load_profile_file(profile_file)
            except ConfigError as exc:
                raise ConfigError(f"{ENV_PROFILE_FILE}: {exc}") from None
        elif raw_profile not in profile_names():
            raise _bad(
                ENV_PROFILE, raw_profile, f"unknown profile; choose one of {profile_names()}"
            )
        else:
            profile = get_profile(raw_profile)
        launch = profile.launch

        entry = (env.get(ENV_ENTRY) or ENTRY_SERVER).strip()
        if entry not in ENTRIES:
            raise _bad(ENV_ENTRY, entry, f"must be one of {list(ENTRIES)}")
        web = entry == ENTRY_WEB_SERVER
        nodes = launch.nnodes
        if web and nodes > 1:
            raise _bad(
                ENV_ENTRY,
                entry,
                f"profile {profile.name} runs on {nodes} nodes: a cluster serves only through "
                "@app.server (Modal has no clustered web endpoints); unset it",
            )

        image = (env.get(ENV_IMAGE) or "").strip() or default_image()
        if any(c.isspace() for c in image):
            raise _bad(ENV_IMAGE, image, "an image reference has no whitespace")

        gpu = (env.get(ENV_GPU) or "").strip() or profile.gpu
        if gpu not in KNOWN_GPUS:
            raise _bad(ENV_GPU, gpu, f"unknown GPU type; use one of {sorted(KNOWN_GPUS)}")

        if not launch.model_path.startswith(MODEL_MOUNT + "/"):
            raise ConfigError(
                f"profile {profile.name}: model path {launch.model_path} is not under {MODEL_MOUNT}"
            )
        if profile.uses_deepgemm and launch.dg_cache_dir != DG_MOUNT:
            raise ConfigError(
                f"profile {profile.name}: DeepGEMM cache {launch.dg_cache_dir} is not {DG_MOUNT}"
            )

        overhead = _longest_warmup_s(profile) + ENTER_MARGIN_S
        default_startup = math.ceil(profile.startup_timeout_s) + overhead
        startup = _int(env, ENV_STARTUP_TIMEOUT, default_startup, overhead + 1, MAX_TIMEOUT_S)

        if web:
            if env.get(ENV_DRAIN_IN_FLIGHT, "").strip():
                raise _bad(
                    ENV_DRAIN_IN_FLIGHT,
                    env[ENV_DRAIN_IN_FLIGHT],
                    f"only the server entry has a configurable drain; @modal.exit on the "
                    f"web_server entry has Modal's fixed {WEB_SERVER_EXIT_GRACE_S} s",
                )
            if env.get(ENV_ROUTING_REGION, "").strip():
                raise _bad(
                    ENV_ROUTING_REGION,
                    env[ENV_ROUTING_REGION],
                    "a routing region is a Modal Servers feature: unset it or use the server entry",
                )
            drain = DrainBudget.derive(0)
        else:
            fixed = SIGTERM_NOTICE_S + DRAIN_POLL_S + SCHEDULER_RELEASE_S + REAP_MARGIN_S
            longest = MAX_EXIT_GRACE_S - fixed  # Modal refuses an exit grace above 3600 s
            in_flight = _int(env, ENV_DRAIN_IN_FLIGHT, DEFAULT_DRAIN_IN_FLIGHT_S, 0, longest)
            drain = DrainBudget.derive(in_flight)

        raw_target = env.get(ENV_TARGET_CONCURRENCY, "").strip()
        target = DEFAULT_TARGET_CONCURRENCY
        if raw_target:
            try:
                target = float(raw_target)
            except ValueError:
                raise _bad(ENV_TARGET_CONCURRENCY, raw_target, "must be a number > 0") from None
            if not (math.isfinite(target) and target > 0):
                raise _bad(ENV_TARGET_CONCURRENCY, raw_target, "must be a number > 0")
            if web and not target.is_integer():
                raise _bad(
                    ENV_TARGET_CONCURRENCY,
                    raw_target,
                    "@modal.concurrent takes a whole number; fractions need the server entry",
                )
        profile_max = launch.max_running_requests
        max_conc: int | None = _int(env, ENV_MAX_CONCURRENCY, profile_max or 0, 0, 100_000) or None
        if max_conc is not None and target > max_conc:
            raise ConfigError(
                f"{ENV_TARGET_CONCURRENCY}={target:g} exceeds {ENV_MAX_CONCURRENCY}={max_conc}: "
                "the autoscaler would wait for a load that is refused"
            )

        # Modal counts a cluster's containers one by one: the defaults are per replica (one
        # cluster), and an override must be a whole number of clusters.
        min_containers = _int(env, ENV_MIN_CONTAINERS, DEFAULT_MIN_CONTAINERS * nodes, 0, 1000)
        max_containers = _int(env, ENV_MAX_CONTAINERS, DEFAULT_MAX_CONTAINERS * nodes, 1, 1000)
        for name, value in (
            (ENV_MIN_CONTAINERS, min_containers),
            (ENV_MAX_CONTAINERS, max_containers),
        ):
            if value % nodes:
                raise _bad(
                    name,
                    str(value),
                    f"must be a multiple of the cluster size {nodes} (one per node)",
                )
        if min_containers > max_containers:
            raise ConfigError(
                f"{ENV_MIN_CONTAINERS}={min_containers} exceeds "
                f"{ENV_MAX_CONTAINERS}={max_containers}"
            )
        scaledown = _int(env, ENV_SCALEDOWN_WINDOW, DEFAULT_SCALEDOWN_WINDOW_S, 2, 3600)

        routing = (env.get(ENV_ROUTING_REGION) or "").strip() or DEFAULT_ROUTING_REGION
        if not _REGION.match(routing):
            raise _bad(ENV_ROUTING_REGION, routing, "must be a region name such as us-east")
        compute: tuple[str, ...] | None = None
        raw_compute = (env.get(ENV_COMPUTE_REGION) or "").strip()
        if raw_compute:
            compute = tuple(r.strip() for r in raw_compute.split(","))
            if not all(_REGION.match(r) for r in compute):
                raise _bad(ENV_COMPUTE_REGION, raw_compute, "must be comma-separated region names")

        return cls(
            profile=profile,
            entry=entry,
            image=image,
            gpu=gpu,
            gpu_count=profile.gpu_count,
            port=_int(env, ENV_PORT, launch.port, 1, 65535),
            weights_volume=_name(env, ENV_WEIGHTS_VOLUME, profile.weights_volume),
            dg_cache_volume=_name(env, ENV_DG_CACHE_VOLUME, profile.dg_cache_volume),
            api_key_secret=_name(env, ENV_API_KEY_SECRET, profile.api_key_secret),
            hf_secret=_name(env, ENV_HF_SECRET, profile.hf_secret),
            admin_key_secret=_name(env, ENV_ADMIN_KEY_SECRET, "") or None,
            startup_timeout_s=startup,
            supervisor_startup_timeout_s=startup - overhead,
            drain=drain,
            target_concurrency=target,
            max_concurrency=max_conc,
            min_containers=min_containers,
            max_containers=max_containers,
            scaledown_window_s=scaledown,
            routing_region=routing,
            compute_region=compute,
            proxy_auth=_bool(env, ENV_PROXY_AUTH, False),
            dummy_weights=dummy_weights_enabled(env),
            overrides=MappingProxyType(overrides),
            profile_file=profile_file,
        )

    # ------------------------------------------------------------------ views
    @property
    def gpu_spec(self) -> str:
        """Modal's GPU string, e.g. "B200:8"."""
        return f"{self.gpu}:{self.gpu_count}"

    @property
    def web_max_inputs(self) -> int:
        """`@modal.concurrent(max_inputs=...)`: it needs a number, so no cap means the target."""
        return self.max_concurrency or int(self.target_concurrency)

    def baked_env(self) -> dict[str, str]:
        """The variables a container needs to resolve these same settings when it imports the
        entry module again: the profile and every override given at deploy time."""
        if self.profile_file is not None:  # the file itself travels as PROFILE_FILE_MOUNT
            baked = {k: v for k, v in self.overrides.items() if k != ENV_PROFILE}
            return {**baked, ENV_PROFILE_FILE: PROFILE_FILE_MOUNT}
        return {**self.overrides, ENV_PROFILE: self.profile.name}

    def table(self) -> list[Setting]:
        """Every setting with its value, its variable and where the value came from."""
        d = self.drain
        regions = ",".join(self.compute_region) if self.compute_region else None
        routing = self.routing_region if self.entry == ENTRY_SERVER else None
        rows: list[tuple[str, object, str, bool]] = [  # name, value, variable, profile's?
            ("profile", self.profile.name, ENV_PROFILE, False),
            ("profile file", self.profile_file, ENV_PROFILE_FILE, False),
            ("entry", self.entry, ENV_ENTRY, False),
            ("image", self.image, ENV_IMAGE, False),
            ("gpu", self.gpu_spec, ENV_GPU, True),
            ("port", self.port, ENV_PORT, True),
            ("weights volume", self.weights_volume, ENV_WEIGHTS_VOLUME, True),
            ("DeepGEMM volume", self.dg_cache_volume, ENV_DG_CACHE_VOLUME, True),
            ("API-key secret", self.api_key_secret, ENV_API_KEY_SECRET, True),
            ("HF secret", self.hf_secret, ENV_HF_SECRET, True),
            (
                "admin-key secret",
                self.admin_key_secret or "none: random",
                ENV_ADMIN_KEY_SECRET,
                False,
            ),
            ("startup timeout s", self.startup_timeout_s, ENV_STARTUP_TIMEOUT, True),
            ("drain in-flight s", d.in_flight_s, ENV_DRAIN_IN_FLIGHT, False),
            ("exit grace s", d.exit_grace_s, ENV_DRAIN_IN_FLIGHT, False),
            ("target concurrency", self.target_concurrency, ENV_TARGET_CONCURRENCY, False),
            ("max concurrency", self.max_concurrency, ENV_MAX_CONCURRENCY, True),
            ("min containers", self.min_containers, ENV_MIN_CONTAINERS, False),
            ("max containers", self.max_containers, ENV_MAX_CONTAINERS, False),
            ("scaledown window s", self.scaledown_window_s, ENV_SCALEDOWN_WINDOW, False),
            ("routing region", routing, ENV_ROUTING_REGION, False),
            ("compute region", regions, ENV_COMPUTE_REGION, False),
            ("proxy auth", self.proxy_auth, ENV_PROXY_AUTH, False),
            ("dummy weights", self.dummy_weights, ENV_DUMMY_WEIGHTS, False),
        ]
        given = {k for k, v in self.overrides.items() if v.strip()}
        return [
            Setting(name, value, env, "env" if env in given else "profile" if mine else "default")
            for name, value, env, mine in rows
        ]

    def summary(self) -> str:
        """One line per setting, for the deploy log."""
        return "\n".join(
            f"[settings] {s.name}={s.value} ({s.source}; {s.env})" for s in self.table()
        )
