"""What both stores share: the Core statements (compiled once per driver, see `Sql`), the
`Held` value a hold gives back, and the checks that turn a read row into the ORM path's errors."""

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import ReturningDelete

from backend.classification.spec import RunSpec
from backend.documents.page_range import parse_page_range
from backend.documents.queries import ensure_processed
from backend.errors import InsufficientCredits, NotFound
from backend.models import (
    Account,
    Classification,
    CreditReservation,
    Document,
    LedgerEntry,
    Page,
    utcnow,
)

ACCOUNT = Account.__table__  # type: ignore[attr-defined]
HOLD = CreditReservation.__table__  # type: ignore[attr-defined]
LEDGER = LedgerEntry.__table__  # type: ignore[attr-defined]
RESULT = Classification.__table__  # type: ignore[attr-defined]
DOCUMENT = Document.__table__  # type: ignore[attr-defined]
PAGE = Page.__table__  # type: ignore[attr-defined]

READ_DOCUMENT = select(
    DOCUMENT.c.id,
    DOCUMENT.c.account_id,
    DOCUMENT.c.status,
    DOCUMENT.c.error,
    DOCUMENT.c.num_pages,
    DOCUMENT.c.deleted_at,
).where(DOCUMENT.c.id == bindparam("document_id"))
# Every page (no page range, the usual request): the document and its pages in one statement.
READ_DOCUMENT_AND_PAGES = (
    select(*READ_DOCUMENT.selected_columns, PAGE.c.page_number, PAGE.c.text, PAGE.c.ocr_pending)
    .select_from(DOCUMENT.outerjoin(PAGE, PAGE.c.document_id == DOCUMENT.c.id))
    .where(DOCUMENT.c.id == bindparam("document_id"))
    .order_by(PAGE.c.page_number)
)
# A page range: the pages from its first to its last, the ones it skips dropped after reading.
READ_PAGE_SPAN = (
    select(PAGE.c.page_number, PAGE.c.text, PAGE.c.ocr_pending)
    .where(
        PAGE.c.document_id == bindparam("document_id"),
        PAGE.c.page_number.between(bindparam("first"), bindparam("last")),
    )
    .order_by(PAGE.c.page_number)
)
AVAILABLE = select(ACCOUNT.c.balance - ACCOUNT.c.reserved).where(
    ACCOUNT.c.id == bindparam("account_id")
)


def take_hold() -> ReturningDelete:
    """The request's hold deleted, giving back (account_id, amount): on PostgreSQL a CTE of the
    charge's and the release's one statement, on SQLite a step of its own."""
    return (
        delete(HOLD)
        .where(HOLD.c.request_id == bindparam("request_id"))
        .returning(HOLD.c.account_id, HOLD.c.amount)
    )


@dataclass
class Held:
    """A request's pages with their credits held."""

    request_id: str
    document_id: str
    numbers: list[int]
    pages: list[tuple[int, str]]
    credits: int


class SlowPathNeeded(Exception):
    """The request needs what only run_classification does (OCR on demand); nothing was held."""


def texts(rows: Any) -> list[tuple[int, str]]:
    """(number, text) of the pages read, or SlowPathNeeded when one still waits for its OCR."""
    if any(r.ocr_pending for r in rows):
        raise SlowPathNeeded
    return [(r.page_number, r.text) for r in rows]


def insufficient(amount: int, available: int | None) -> InsufficientCredits:
    return InsufficientCredits(
        f"This request needs {amount} credits; the account has {available or 0} available."
    )


def pages_to_read(
    row: Any, *, account_id: str, document_id: str, spec: RunSpec
) -> tuple[list[int], int]:
    """The page numbers a request reads and the credits they cost, or the ORM path's error."""
    if row is None or row.account_id != account_id or row.deleted_at is not None:
        raise NotFound(f"Document {document_id} not found.")
    ensure_processed(row)
    numbers = parse_page_range(spec.page_range, row.num_pages)
    return numbers, len(numbers) * spec.info.credits_per_page


def pages_of(rows: list[Any], numbers: list[int]) -> list[tuple[int, str]]:
    wanted = set(numbers)
    return texts([r for r in rows if r.page_number in wanted])


def hold_params(account_id: str, request_id: str, credits: int | None = None) -> dict[str, Any]:
    """A hold's parameters; `credits` only where the statement is given the amount (PostgreSQL's
    read-and-hold computes it from the document's pages)."""
    params = {"account_id": account_id, "request_id": request_id, "now": utcnow()}
    if credits is not None:
        params["amount"] = credits
    return params


def result_values(record: Classification) -> dict[str, Any]:
    """The record's column values by column name, defaults (created_at, ...) included."""
    return {column.name: getattr(record, column.key) for column in RESULT.columns}


def debit_values(record: Classification) -> dict[str, Any]:
    return {
        "account_id": record.account_id,
        "request_id": record.id,
        "amount": record.credits_used,
        "debit": -record.credits_used,
        "model": record.model,
        "pages": record.num_pages,
        "note": record.kind,
        "now": utcnow(),
    }


@dataclass(frozen=True)
class Sql:
    """A Core statement compiled once for one driver: its SQL and each parameter's bind
    processor (the conversion SQLAlchemy itself applies: JSON, timestamps), so rows are stored
    exactly as the ORM stores them, without SQLAlchemy's per-execution work (cache key, compile
    lookup, result machinery)."""

    text: str
    defaults: dict[str, Any]  # values written into the statement (`kind="debit"`)
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    row_type: Any  # a namedtuple of the selected columns: rows read by name, as Core rows are

    @classmethod
    def of(cls, statement: Any, dialect: Dialect, column_keys: list[str] | None = None) -> "Sql":
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        processors = []
        for name, bind in binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors.append((name, processor))
        defaults = {
            name: bind.value
            for name, bind in binds.items()
            if not bind.required and bind.value is not None
        }
        columns = [c.key for c in statement.exported_columns]  # selected or returned
        row_type = namedtuple("Row", columns, rename=True)  # noqa: PYI024
        return cls(str(compiled), defaults, tuple(processors), row_type)

    def bound(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` as the driver takes them: the statement's own values added, each converted."""
        if self.processors or self.defaults:
            params = self.defaults | params
            for name, processor in self.processors:
                if name in params:
                    params[name] = processor(params[name])
        return params

    def rows(self, values: list[tuple]) -> list[Any]:
        """The driver's tuples, with attribute access by column name (as Core rows have)."""
        return [self.row_type(*v) for v in values]
