"""The one settings object. Every process reads configuration from here and nowhere else.

Values come from the environment (``REVLOOP_*``, plus the conventional ``KAFKA_BOOTSTRAP_SERVERS``,
``DATABASE_URL`` and ``SCHEMA_REGISTRY_URL``) or a ``.env`` file in the working directory.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self
from urllib.parse import quote, urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import Topic, prefixed

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _default_state_dir() -> Path:
    # An editable checkout keeps its stack beside the code; an installed copy uses the cwd.
    if (PACKAGE_ROOT / "pyproject.toml").exists():
        return PACKAGE_ROOT / ".revloop"
    return Path.cwd() / ".revloop"


def api_url(value: str) -> str:
    """A platform API's base URL: https, or http to a loopback address (an emulator); no
    credentials, query or fragment. It becomes every call's URL, so nothing else passes."""
    parts = urlsplit(value)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValueError(f"{value!r} must be https (http only to a loopback address)")
    if not host or parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{value!r} must be a plain base URL (no credentials, query or fragment)")
    return value.rstrip("/")


def optional_api_url(value: str | None) -> str | None:
    return None if value is None else api_url(value)


def _default_stores_file(data: dict[str, Any]) -> Path:
    state_dir: Path = data["state_dir"]
    return state_dir / "stores.json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="REVLOOP_", env_file=".env", extra="ignore", populate_by_name=True
    )

    state_dir: Path = Field(default_factory=_default_state_dir)

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "REVLOOP_KAFKA_BOOTSTRAP_SERVERS"),
    )
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "REVLOOP_DATABASE_URL")
    )
    schema_registry_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SCHEMA_REGISTRY_URL", "REVLOOP_SCHEMA_REGISTRY_URL"),
    )
    """A Confluent-compatible registry's API root (Apicurio's ends in ``/apis/ccompat/v7``);
    unset: the local stack's registry (``registry_port``)."""
    schema_ids: Literal["registry", "catalogue"] = "registry"
    """``REVLOOP_SCHEMA_IDS``: where schema ids come from. ``registry``: processes register or
    look up their schemas in the registry at start; ``catalogue``: the committed
    schemas/catalogue.json, for deployments without a registry. The two number schemas
    differently, so one cluster's topics use one of them only (docs/architecture.md)."""
    schema_auto_register: bool = True
    """Whether processes may register a schema version the registry lacks (False: look up only,
    for registries that only `revloop schemas register` writes to)."""

    topic_replication_factor: int = 1
    """1 for the single local broker; 3 in production."""
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]{0,100}$")
    """``REVLOOP_TOPIC_PREFIX``: prepended to every catalogue topic name, consumer group and
    transactional id, so several environments (or a benchmark run) share one cluster and
    nothing in it."""

    # The local stack (`revloop infra up`).
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "1g"
    kafka_jvm_options: str = ""
    """``REVLOOP_KAFKA_JVM_OPTIONS``: more options for the local broker's JVM (shell-quoted), after
    revloop's own, so they win; like ``KAFKA_OPTS`` for Kafka's start scripts."""
    kafka_lib_dir: Path | None = None
    """Where `infra up` copies the broker's jars; default ``<state_dir>/kafka/lib``.

    Several stacks (e.g. the tests' isolated one) may share one directory to resolve it once."""
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "revloop"
    postgres_password: SecretStr = SecretStr("revloop")
    postgres_db: str = "revloop"
    postgres_os_user: str = "postgres"
    """The OS account that runs the cluster when revloop runs as root (Postgres refuses root)."""
    postgres_bin_dir: Path = Path("/usr/lib/postgresql/15/bin")
    """Where initdb and pg_ctl live (Debian's ``postgresql-15`` package by default)."""
    registry_host: str = "127.0.0.1"
    registry_port: int = Field(default=8081, gt=0, le=65535)
    """The local schema registry's API (Apicurio Registry, Confluent-compatible)."""
    registry_management_port: int = Field(default=8082, gt=0, le=65535)
    """Its health and metrics endpoints (Quarkus's management interface)."""
    registry_db: str = "revloop_registry"
    """Its database in the local Postgres, where it keeps schemas and ids across restarts."""
    registry_heap: str = "256m"
    registry_java_home: Path | None = None
    """A JDK 21 or later for the registry (the broker's Java 17 is too old); unset: the newest
    under /usr/lib/jvm, or ``java`` on PATH if that is new enough."""
    registry_dist_dir: Path | None = None
    """Where `infra up` unpacks the registry; default ``<state_dir>/registry/dist``."""

    # Store credentials (`revloop stores`, docs/security.md).
    master_keys: SecretStr | None = None
    """``REVLOOP_MASTER_KEYS``: ``<id>:<base64 32 bytes>[,<id>:<base64>...]``, the first encrypts.

    The AES-256-GCM keys for stored webhook secrets; make one with ``revloop stores keygen``."""
    stores_file: Path = Field(default_factory=_default_stores_file)
    """The store registry (JSON, secrets encrypted); default ``<state_dir>/stores.json``."""
    stores_check_seconds: float = Field(
        default=1.0,
        gt=0,
        validation_alias=AliasChoices(
            "stores_check_seconds",
            "REVLOOP_STORES_CHECK_SECONDS",
            "REVLOOP_INGEST_STORES_CHECK_SECONDS",  # its name when only ingest read it
        ),
    )
    """How often ingest, the normalizer and the worker check the stores file for changes (a new
    store, a rotated key, a currency, a store's settings)."""
    stores_settings_lead_seconds: float = Field(default=60.0, ge=0)
    """How far ahead `revloop stores settings` puts a change's effective time by default, so
    every running worker has read it before events of that time arrive."""

    customer_key_salt: SecretStr | None = None
    """``REVLOOP_CUSTOMER_KEY_SALT``: the secret that turns emails into customer keys
    (revloop/privacy.py). Every process of one deployment must share it; changing it breaks
    every join between touchpoints and orders."""

    # Ingest (`revloop ingest`).
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8080
    ingest_max_body_bytes: int = 1 << 20
    ingest_ack_timeout_seconds: float = 2.0
    """How long a request waits for Kafka's ack before answering 503. Shopify gives up at 5 s."""
    ingest_body_timeout_seconds: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    """How long a request's whole body may take to arrive, from when ingest starts reading it; a
    slower one gets 408 and its connection is closed."""
    ingest_retry_after_seconds: int = Field(default=5, ge=0)
    """The ``Retry-After`` ingest sends with a 503 (Kafka did not ack in time)."""

    # Stream processes (`revloop normalize`, and every consume-transform-produce loop after it).
    kafka_call_timeout_seconds: float = Field(default=30.0, gt=0)
    """The timeout handed to each blocking transactional call (begin, send offsets, commit,
    abort) and to committed-offset and watermark look-ups."""
    watchdog_grace_seconds: float = Field(default=15.0, gt=0)
    """How far past its own timeout a guarded Kafka call may run before the watchdog ends the
    process (exit 75) for its supervisor to restart (revloop/watchdog.py)."""
    shutdown_seconds: float = Field(default=20.0, gt=0)
    """After SIGTERM, how long a process may take to finish its batch and close before it
    exits anyway (exit 143)."""
    stream_max_poll_interval_ms: int = Field(default=300_000, gt=0)
    """How long a loop may go between polls before the group gives its partitions away."""

    # The worker (`revloop worker`, docs/streams.md): the stateful processors on quixstreams.
    worker_group_id: str = "revloop.streams.worker"
    worker_commit_interval_seconds: float = Field(default=0.25, gt=0)
    """How often a worker commits its transaction: outputs become readable (read_committed) only
    then, so this bounds the latency from an inventory update to its pause."""
    worker_poll_timeout_seconds: float = Field(default=0.05, gt=0)
    """How long a worker waits for input before it checks whether a commit is due."""
    worker_session_timeout_ms: int = Field(default=45_000, gt=0)
    """With static membership a restarted instance takes its partitions back at once; a dead
    one keeps them this long before the group moves them to another instance."""
    worker_fetch_wait_max_ms: int = Field(default=10, gt=0)
    """How long a worker's fetch may wait for data at the broker. Requests on a connection are
    served in order, so this also bounds how long a lookup waits behind an idle fetch."""
    inventory_lateness_hours: float = Field(default=168.0, gt=0)
    """How late an inventory update may arrive and still count; older ones are settled away."""
    breaker_out_of_stock_at: int = 0
    """A product's ads pause when its total available falls to this or below."""
    breaker_restock_at: int = 1
    """They resume when the total is back at this or above (after the dwell)."""
    breaker_low_stock_below: int | None = None
    """A low-stock warning below this total (none by default)."""
    breaker_dwell_seconds: float = Field(default=300.0, ge=0)
    """The least time between a pause and its resume, in event time."""
    attribution_click_days: float = Field(default=30.0, gt=0)
    """Lookback windows per touch kind: how long before an order a touch still counts."""
    attribution_view_days: float = Field(default=1.0, gt=0)
    attribution_engaged_view_days: float = Field(default=3.0, gt=0)
    attribution_content_view_days: float = Field(default=7.0, gt=0)
    attribution_incremental_at_bp: int = Field(default=7000, ge=0, le=10_000)
    """An order is incremental at this confidence (basis points) or above."""
    attribution_model: Literal[
        "last_click", "first_click", "linear", "time_decay", "position_based"
    ] = "last_click"
    """How credit splits over the touches: last_click, first_click, linear, time_decay or
    position_based."""
    attribution_half_life_days: float = Field(default=7.0, gt=0)
    """The time_decay model's half-life."""
    attribution_holdout_bp: int = Field(default=0, ge=0, le=10_000)
    """The share of customers (basis points) held out as a control group; their scores are
    flagged ``holdout``."""
    billing_plan: Literal["attributed_incremental", "baseline_uplift", "roas_profit_share"] = (
        "attributed_incremental"
    )
    """What a store's contract bills on (revloop/billing.py, docs/ledger.md)."""
    billing_fee_bp: int = Field(default=2000, ge=0, le=10_000)
    """The success fee, in basis points of what the plan bills on (20%): the net incremental
    revenue, or the uplift over the baseline."""
    billing_growth_bp: int = Field(default=10_000, ge=0, le=1_000_000)
    """Baseline uplift: the factor the baseline monthly revenue is expected to grow by, in basis
    points (10000 = 1.0, 10500 = 1.05)."""
    billing_roas_share_bp: int = Field(default=1500, ge=0, le=10_000)
    """ROAS profit share: revloop's share of the revenue above the baseline ROAS (15%)."""
    billing_baseline_roas_bp: int = Field(default=30_000, ge=0, le=10_000_000)
    """ROAS profit share: the baseline ROAS of a store whose own is not in the stores table
    (`revloop stores baseline set --roas`), in basis points (30000 = 3.0)."""
    attribution_lateness_hours: float = Field(default=168.0, gt=0)
    """How long after an order its score may still be corrected by a late touchpoint, order or
    campaign link; touches older than the longest window plus this are dropped from state."""
    lifecycle_win_back_days: float = Field(default=60.0, gt=0)
    """A customer without an order for this long gets a win_back trigger."""
    lifecycle_churn_after_days: float = Field(default=30.0, gt=0)
    """When a repeat customer is checked for churn risk, after their last order."""
    lifecycle_churn_factor: int = Field(default=2, ge=1)
    """A repeat customer is at risk when that wait exceeds this many of their usual gaps."""
    lifecycle_lateness_hours: float = Field(default=24.0, ge=0)
    """How long a timer waits for out-of-order orders before it fires: win_back and churn_risk
    are emitted this much stream time after they fall due (their due_at is exact)."""

    # The normalizer (`revloop normalize`, docs/normalizer.md).
    normalizer_group_id: str = "revloop.ingest.normalizer"
    """Its consumer group (and transactional id base). The name predates the normalizer's move
    to streams/ and is kept: a new group would start from the raw topic's beginning."""
    normalizer_batch_size: int = Field(default=500, gt=0)
    """Raw records per transaction, at most."""
    normalizer_batch_wait_seconds: float = Field(default=0.5, gt=0)
    """How long a batch waits to fill before it is processed as it is. A delivery's canonical
    events are readable only after its batch commits, so this bounds most of the normalizer's
    latency (390 ms at p50 at 1,000 deliveries/s). 0.05 s did not lower the end-to-end latency
    on the 2-core machine, where every process competes for the CPU (docs/benchmarks.md)."""
    normalizer_session_timeout_ms: int = Field(default=45_000, gt=0)
    """How long a silent (e.g. killed) instance keeps its partitions before the group moves
    them."""
    normalizer_dedupe_window_hours: float = Field(default=72.0, gt=0)
    """How long a delivery's event ids are remembered: a platform retry within it is dropped.
    Shopify and BigCommerce retry for about 48 hours."""

    # The Postgres sink (`revloop sink postgres`, docs/sinks.md).
    sink_group_id: str = "revloop.sinks.postgres"
    """Its consumer group, and the key of its offsets in the ``kafka_offsets`` table."""
    sink_batch_size: int = Field(default=5000, gt=0)
    """Records per Postgres transaction, at most."""
    sink_poll_timeout_seconds: float = Field(default=0.2, gt=0)
    """How long a batch waits to fill before it is written as it is."""
    sink_session_timeout_ms: int = Field(default=45_000, gt=0)
    sink_webhook_log_days: float = Field(default=90.0, gt=0)
    """How long ``webhook_log`` keeps a delivery's row."""

    # The ad executors (`revloop connect ads`, docs/connectors.md).
    ads_group_id: str = "revloop.connect.ads"
    """Their consumer group on ``actions.circuit-breaker.v1``."""
    meta_api_url: Annotated[str, AfterValidator(api_url)] = "https://graph.facebook.com"
    """The Graph API's base (an emulator's on loopback in tests and the demo)."""
    meta_usage_window_seconds: float = Field(default=300.0, gt=0)
    """The window Meta's ad-account usage decays over: pacing waits up to this long."""
    google_ads_api_url: Annotated[str, AfterValidator(api_url)] = "https://googleads.googleapis.com"
    google_oauth_url: Annotated[str, AfterValidator(api_url)] = "https://oauth2.googleapis.com"
    """Where Google Ads access tokens are minted from a store's refresh token."""
    google_ads_requests_per_second: float = Field(default=5.0, gt=0)
    """How fast one executor calls Google Ads (Google sends no usage headers)."""
    connect_retry_attempts: int = Field(default=6, ge=1)
    """Tries of one platform call, the first included (docs/connectors.md)."""
    connect_backoff_cap_seconds: float = Field(default=30.0, gt=0)
    notify_allow_loopback: bool = False
    """Let notification URLs be http to a loopback address (tests and the demo only)."""

    # Store platform APIs (docs/connectors.md, "Store APIs"). The URL overrides send every
    # store's calls to one base instead of the store's own (an emulator, in tests and the demo).
    shopify_api_url: Annotated[str | None, AfterValidator(optional_api_url)] = None
    """Instead of ``https://{shop}.myshopify.com``."""
    woocommerce_api_url: Annotated[str | None, AfterValidator(optional_api_url)] = None
    """Instead of the store's site URL."""
    bigcommerce_api_url: Annotated[str, AfterValidator(api_url)] = "https://api.bigcommerce.com"
    woocommerce_requests_per_second: float = Field(default=5.0, gt=0)
    """How fast one process calls a WooCommerce site (WooCommerce sends no usage headers)."""
    # Onboarding (docs/connectors.md, "Onboarding"): the apps merchants install, served by ingest.
    public_url: Annotated[str | None, AfterValidator(optional_api_url)] = None
    """Where the platforms reach revloop: OAuth redirects and webhook addresses are built on it."""
    shopify_client_id: str | None = None
    shopify_client_secret: SecretStr | None = None
    """The app's client secret: it signs OAuth callbacks and every webhook of its shops."""
    shopify_scopes: str = "read_products,read_orders,read_customers,read_inventory,write_inventory"
    bigcommerce_client_id: str | None = None
    bigcommerce_client_secret: SecretStr | None = None
    """The app's client secret: it signs the load and uninstall callbacks and every webhook."""
    bigcommerce_login_url: Annotated[str, AfterValidator(api_url)] = "https://login.bigcommerce.com"
    """Where BigCommerce's codes are exchanged for tokens (an emulator's, in tests)."""
    oauth_state_seconds: int = Field(default=600, gt=0)
    """How long an install's state nonce stays good."""
    hydrator_group_id: str = "revloop.connect.hydrate"
    """`revloop connect hydrate`'s consumer group on ``ingest.hydration-requests.v1``."""
    hydrator_batch_size: int = Field(default=20, ge=1)
    """Requests per transaction: each may wait on a platform call, so batches stay small."""

    # Prometheus metrics: each long-running process serves /metrics on its own port (ingest on
    # its HTTP port); docs/operations.md. 0 turns a process's endpoint off; a port already in
    # use is logged and the process runs on without it.
    metrics_host: str = "127.0.0.1"
    """The address every process's /metrics listens on (0.0.0.0 for a Prometheus elsewhere)."""
    lag_exporter_port: int = Field(default=9400, ge=0, le=65535)
    """`revloop lag --serve`'s port when `revloop up` supervises it (``lag-exporter``)."""
    normalizer_metrics_port: int = Field(default=9401, ge=0, le=65535)
    worker_metrics_port: int = Field(default=9402, ge=0, le=65535)
    sink_metrics_port: int = Field(default=9403, ge=0, le=65535)
    hydrator_metrics_port: int = Field(default=9404, ge=0, le=65535)
    ads_metrics_port: int = Field(default=9405, ge=0, le=65535)
    reconcile_metrics_port: int = Field(default=9406, ge=0, le=65535)
    """`revloop reconcile --every`'s (a one-off run serves none)."""
    prometheus_port: int = Field(default=9090, gt=0, le=65535)
    """The optional local Prometheus (`revloop infra up --with-monitoring`)."""

    reconcile_every_seconds: int = Field(default=900, ge=0, le=99999)
    """How often `revloop up`'s ``reconcile`` compares every connected store with the pipeline
    (0: `revloop up` does not reconcile)."""

    # Supervisor (revloop up); see docs/operations.md.
    supervisor_backoff_initial_seconds: float = Field(default=1.0, gt=0)
    """The wait before restarting a process that died; it doubles with each quick death."""
    supervisor_backoff_max_seconds: float = Field(default=30.0, gt=0)
    """The longest wait between restarts."""
    supervisor_backoff_reset_seconds: float = Field(default=60.0, gt=0)
    """A process that stayed up this long starts its next backoff from the initial wait."""
    supervisor_stop_grace_seconds: float = Field(default=30.0, gt=0)
    """How long `revloop down` gives the processes after SIGTERM before SIGKILL; above
    ``shutdown_seconds``, so a process that stops by its own deadline is never killed."""
    supervisor_start_timeout_seconds: float = Field(default=60.0, gt=0)
    """How long `revloop up` waits for every process to run (and ingest to answer /readyz)."""

    @model_validator(mode="after")
    def _breaker_thresholds_in_order(self) -> Self:
        if self.breaker_restock_at <= self.breaker_out_of_stock_at:
            raise ValueError("breaker_restock_at must be above breaker_out_of_stock_at")
        low = self.breaker_low_stock_below
        if low is not None and low <= self.breaker_out_of_stock_at:
            raise ValueError("breaker_low_stock_below must be above breaker_out_of_stock_at")
        return self

    def for_store(self, overrides: Mapping[str, Any]) -> Settings:
        """These settings with one store's own values (``STORE_SETTINGS`` only), validated as a
        whole: a store's restock threshold must still be above its out-of-stock one."""
        unknown = set(overrides) - STORE_SETTINGS
        if unknown:
            raise ValueError(
                f"not settable per store: {', '.join(sorted(unknown))} "
                f"(these are: {', '.join(sorted(STORE_SETTINGS))})"
            )
        if not overrides:
            return self
        try:
            return type(self).model_validate({**self.model_dump(), **overrides})
        except ValidationError as exc:  # its message quotes every setting: name the faults only
            faults = "; ".join(
                ": ".join(filter(None, (".".join(map(str, e["loc"])), _plain(e["msg"]))))
                for e in exc.errors()
            )
            raise ValueError(faults) from None

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"{self.kafka_host}:{self.kafka_port}"

    @property
    def dsn(self) -> str:
        """A libpq/psycopg connection string (secret: never log it)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        user = quote(self.postgres_user, safe="")
        password = quote(self.postgres_password.get_secret_value(), safe="")
        return (
            f"postgresql://{user}:{password}"
            f"@{self.postgres_host}:{self.postgres_port}/{quote(self.postgres_db, safe='')}"
        )

    @property
    def topics(self) -> tuple[Topic, ...]:
        """The topic catalogue as this deployment names it (with ``topic_prefix``)."""
        return prefixed(self.topic_prefix)

    def topic_name(self, catalogued: Topic) -> str:
        return self.topic_prefix + catalogued.name

    @property
    def customer_salt(self) -> bytes:
        if self.customer_key_salt is None or not self.customer_key_salt.get_secret_value():
            raise ValueError(
                "REVLOOP_CUSTOMER_KEY_SALT is not set "
                "(any long random string, e.g. `openssl rand -base64 32`)"
            )
        return self.customer_key_salt.get_secret_value().encode()

    @property
    def registry_url(self) -> str | None:
        """The registry every process uses; None in ``catalogue`` mode."""
        if self.schema_ids == "catalogue":
            return None
        return self.schema_registry_url or (
            f"http://{self.registry_host}:{self.registry_port}/apis/ccompat/v7"
        )

    @property
    def uses_local_stack(self) -> bool:
        return self.kafka_bootstrap_servers is None and self.database_url is None


def _plain(message: str) -> str:
    return message.removeprefix("Value error, ")


STORE_SETTINGS: Final = frozenset(
    {
        "breaker_out_of_stock_at",
        "breaker_restock_at",
        "breaker_low_stock_below",
        "breaker_dwell_seconds",
        "attribution_click_days",
        "attribution_view_days",
        "attribution_engaged_view_days",
        "attribution_content_view_days",
        "attribution_incremental_at_bp",
        "attribution_model",
        "attribution_half_life_days",
        "attribution_holdout_bp",
        "billing_plan",
        "billing_fee_bp",
        "billing_growth_bp",
        "billing_roas_share_bp",
    }
)
"""The settings a store may set for itself (`revloop stores settings`, docs/streams.md); the
values above are the defaults of every store that does not."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
