"""Settings: every knob is a DOCSIFT_* environment variable (or a line in `.env`)."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class ModelConfig(BaseSettings):
    """An operator-configured LLM: a public name mapped to a LiteLLM model string."""

    name: str
    litellm_model: str
    api_base: str | None = None
    api_key: str | None = None
    credits_per_page: int = 1
    # Name of a HuggingFace-style tokenizer.json or "tiktoken:<encoding>"; None = probe at runtime.
    tokenizer: str | None = None
    supports_logprobs: bool = True
    # How scores are read (README "Confidence"): auto = logprobs, and a JSON distribution
    # ("verbalized") while the model answers without them; or one method forced.
    confidence_method: Literal["auto", "logprobs", "verbalized", "sampling"] = "auto"
    # Send a JSON schema (response_format) with JSON answers; off for servers that reject it.
    structured_output: bool = True
    # False for chat templates without a system role (Gemma): LiteLLM folds the system prompt
    # into the first user message instead of the server silently dropping it.
    supports_system_message: bool = True
    input_cost_per_million: float | None = None
    output_cost_per_million: float | None = None
    # Page images (input_mode image, text+image, auto): None = what LiteLLM's model data says.
    supports_vision: bool | None = None
    # Detail page images are sent at while the image budget allows (then low, see
    # backends/llm/images.fit_images).
    image_detail: Literal["low", "high"] = "high"
    # Credits for a page sent as an image; None = derived from LiteLLM's prices (images.py).
    credits_per_image_page: int | None = None
    # What the model reads when neither the request nor the classifier version says: text,
    # image, text+image, or auto (images for pages without a text layer on a vision model,
    # text otherwise, so auto suits any model).
    input_mode: Literal["text", "image", "text+image", "auto"] = "text"

    @model_validator(mode="after")
    def _images_need_vision(self) -> "ModelConfig":
        """A default that sends images to a model that cannot take them would fail every
        request that relies on it: refuse it when the settings load, naming the fix."""
        if self.input_mode in ("image", "text+image") and not self.takes_images:
            why = (
                "its supports_vision is false"
                if self.supports_vision is False
                else f"LiteLLM's model data gives {self.litellm_model} no supports_vision"
            )
            raise ValueError(
                f"DOCSIFT_MODELS: model '{self.name}' has input_mode '{self.input_mode}' but "
                f"does not take images ({why}): set supports_vision true if it does, or "
                "input_mode text or auto"
            )
        return self

    @property
    def takes_images(self) -> bool:
        """`supports_vision` when set, else what LiteLLM's model data says."""
        if self.supports_vision is not None:
            return self.supports_vision
        # Imported here: the module reads LiteLLM's JSON without importing LiteLLM, and the
        # backends package imports this one.
        from backend.backends.llm.images import supports_vision

        return supports_vision(self.litellm_model)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DOCSIFT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite:///./data/docsift.db"
    # PostgreSQL connections per API process: pool_size kept open, up to max_overflow more under
    # load. N processes need N x (both) + the workers' below the server's max_connections.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=40, ge=0)
    # A pooled PostgreSQL connection idle longer than this is pinged before use (pool_pre_ping
    # for idle ones only: pinging each checkout was two round trips of a classification).
    db_ping_idle_seconds: float = Field(default=10.0, ge=0)
    # POST /v1/classify's own psycopg pool (backend/classification/fastpath/postgres.py): two
    # short statements a request, so a few connections serve hundreds of requests at once.
    db_classify_pool_size: int = Field(default=10, ge=1)
    storage_dir: Path = Path("./data/files")
    prompts_dir: Path = REPO_ROOT / "prompts"

    # Models. Empty default_model means: gpt-4o-mini when OPENAI_API_KEY is set, else `local`.
    default_model: str = ""
    # JSON list of extra ModelConfig objects, e.g. an Ollama/vLLM/llama.cpp server.
    models: list[ModelConfig] = Field(default_factory=list)
    # Credits per page by model name, overriding a model's default, e.g. {"gpt-4o": 5}.
    credits_per_page: dict[str, int] = Field(default_factory=dict)
    local_credits_per_page: int = 1
    model_timeout_seconds: float = 30.0
    model_max_retries: int = 3
    # First backoff between retries (doubles each time, with jitter) unless Retry-After says.
    model_backoff_seconds: float = 0.5
    model_total_timeout_seconds: float = 60.0
    max_prompt_tokens: int = 3000
    # Page (and example) image tokens one model call may carry, as the provider bills them:
    # a Letter page at high detail is 765 on gpt-4o, 25,501 on gpt-4o-mini (LiteLLM's formula).
    max_image_tokens: int = 30_000
    # Credits per image page by model name, overriding the model's (see ModelConfig).
    credits_per_image_page: dict[str, int] = Field(default_factory=dict)
    top_logprobs: int = 20
    # A model seen answering without logprobs is asked for a JSON distribution instead, and
    # asked for logprobs again after this many seconds (never stuck by one answer).
    logprobs_reprobe_seconds: float = 300.0
    # POST /v1/split: a segment whose boundary_confidence is below this is flagged `review`.
    split_review_threshold: float = Field(default=0.8, ge=0.0, le=1.0)

    # Limits.
    max_upload_mb: float = 20.0
    max_pages: int = 500
    max_zip_entries: int = 200
    max_zip_uncompressed_mb: float = 200.0
    max_image_pixels: int = 50_000_000
    max_labels: int = 100
    max_label_chars: int = 100
    max_description_chars: int = 2000
    ocr_enabled: bool = True
    # Tesseract languages ("eng", "eng+fra"), or "auto": English, and a page English reads
    # poorly is read again with each installed non-Latin script (documents/ocr.py).
    ocr_language: str = "auto"
    ocr_dpi: int = 200
    min_text_chars: int = 20
    # OCR worker processes (0 = one per CPU core).
    ocr_workers: int = 0
    # Office files are converted to PDF by LibreOffice on the task queue, one at a time per
    # process: its soffice.bin ("" = found on PATH or in /usr/lib/libreoffice), and the seconds
    # one conversion may take before its processes are killed and the document fails.
    libreoffice_path: str = ""
    conversion_timeout_seconds: float = Field(default=120.0, gt=0)
    # Parts an OOXML/OpenDocument container may hold (their expanded size is capped by
    # max_zip_uncompressed_mb).
    max_office_parts: int = 10_000
    # E-mails: attachments one upload may hold, nested e-mails included (more: 413), how deep
    # e-mails may be nested in e-mails (deeper ones become failed children), and inline images
    # smaller than this many bytes (logos, signatures) are not documents.
    max_email_attachments: int = Field(default=100, ge=1)
    max_email_depth: int = Field(default=3, ge=1)
    email_min_inline_image_bytes: int = 20_000

    # Rate limit per API key: requests per minute (0 = off).
    rate_limit_per_minute: int = 600
    # Where rate-limit counters live: "database" (the DocSift database, shared by every process),
    # memory:// (one process) or a Redis/Memcached URI. Empty: database on PostgreSQL, else memory.
    rate_limit_storage: str = ""

    # Queue workers (Procrastinate). On SQLite the API process always runs the jobs itself
    # (single-machine mode); on PostgreSQL they go to `docsift worker` processes, and
    # embedded_worker=true makes each API process run a worker too.
    embedded_worker: bool = False
    worker_concurrency: int = Field(default=10, ge=1, le=200)
    # A worker sends a heartbeat this often; one silent for worker_stalled_seconds is taken for
    # dead and its jobs are retried by another (checked every worker_recover_seconds, 1-59).
    worker_heartbeat_seconds: float = Field(default=10.0, gt=0)
    worker_stalled_seconds: float = Field(default=30.0, gt=0)
    worker_recover_seconds: int = Field(default=10, ge=1, le=59)
    # Seconds a stopping worker waits for its running jobs before aborting them (they are retried).
    worker_shutdown_seconds: float = 30.0
    # A batch item whose job died this many times is marked failed instead of retried again.
    batch_max_attempts: int = Field(default=5, ge=1)

    # Webhooks: per-request timeout, attempts per event, first backoff (doubles, with jitter, up
    # to webhook_max_backoff_seconds).
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_backoff_seconds: float = 2.0
    webhook_max_backoff_seconds: float = 600.0
    # Refuse webhook URLs whose host is a loopback, private or link-local address.
    webhook_block_private_networks: bool = False

    # Human review: results under this confidence go to the review queue unless a classifier's
    # review policy says otherwise (0.7 is the usual default of review tools).
    review_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    # Background training of a classifier's `local` model waits until its examples stopped
    # changing for this long, so many corrections in a row make one training.
    training_debounce_seconds: float = Field(default=5.0, ge=0.0)

    api_key_prefix: str = "dsk_"
    # API-key lookups are cached per process this long (0: off); a key revoked in another
    # process is refused here at most this long after (see backend/accounts/keycache.py).
    api_key_cache_seconds: float = Field(default=5.0, ge=0)
    # Keys' last_used_at is written in one batch this often (and when the process stops).
    api_key_last_used_flush_seconds: float = Field(default=10.0, gt=0)

    # Data protection (README "Data protection"). Documents older than their retention (account
    # retention_days, or a classifier's) are erased by the periodic job on this cron (5 fields).
    retention_cron: str = "17 * * * *"
    # Encrypts stored files, renditions and page images (AES-256-GCM): a base64 32-byte key, or
    # several comma-separated, newest first (older ones only decrypt, for rotation). Empty: off.
    encryption_key: str = ""
    # Which backend serves a model name that several installed backends declare, e.g.
    # {"gpt-4o": "litellm"}; without it such a name stops the server from starting.
    model_backends: dict[str, str] = Field(default_factory=dict)

    log_json: bool = True
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql", "postgres"))

    @property
    def runs_embedded_worker(self) -> bool:
        return self.embedded_worker or not self.is_postgres

    @property
    def resolved_rate_limit_storage(self) -> str:
        if self.rate_limit_storage:
            return self.rate_limit_storage
        return "database" if self.is_postgres else "memory://"

    @property
    def resolved_default_model(self) -> str:
        import os

        if self.default_model:
            return self.default_model
        return "gpt-4o-mini" if os.environ.get("OPENAI_API_KEY") else "local"


@lru_cache
def get_settings() -> Settings:
    return Settings()
