"""SQLModel tables. Money (ledger) and classifier versions are append-only rows.

Ids are UUID strings except the ledger's, whose integer order is the audit order. Every row an
account owns carries `account_id`; queries filter on it so tenants never see each other.
"""

import copy
import functools
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic_core import PydanticUndefined
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import configure_mappers
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC timestamps on every database (SQLite returns naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


_Row = TypeVar("_Row", bound=SQLModel)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kw)


def _json(**kw: Any) -> Any:
    return Field(default=None, sa_column=Column(JSON, **kw))


class Account(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    name: str
    # `balance` always equals the sum of this account's ledger rows (changed only beside an insert).
    balance: int = Field(default=0, sa_type=BigInteger)
    # Credits held by classifications in flight: available = balance - reserved.
    reserved: int = Field(default=0, sa_type=BigInteger)
    webhook_url: str | None = None
    webhook_secret: str | None = None
    # Days files, page text and page images are kept (None: forever); see backend/retention.py.
    retention_days: int | None = None
    created_at: datetime = _ts()


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: str = Field(default_factory=new_id, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    name: str = "default"
    # The first characters of the key, shown in listings so a user can tell keys apart.
    display_prefix: str
    key_hash: str = Field(unique=True, index=True)
    is_admin: bool = False
    # backend/accounts/scopes.py; None: a key from before scopes (everything it could do then).
    scopes: list[str] | None = _json()
    # Only these classifiers (None: all of the account's).
    classifier_ids: list[str] | None = _json()
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _ts()
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class LedgerEntry(SQLModel, table=True):
    """One credit movement. Never updated, never deleted."""

    __tablename__ = "ledger_entry"
    __table_args__ = (UniqueConstraint("request_id", "kind", name="uq_ledger_request_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    amount: int = Field(sa_type=BigInteger)  # + grant/refund, - debit
    kind: str  # grant | debit | refund | adjustment
    request_id: str | None = Field(default=None, index=True)
    model: str | None = None
    pages: int | None = None
    note: str | None = None
    created_at: datetime = _ts(index=True)


class CreditReservation(SQLModel, table=True):
    """Credits held while a classification runs; removed when it is charged or fails."""

    __tablename__ = "credit_reservation"

    request_id: str = Field(primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    amount: int = Field(sa_type=BigInteger)
    created_at: datetime = _ts()


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("account_id", "key", name="uq_idempotency_account_key"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    key: str
    endpoint: str
    request_hash: str
    status_code: int | None = None
    response: dict[str, Any] | None = _json()
    created_at: datetime = _ts()


class Document(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    filename: str  # display only: files are stored under the document id
    content_type: str
    kind: str  # pdf | image | text | office | email | html
    size_bytes: int
    sha256: str
    storage_path: str  # the file as uploaded
    # What pages are read and rendered from when the upload is not a PDF, image or text itself:
    # an Office file's PDF from LibreOffice, an e-mail's or HTML page's readable text.
    rendition_path: str | None = None
    rendition_type: str | None = None  # its content type (application/pdf or text/plain)
    num_pages: int = 0
    # uploaded | processing (being converted) | processed | failed
    status: str = Field(default="uploaded", index=True)
    error: str | None = None
    # A split segment's source, or the e-mail an attachment came from.
    parent_document_id: str | None = Field(default=None, index=True)
    created_at: datetime = _ts(index=True)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Page(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("document_id", "page_number", name="uq_page_number"),)

    id: int | None = Field(default=None, primary_key=True)
    document_id: str = Field(foreign_key="document.id", index=True)
    page_number: int  # 1-based
    text: str = Field(default="", sa_column=Column(Text))
    chars: int = 0
    ocr: bool = False
    # No text layer and OCR not run yet (uploaded with ocr=on_demand): a text request runs it.
    ocr_pending: bool = False
    width: float | None = None
    height: float | None = None


class Classifier(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    name: str
    description: str | None = None
    latest_version: int = 1
    # Overrides the account's retention for documents this classifier has run on.
    retention_days: int | None = None
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ClassifierVersion(SQLModel, table=True):
    """An immutable snapshot of what decides a classifier's results."""

    __tablename__ = "classifier_version"
    __table_args__ = (UniqueConstraint("classifier_id", "version", name="uq_classifier_version"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    classifier_id: str = Field(foreign_key="classifier.id", index=True)
    version: int
    classification_schema: list[dict[str, str]] = Field(sa_column=Column(JSON, nullable=False))
    query_model: str | None = None
    page_range: str | None = None
    instructions: str | None = Field(default=None, sa_column=Column(Text))
    # Modes that differ from the defaults (backend/classification/spec.py); None: all defaults.
    modes: dict[str, Any] | None = _json()
    # When a result goes to human review: {"threshold": t} or {"target_accuracy": a}
    # (backend/reviews/policy.py); None: the server's default threshold.
    review_policy: dict[str, Any] | None = _json()
    created_at: datetime = _ts()


class Example(SQLModel, table=True):
    """A labelled document: few-shot context for LLMs, training data for `local`."""

    id: str = Field(default_factory=new_id, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    classifier_id: str = Field(foreign_key="classifier.id", index=True)
    document_id: str = Field(foreign_key="document.id", index=True)
    label: str
    # The document's text when it was labelled, so training never depends on a deleted file.
    text: str = Field(default="", sa_column=Column(Text))
    # "api" (added directly) or "review" (a person's decision on the result `request_id`).
    source: str = "api"
    request_id: str | None = None
    created_at: datetime = _ts()
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TrainedModel(SQLModel, table=True):
    """A `local` model trained on one classifier's examples (keyed by their fingerprint)."""

    __tablename__ = "trained_model"
    __table_args__ = (
        UniqueConstraint("classifier_id", "version", "examples_hash", name="uq_trained_model"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    classifier_id: str = Field(foreign_key="classifier.id", index=True)
    version: int
    examples_hash: str
    num_examples: int
    artifact: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    metrics: dict[str, Any] | None = _json()
    # The examples it was trained on (set by background training; the model itself is stored
    # by the backend under "classifier:version:examples_hash"), so it can serve until a newer
    # set's model is ready. None: an accuracy estimate only.
    example_ids: list[str] | None = _json()
    created_at: datetime = _ts()


class Classification(SQLModel, table=True):
    """One run over one document (classify, classifier run, split, or an evaluation item)."""

    id: str = Field(default_factory=new_id, primary_key=True)  # the request_id
    account_id: str = Field(foreign_key="account.id", index=True)
    document_id: str = Field(foreign_key="document.id", index=True)
    kind: str = "classify"  # classify | classifier_run | split | evaluation
    classifier_id: str | None = Field(default=None, index=True)
    classifier_version: int | None = None
    evaluation_id: str | None = Field(default=None, index=True)
    model: str
    classification_schema: list[dict[str, str]] = Field(sa_column=Column(JSON, nullable=False))
    page_range: str | None = None
    pages_used: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    classification: str | None = Field(default=None, index=True)
    confidence_scores: dict[str, float] | None = _json()
    confidence_method: str | None = None
    result: dict[str, Any] | None = _json()  # kind-specific extras, e.g. split segments
    request_status: str = "completed"
    credits_used: int = 0
    num_pages: int = 0
    duration: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Of the prompt tokens, those of page images (LiteLLM's per-provider formula).
    image_tokens: int = 0
    image_pages: list[int] | None = _json()  # pages the model got as images
    cost_usd: float | None = None
    examples_hash: str | None = None
    modes: dict[str, Any] | None = _json()
    # pending (confidence under the threshold) | auto_accepted | reviewed; None: not reviewable
    # (evaluation items). `review` keeps the threshold used and the person's decision beside
    # the original result, which is never changed.
    review_status: str | None = Field(default=None, index=True)
    review: dict[str, Any] | None = _json()
    created_at: datetime = _ts(index=True)


def built_row(table: type[_Row], /, **values: Any) -> _Row:
    """A new table row from complete values, built the way SQLAlchemy builds a row it reads:
    no per-field change events (a classify request builds one: 16 us instead of 80). Unset
    fields take their defaults; like the constructor of a table model, nothing is validated.
    The row inserts as usual when added to a session."""
    row = table._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    fields = row.__dict__  # SQLAlchemy keeps a row's values in its __dict__
    for name, default, factory in _defaults(table):
        if name in values:
            fields[name] = values[name]
        elif factory is not None:
            fields[name] = factory()
        elif default is PydanticUndefined:
            raise TypeError(f"{table.__name__} needs a value for {name}")
        else:
            fields[name] = copy.deepcopy(default)
    return row


@functools.cache
def _defaults(table: type[SQLModel]) -> list[tuple[str, Any, Any]]:
    """(field, default, default factory) of each field of a table model."""
    configure_mappers()  # as the constructor would: attribute access needs configured mappers
    return [(name, f.default, f.default_factory) for name, f in table.model_fields.items()]


class Evaluation(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    name: str | None = None
    classifier_id: str | None = None
    classifier_version: int | None = None
    classification_schema: list[dict[str, str]] = Field(sa_column=Column(JSON, nullable=False))
    query_model: str
    modes: dict[str, Any] | None = _json()
    status: str = "queued"  # queued | running | completed | failed
    total: int = 0
    done: int = 0
    credits_estimate: int = 0
    metrics: dict[str, Any] | None = _json()
    error: str | None = None
    created_at: datetime = _ts(index=True)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EvaluationItem(SQLModel, table=True):
    __tablename__ = "evaluation_item"

    id: str = Field(default_factory=new_id, primary_key=True)
    evaluation_id: str = Field(foreign_key="evaluation.id", index=True)
    position: int
    document_id: str
    expected_label: str
    # multi_label evaluations: every label the document is (expected_label: the first, or "").
    expected_labels: list[str] | None = _json()
    predicted_label: str | None = None
    confidence_scores: dict[str, float] | None = _json()
    classification_id: str | None = None
    status: str = "pending"  # pending | completed | failed
    error: str | None = None
    duration: float | None = None
    credits_used: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Calibration(SQLModel, table=True):
    """A temperature fitted on an evaluation, applied to one classifier version and model."""

    __table_args__ = (
        UniqueConstraint("classifier_id", "version", "model", name="uq_calibration_target"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    classifier_id: str = Field(foreign_key="classifier.id", index=True)
    version: int
    model: str
    temperature: float
    evaluation_id: str
    ece_before: float
    ece_after: float
    enabled: bool = True
    created_at: datetime = _ts()


class Batch(SQLModel, table=True):
    """Many documents classified by queue workers; the settings every item uses are frozen here."""

    id: str = Field(default_factory=new_id, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    status: str = "queued"  # queued | running | completed
    classifier_id: str | None = None
    classifier_version: int | None = None
    classification_schema: list[dict[str, str]] = Field(sa_column=Column(JSON, nullable=False))
    query_model: str
    page_range: str | None = None
    instructions: str | None = Field(default=None, sa_column=Column(Text))
    modes: dict[str, Any] | None = _json()
    webhook_url: str | None = None
    webhook_item_events: bool = False
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    credits_estimate: int = 0
    credits_used: int = 0
    created_at: datetime = _ts(index=True)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class BatchItem(SQLModel, table=True):
    """One document of a batch. Its id is also the request id of its classification and debit,
    so a retried job can never store a second result or charge twice."""

    __tablename__ = "batch_item"
    __table_args__ = (UniqueConstraint("batch_id", "position", name="uq_batch_item_position"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    batch_id: str = Field(foreign_key="batch.id", index=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    position: int
    document_id: str
    status: str = "pending"  # pending | running | completed | failed
    attempts: int = 0
    error: str | None = None
    classification_id: str | None = None
    credits_used: int = 0
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookDelivery(SQLModel, table=True):
    """One event for an account's webhook URL, with every attempt to deliver it."""

    __tablename__ = "webhook_delivery"

    id: str = Field(default_factory=new_id, primary_key=True)  # the event id receivers see
    account_id: str = Field(foreign_key="account.id", index=True)
    # What the event is about, e.g. "batch.completed:<batch id>": one event per fact, ever.
    event_key: str = Field(unique=True)
    event_type: str
    batch_id: str | None = Field(default=None, index=True)
    url: str
    body: str = Field(sa_column=Column(Text, nullable=False))  # the exact bytes signed and sent
    status: str = "pending"  # pending | succeeded | failed
    attempts: int = 0
    response_status: int | None = None
    last_error: str | None = None
    log: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Set while a run is attempting it, so two runs of one job never POST at once.
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _ts(index=True)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RateLimitHit(SQLModel, table=True):
    """One counted request of an API key, for the rate limit shared by every API process."""

    __tablename__ = "rate_limit_hit"
    __table_args__ = (Index("ix_rate_limit_hit_key_at", "key", "at"),)

    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer, "sqlite")
    )
    key: str
    at: datetime = _ts()


class PurgeRecord(SQLModel, table=True):
    """What was erased of one document, and why: counts only, never names or text."""

    __tablename__ = "purge_record"

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    document_id: str = Field(index=True)
    reason: str  # deleted | retention
    files: int = 0
    bytes: int = Field(default=0, sa_type=BigInteger)
    pages: int = 0
    children: int = 0
    examples: int = 0
    created_at: datetime = _ts(index=True)
