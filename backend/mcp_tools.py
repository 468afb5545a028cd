"""DocSift's MCP tools: each one a thin door onto the same services and routes as REST.

A REST route is a plain async function of its dependencies, so most tools call it directly with
the tool's own session, the caller's account and the app state: validation, idempotency, credits
and the route's single commit are then the REST call's, not a copy that could drift. Each tool
opens its own database session (`tool_call`); what it raises becomes a tool result with `isError`
set whose text is the contract's error body (`contract_errors`).
"""

import base64
import binascii
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, ParamSpec

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request

from backend.api import classifiers as classifiers_api
from backend.api import classify as classify_api
from backend.api import models as models_api
from backend.api import reviews as reviews_api
from backend.api import split as split_api
from backend.api.documents import documents_out
from backend.api.pagination import PageParams
from backend.classification.schema import SchemaItem
from backend.deps import ScopeCheck, check_classifier
from backend.documents import service as documents
from backend.documents.queries import get_document
from backend.errors import ApiError, InternalError, InvalidApiKey, InvalidRequest, PayloadTooLarge
from backend.models import Account, ApiKey
from backend.reviews import service as reviews_service
from backend.reviews import training as reviews_training
from backend.state import AppState

log = logging.getLogger("docsift.mcp")

# Where the HTTP gate leaves the authenticated account's id (an entry of the ASGI scope's state).
KEY_STATE_KEY = "docsift_mcp_key_id"

P = ParamSpec("P")
Json = dict[str, Any]


def error_result(error: ApiError) -> CallToolResult:
    """A tool error whose text (and structured content) is the contract's error body."""
    body = error.body()
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(body))],
        structured_content=body,
        is_error=True,
    )


def describe_validation(error: ValidationError) -> str:
    """A one-line account of what is wrong with the arguments, as the REST API words it."""
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg', 'invalid value')}" if where else item["msg"])
    return "; ".join(parts) or "Invalid request."


def contract_errors(tool: Callable[P, Awaitable[Json]]) -> Callable[P, Awaitable[Any]]:
    """Turn what a tool raises into a contract error result instead of the SDK's generic text."""

    @functools.wraps(tool)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Json | CallToolResult:
        try:
            return await tool(*args, **kwargs)
        except ValidationError as error:
            return error_result(InvalidRequest(describe_validation(error)))
        except ApiError as error:
            log.info("MCP tool %s failed: %s %s", tool.__name__, error.code, error.message)
            return error_result(error)
        except Exception:
            log.exception("MCP tool %s crashed", tool.__name__)
            return error_result(InternalError("An internal error occurred; it has been logged."))

    return wrapper


@dataclass
class ToolCall:
    """What a tool works with: the app's state, its own session and the caller's account."""

    state: AppState
    session: AsyncSession
    account: Account
    key: ApiKey
    request: Request


@asynccontextmanager
async def tool_call(ctx: Context, scope: str | None) -> AsyncIterator[ToolCall]:
    """Open the tool's own session for the caller's account; commit when the tool succeeds.

    A route that commits by itself leaves nothing to commit here, so that commit sends nothing.
    """
    request = ctx.request_context.request
    if not isinstance(request, Request) or KEY_STATE_KEY not in request.scope.get("state", {}):
        raise InternalError("This tool is only served over DocSift's authenticated HTTP endpoint.")
    key_id: str = request.scope["state"][KEY_STATE_KEY]
    state: AppState = request.app.state.docsift
    async with state.sessionmaker() as session:
        key = await session.get(ApiKey, key_id)
        account = await session.get(Account, key.account_id) if key else None
        if key is None or account is None:  # deleted between the gate and the call
            raise InvalidApiKey("Invalid, revoked or expired API key.")
        # The same scope and classifier checks as the REST route the tool stands for.
        request.state.api_key = key
        await ScopeCheck(scope)(request, key)
        try:
            yield ToolCall(state=state, session=session, account=account, key=key, request=request)
            await state.queue.commit(session)  # and hands over jobs it enqueued (conversions)
        except BaseException:
            await session.rollback()
            state.queue.discard(session)
            raise


def decode_upload(content_base64: str, limit: int) -> bytes:
    """The bytes of a base64 upload (a `data:...;base64,` prefix is allowed), within the limit."""
    text = content_base64.strip()
    if text.startswith("data:") and "base64," in text:
        text = text.split("base64,", 1)[1]
    text = "".join(text.split())  # line breaks from encoders that wrap at 76 characters
    if len(text) // 4 * 3 > limit + 2:
        raise PayloadTooLarge(f"The file is larger than the {limit // 2**20} MB upload limit.")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("content_base64 is not valid base64.") from None
    if len(data) > limit:
        raise PayloadTooLarge(f"The file is larger than the {limit // 2**20} MB upload limit.")
    return data


READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


def build_server(version: str = "") -> MCPServer:
    """The MCP server with DocSift's tools; stateless, so one instance serves every request."""
    server = MCPServer(
        "docsift",
        title="DocSift",
        version=version,
        instructions=(
            "Document classification. Upload a file with upload_document (base64), then classify "
            "it against labels you describe (classify) or with a saved classifier "
            "(run_classifier). Classifying costs credits per page; list_models shows the price."
        ),
    )

    @server.tool(annotations=WRITES)
    @contract_errors
    async def upload_document(
        ctx: Context,
        content_base64: Annotated[
            str | None, Field(description="The file, base64-encoded (PDF, image, text or zip)")
        ] = None,
        filename: Annotated[str | None, Field(description="The file's name, for display")] = None,
        document_id: Annotated[
            str | None, Field(description="Instead of a file: an already uploaded document's id")
        ] = None,
        extract: Annotated[bool, Field(description="Extract text (and OCR) at once")] = True,
    ) -> Json:
        """Upload a document (a zip gives several) and extract its text, or look one up by id.

        Returns the document (`document_id`, `status`, `num_pages`...), or `{"documents": [...]}`
        for a zip. Classify it once `status` is `processed`.
        """
        async with tool_call(ctx, "documents:write") as call:
            if document_id is not None:
                if content_base64:
                    raise InvalidRequest("Send either content_base64 or document_id, not both.")
                document = await get_document(
                    call.session, account_id=call.account.id, document_id=document_id
                )
                (out,) = await documents_out(call.session, [document])
                return out.model_dump(mode="json")
            if not content_base64:
                raise InvalidRequest("Send the file as content_base64, or a document_id.")
            data = decode_upload(content_base64, call.state.settings.max_upload_bytes)
            made = await documents.ingest(
                call.session,
                call.state,
                account=call.account,
                filename=filename,
                data=data,
                extract=extract,
            )
            out = [
                d.model_dump(mode="json") for d in await documents_out(call.session, made.documents)
            ]
        return {"documents": out} if made.is_zip else out[0]

    @server.tool(annotations=WRITES)
    @contract_errors
    async def classify(
        ctx: Context,
        document_id: Annotated[str, Field(description="A processed document's id")],
        classification_schema: Annotated[
            list[SchemaItem], Field(description="At least 2 labels, each with a description")
        ],
        page_range: Annotated[
            str | None, Field(description='Pages to read, e.g. "1-2" or "1,3,5" (default all)')
        ] = None,
        query_model: Annotated[
            str | None, Field(description="A model from list_models (default: the server's)")
        ] = None,
        instructions: Annotated[str | None, Field(description="Extra guidance")] = None,
        idempotency_key: Annotated[
            str | None, Field(description="Retry safely: same key, same result, charged once")
        ] = None,
    ) -> Json:
        """Classify a document against labels you describe; costs credits per page.

        Returns `classification` (the best label), `confidence_scores` (every label, summing to
        1), `credits_used`, `num_pages` and `request_id`, exactly like POST /v1/classify.
        """
        body = classify_api.ClassifyRequestBody(
            document_id=document_id,
            classification_schema=classification_schema,
            page_range=page_range,
            query_model=query_model,
            instructions=instructions,
        )
        async with tool_call(ctx, "classify") as call:
            check_classifier(call.request, None)
            out = await classify_api.classify_document(
                body, call.account.id, call.session, call.state, idempotency_key
            )
        return out.model_dump(mode="json")

    @server.tool(annotations=WRITES)
    @contract_errors
    async def run_classifier(
        ctx: Context,
        classifier_id: Annotated[str, Field(description="A saved classifier's id")],
        document_id: Annotated[str, Field(description="A processed document's id")],
        page_range: Annotated[
            str | None, Field(description="Pages to read (default: the classifier's)")
        ] = None,
        query_model: Annotated[
            str | None, Field(description="A model from list_models (default: the classifier's)")
        ] = None,
        version: Annotated[
            int | None, Field(description="A version to pin (default: the latest)")
        ] = None,
        idempotency_key: Annotated[
            str | None, Field(description="Retry safely: same key, same result, charged once")
        ] = None,
    ) -> Json:
        """Classify a document with a saved classifier (its labels, examples and defaults).

        Same response as classify, with `classifier_id` and `classifier_version` set.
        """
        body = classifiers_api.RunIn(
            document_id=document_id, page_range=page_range, query_model=query_model, version=version
        )
        async with tool_call(ctx, "classify") as call:
            check_classifier(call.request, classifier_id)
            out = await classifiers_api.run_classifier(
                classifier_id, body, call.account, call.session, call.state, idempotency_key
            )
        return out.model_dump(mode="json")

    @server.tool(annotations=WRITES)
    @contract_errors
    async def split_document(
        ctx: Context,
        document_id: Annotated[str, Field(description="A processed multi-document file's id")],
        classification_schema: Annotated[
            list[SchemaItem] | None,
            Field(description="Labels for the parts (or give classifier_id instead)"),
        ] = None,
        classifier_id: Annotated[
            str | None, Field(description="A saved classifier to label the parts with")
        ] = None,
        query_model: Annotated[str | None, Field(description="A model from list_models")] = None,
        page_range: Annotated[str | None, Field(description="Pages to split (default all)")] = None,
        create_documents: Annotated[
            bool, Field(description="Also store each part as a document of its own")
        ] = False,
        group_attachments: Annotated[
            bool,
            Field(description="Keep schedules and exhibits with the form or contract they follow"),
        ] = False,
        idempotency_key: Annotated[
            str | None, Field(description="Retry safely: same key, same result, charged once")
        ] = None,
    ) -> Json:
        """Find the documents inside one file (e.g. a scanned batch) and label each part.

        Give exactly one of classification_schema and classifier_id. Returns `segments`, each
        with `pages` ("1-2"), `classification` and `confidence_scores`; costs credits per page.
        """
        body = split_api.SplitIn(
            document_id=document_id,
            classification_schema=classification_schema,
            classifier_id=classifier_id,
            query_model=query_model,
            page_range=page_range,
            create_documents=create_documents,
            group_attachments=group_attachments,
        )
        async with tool_call(ctx, "classify") as call:
            out = await split_api.split(
                call.request, body, call.account, call.session, call.state, idempotency_key
            )
        return out.model_dump(mode="json")

    @server.tool(annotations=READ_ONLY)
    @contract_errors
    async def list_classifiers(
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=200, description="Items per page")] = 50,
        offset: Annotated[int, Field(ge=0, description="Items to skip")] = 0,
    ) -> Json:
        """List the account's saved classifiers (id, name, labels, defaults), newest first."""
        async with tool_call(ctx, "classifiers:read") as call:
            out = await classifiers_api.list_classifiers(
                call.account,
                call.key,
                call.session,
                PageParams(limit=limit, offset=offset),
                call.state,
            )
        return out.model_dump(mode="json")

    @server.tool(annotations=READ_ONLY)
    @contract_errors
    async def list_reviews(
        ctx: Context,
        status: Annotated[
            str, Field(description="pending (default), auto_accepted, reviewed or all")
        ] = "pending",
        classifier_id: Annotated[str | None, Field(description="Only this classifier's")] = None,
        label: Annotated[str | None, Field(description="Only results with this label")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="Items per page")] = 50,
        offset: Annotated[int, Field(ge=0, description="Items to skip")] = 0,
    ) -> Json:
        """List results awaiting human review (confidence under the threshold), oldest first."""
        if status not in ("pending", "auto_accepted", "reviewed", "all"):
            raise InvalidRequest("status must be pending, auto_accepted, reviewed or all.")
        async with tool_call(ctx, "reviews") as call:
            out = await reviews_api.list_reviews(
                call.account,
                call.session,
                PageParams(limit=limit, offset=offset),
                status=status,  # type: ignore[arg-type]
                classifier_id=classifier_id,
                label=label,
                since=None,
            )
        return out.model_dump(mode="json")

    @server.tool(annotations=WRITES)
    @contract_errors
    async def review_result(
        ctx: Context,
        request_id: Annotated[str, Field(description="The result's request_id")],
        label: Annotated[str, Field(description="The right label (the suggested one confirms)")],
        segment: Annotated[
            int | None, Field(description="Split results: the segment (0-based)")
        ] = None,
    ) -> Json:
        """Confirm or correct a result; on a saved classifier it becomes a labelled example and
        the classifier retrains in the background. Repeating the same decision is a no-op."""
        body = reviews_api.ReviewIn(label=label, segment=segment)
        async with tool_call(ctx, "reviews") as call:
            item, taught = await reviews_service.decide(
                call.session,
                call.state,
                call.account,
                request_id=request_id,
                label=body.label,
                segment=body.segment,
                reviewed_by=call.key.id,
            )
        if taught and item.classifier_id:
            await reviews_training.schedule(call.state, item.classifier_id)
        return item.model_dump(mode="json")

    @server.tool(annotations=READ_ONLY)
    @contract_errors
    async def list_models(ctx: Context) -> Json:
        """List the models this server offers, with credits per page and confidence method."""
        async with tool_call(ctx, None) as call:
            out = await models_api.list_models(
                call.account, call.state.backends, call.state.settings
            )
        return out.model_dump(mode="json")

    return server
