"""Routes that answer their common case without FastAPI's per-request dependency resolution.

`POST /v1/classify` is the hot path: FastAPI resolving its dependencies (key, scope, header,
body) took about 0.2 ms of a classification's 1 ms of DocSift's own time. The route stays an
ordinary FastAPI route (documented, its dependencies declared, its errors FastAPI's), and
`DirectRoute` first offers each request to a handler of its own, which answers the plain case
(a JSON body that validates) with the same functions the dependencies call, and declines
anything else before doing anything; FastAPI's handler then serves it as usual.
"""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

_Model = TypeVar("_Model", bound=BaseModel)
DirectHandler = Callable[[Request], Awaitable[Response | None]]

_DIRECT = "__docsift_direct__"


def serves_directly(handler: DirectHandler) -> Callable[[Any], Any]:
    """Mark an endpoint of a `DirectRoute` router: `handler` answers its common case."""

    def mark(endpoint: Any) -> Any:
        setattr(endpoint, _DIRECT, handler)
        return endpoint

    return mark


class DirectRoute(APIRoute):
    """An APIRoute whose endpoint, if marked with `serves_directly`, is first offered to that
    handler; a None from it means "serve this the usual way"."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        usual = super().get_route_handler()
        direct: DirectHandler | None = getattr(self.endpoint, _DIRECT, None)
        if direct is None:
            return usual

        async def handler(request: Request) -> Response:
            response = await direct(request)
            return response if response is not None else await usual(request)

        return handler


async def json_body(request: Request, model: type[_Model]) -> _Model | None:
    """The request's JSON body as `model`, or None where FastAPI would answer otherwise (no JSON
    content type, not JSON, not valid): FastAPI's handler then gives its own error."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return None
    try:
        return model.model_validate_json(await request.body())
    except ValidationError:
        return None
