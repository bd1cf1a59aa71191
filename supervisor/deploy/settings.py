"""Deploy-time settings of a server deployment: plain data, resolved from a profile and the env.

Why a module of its own: the values that decide a deployment's shape (GPUs, volumes, startup and
exit budgets, autoscaling, regions, proxy auth, dummy weights) come from the profile, and an
operator changes them at deploy time with environment variables, never by editing code. Resolving
them here, without importing any platform, makes every rule testable offline and gives one
`ConfigError` line per bad value, naming the variable. The platform binding (`modal_entry.py`)
only passes the resolved values to its decorators, and bakes `baked_env()` into the image so that
a container, importing the same module, resolves exactly the same settings.

The pieces it resolves from live in their own modules: the variables' names and parsers
(`env_vars`), the defaults and Modal's limits (`defaults`), the drain budget (`drain`) and the
dummy-weights switch (`dummy_weights`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from supervisor import ConfigError
from supervisor.deploy.defaults import (
    DEFAULT_MAX_CONTAINERS,
    DEFAULT_MIN_CONTAINERS,
    DEFAULT_PROFILE,
    DEFAULT_ROUTING_REGION,
    DEFAULT_SCALEDOWN_WINDOW_S,
    DEFAULT_TARGET_CONCURRENCY,
    DG_MOUNT,
    ENTER_MARGIN_S,
    KNOWN_GPUS,
    MAX_TIMEOUT_S,
    MODEL_MOUNT,
)
from supervisor.deploy.drain import (
    DEFAULT_DRAIN_IN_FLIGHT_S,
    WEB_SERVER_EXIT_GRACE_S,
    DrainBudget,
)
from supervisor.deploy.dummy_weights import dummy_weights_enabled
from supervisor.deploy.env_vars import (
    ENTRIES,
    ENTRY_SERVER,
    ENTRY_WEB_SERVER,
    ENV_ADMIN_KEY_SECRET,
    ENV_API_KEY_SECRET,
    ENV_COMPUTE_REGION,
    ENV_DG_CACHE_VOLUME,
    ENV_DRAIN_IN_FLIGHT,
    ENV_DUMMY_WEIGHTS,
    ENV_ENTRY,
    ENV_GPU,
    ENV_HF_SECRET,
    ENV_IMAGE,
    ENV_MAX_CONCURRENCY,
    ENV_MAX_CONTAINERS,
    ENV_MEMORY_HIGH,
    ENV_MIN_CONTAINERS,
    ENV_PORT,
    ENV_PROFILE,
    ENV_PROFILE_FILE,
    ENV_PROXY_AUTH,
    ENV_ROUTING_REGION,
    ENV_SCALEDOWN_WINDOW,
    ENV_STARTUP_TIMEOUT,
    ENV_TARGET_CONCURRENCY,
    ENV_WEIGHTS_VOLUME,
    PROFILE_FILE_MOUNT,
    SETTINGS_ENV,
    bad_value,
    env_bool,
    env_int,
    env_name,
)
from supervisor.engines.image import default_image
from supervisor.lowlevel import parse_size
from supervisor.profiles import Profile, get_profile, profile_names
from supervisor.profiles.files import load_profile_file

__all__ = ["DeploySettings", "Setting"]

_REGION = re.compile(r"^[a-z0-9-]{2,40}$")
_POSITIVE = "must be a number > 0"


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
    #: The planned-recycle mark in bytes (`ENV_MEMORY_HIGH`); None: the cgroup's 90 %.
    memory_high_bytes: int | None = None
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
                raise bad_value(ENV_PROFILE, raw_profile, f"set it or {ENV_PROFILE_FILE}, not both")
            try:
                profile = load_profile_file(profile_file)
            except ConfigError as exc:
                raise ConfigError(f"{ENV_PROFILE_FILE}: {exc}") from None
        elif raw_profile not in profile_names():
            raise bad_value(
                ENV_PROFILE, raw_profile, f"unknown profile; choose one of {profile_names()}"
            )
        else:
            profile = get_profile(raw_profile)
        launch = profile.launch

        entry = (env.get(ENV_ENTRY) or ENTRY_SERVER).strip()
        if entry not in ENTRIES:
            raise bad_value(ENV_ENTRY, entry, f"must be one of {list(ENTRIES)}")
        web = entry == ENTRY_WEB_SERVER
        nodes = launch.nnodes
        if web and nodes > 1:
            raise bad_value(
                ENV_ENTRY,
                entry,
                f"profile {profile.name} runs on {nodes} nodes: a cluster serves only through "
                "@app.server (Modal has no clustered web endpoints); unset it",
            )

        image = (env.get(ENV_IMAGE) or "").strip() or default_image()
        if any(c.isspace() for c in image):
            raise bad_value(ENV_IMAGE, image, "an image reference has no whitespace")

        gpu = (env.get(ENV_GPU) or "").strip() or profile.gpu
        if gpu not in KNOWN_GPUS:
            raise bad_value(ENV_GPU, gpu, f"unknown GPU type; use one of {sorted(KNOWN_GPUS)}")

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
        startup = env_int(env, ENV_STARTUP_TIMEOUT, default_startup, overhead + 1, MAX_TIMEOUT_S)

        if web:
            if env.get(ENV_DRAIN_IN_FLIGHT, "").strip():
                raise bad_value(
                    ENV_DRAIN_IN_FLIGHT,
                    env[ENV_DRAIN_IN_FLIGHT],
                    f"only the server entry has a configurable drain; @modal.exit on the "
                    f"web_server entry has Modal's fixed {WEB_SERVER_EXIT_GRACE_S} s",
                )
            if env.get(ENV_ROUTING_REGION, "").strip():
                raise bad_value(
                    ENV_ROUTING_REGION,
                    env[ENV_ROUTING_REGION],
                    "a routing region is a Modal Servers feature: unset it or use the server entry",
                )
            drain = DrainBudget.derive(0)
        else:
            longest = DrainBudget.longest_in_flight()  # Modal refuses an exit grace above 3600 s
            in_flight = env_int(env, ENV_DRAIN_IN_FLIGHT, DEFAULT_DRAIN_IN_FLIGHT_S, 0, longest)
            drain = DrainBudget.derive(in_flight)

        raw_target = env.get(ENV_TARGET_CONCURRENCY, "").strip()
        target = DEFAULT_TARGET_CONCURRENCY
        if raw_target:
            try:
                target = float(raw_target)
            except ValueError:
                raise bad_value(
                    ENV_TARGET_CONCURRENCY, raw_target, "must be a number > 0"
                ) from None
            if not (math.isfinite(target) and target > 0):
                raise bad_value(ENV_TARGET_CONCURRENCY, raw_target, "must be a number > 0")
            if web and not target.is_integer():
                raise bad_value(
                    ENV_TARGET_CONCURRENCY,
                    raw_target,
                    "@modal.concurrent takes a whole number; fractions need the server entry",
                )
        profile_max = launch.max_running_requests
        max_conc: int | None = (
            env_int(env, ENV_MAX_CONCURRENCY, profile_max or 0, 0, 100_000) or None
        )
        if max_conc is not None and target > max_conc:
            raise ConfigError(
                f"{ENV_TARGET_CONCURRENCY}={target:g} exceeds {ENV_MAX_CONCURRENCY}={max_conc}: "
                "the autoscaler would wait for a load that is refused"
            )

        # Modal counts a cluster's containers one by one: the defaults are per replica (one
        # cluster), and an override must be a whole number of clusters.
        min_containers = env_int(env, ENV_MIN_CONTAINERS, DEFAULT_MIN_CONTAINERS * nodes, 0, 1000)
        max_containers = env_int(env, ENV_MAX_CONTAINERS, DEFAULT_MAX_CONTAINERS * nodes, 1, 1000)
        for name, value in (
            (ENV_MIN_CONTAINERS, min_containers),
            (ENV_MAX_CONTAINERS, max_containers),
        ):
            if value % nodes:
                raise bad_value(
                    name,
                    str(value),
                    f"must be a multiple of the cluster size {nodes} (one per node)",
                )
        if min_containers > max_containers:
            raise ConfigError(
                f"{ENV_MIN_CONTAINERS}={min_containers} exceeds "
                f"{ENV_MAX_CONTAINERS}={max_containers}"
            )
        scaledown = env_int(env, ENV_SCALEDOWN_WINDOW, DEFAULT_SCALEDOWN_WINDOW_S, 2, 3600)

        routing = (env.get(ENV_ROUTING_REGION) or "").strip() or DEFAULT_ROUTING_REGION
        if not _REGION.match(routing):
            raise bad_value(ENV_ROUTING_REGION, routing, "must be a region name such as us-east")
        compute: tuple[str, ...] | None = None
        raw_compute = (env.get(ENV_COMPUTE_REGION) or "").strip()
        if raw_compute:
            compute = tuple(r.strip() for r in raw_compute.split(","))
            if not all(_REGION.match(r) for r in compute):
                raise bad_value(
                    ENV_COMPUTE_REGION, raw_compute, "must be comma-separated region names"
                )

        return cls(
            profile=profile,
            entry=entry,
            image=image,
            gpu=gpu,
            gpu_count=profile.gpu_count,
            port=env_int(env, ENV_PORT, launch.port, 1, 65535),
            weights_volume=env_name(env, ENV_WEIGHTS_VOLUME, profile.weights_volume),
            dg_cache_volume=env_name(env, ENV_DG_CACHE_VOLUME, profile.dg_cache_volume),
            api_key_secret=env_name(env, ENV_API_KEY_SECRET, profile.api_key_secret),
            hf_secret=env_name(env, ENV_HF_SECRET, profile.hf_secret),
            admin_key_secret=env_name(env, ENV_ADMIN_KEY_SECRET, "") or None,
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
            proxy_auth=env_bool(env, ENV_PROXY_AUTH, False),
            dummy_weights=dummy_weights_enabled(env),
            memory_high_bytes=_memory_high(env),
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
            ("memory high bytes", self.memory_high_bytes, ENV_MEMORY_HIGH, False),
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


def _memory_high(env: Mapping[str, str]) -> int | None:
    raw = (env.get(ENV_MEMORY_HIGH) or "").strip()
    if not raw:
        return None
    try:
        return parse_size(raw)
    except ConfigError as exc:
        raise bad_value(ENV_MEMORY_HIGH, raw, f"a size like 40G or 300M ({exc})") from None
