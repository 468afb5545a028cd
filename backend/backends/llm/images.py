"""Page images for vision models: what a model can take, what an image costs, how it is sent.

Capabilities and prices come from LiteLLM's own model data (`supports_vision`,
`input_cost_per_token`), read from the JSON file LiteLLM ships, so `/v1/models` answers without
importing LiteLLM (seconds). Image tokens are counted by LiteLLM's per-provider formula
(`estimate_image_tokens`: OpenAI's 85 + 170 per 512-px tile for gpt-4o, 2833 + 5667 for
gpt-4o-mini, Anthropic's pixel formula...), with OpenAI's gpt-4o tiles as the fallback when a
LiteLLM without it is installed.

Images travel inside the same prompt templates as text: the templates are rendered with a marker
where a page's (or an example's) text would be, and the marker is then swapped for an
`image_url` part (`to_parts`).
"""

import base64
import importlib.util
import json
import math
import re
import secrets
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

Detail = Literal["low", "high"]

# A page is rendered to fit this box (portrait; swapped for landscape pages): OpenAI's high
# detail scales an image's short side to 768 px and bills 512-px tiles, so 768 x 1024 is exactly
# 2 x 2 tiles (765 tokens on gpt-4o) for a Letter or A4 page; more pixels would only be scaled
# away by the provider or billed as more tiles. Low detail is the same file: the provider scales
# it to 512 px and bills a flat base.
PAGE_BOX = (768, 1024)
MAX_PAGE_DPI = 200  # small pages (receipts) are not blown up past what a scan holds
# OpenAI's published image tokens (base, per 512-px tile), the figures LiteLLM's formula uses:
# for pricing a model while LiteLLM is not imported yet (model listing at start-up, seconds
# sooner), and for a LiteLLM without the formula. tests/backends/test_vision.py checks they agree.
TILE_TOKENS = {"gpt-4o": (85, 170), "gpt-4o-mini": (2833, 5667)}
FALLBACK_TOKENS = TILE_TOKENS["gpt-4o"]


@lru_cache
def _model_data() -> dict[str, dict[str, Any]]:
    """LiteLLM's model capability and price map as shipped with the installed LiteLLM."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / (
        "model_prices_and_context_window_backup.json"
    )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def model_data(litellm_model: str) -> dict[str, Any]:
    """LiteLLM's entry for a model ("gpt-4o" or "openai/gpt-4o"); {} when it has none."""
    data = _model_data()
    if litellm_model in data:
        return data[litellm_model]
    _, _, bare = litellm_model.partition("/")
    return data.get(bare, {}) if bare else {}


def supports_vision(litellm_model: str) -> bool:
    return bool(model_data(litellm_model).get("supports_vision"))


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header (no decoding)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">LL", png[16:24])
    return int(width), int(height)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def tile_tokens(litellm_model: str, width: int, height: int, detail: Detail) -> int:
    """OpenAI's tile formula: the image scaled into 2048 x 2048, then its short side to 768."""
    bare = litellm_model.rpartition("/")[2]
    base, tile = TILE_TOKENS.get(bare, FALLBACK_TOKENS)
    if detail == "low":
        return base
    scale = min(1.0, 2048 / max(width, height), 768 / min(width, height))
    tiles = math.ceil(width * scale / 512) * math.ceil(height * scale / 512)
    return base + tile * tiles


def image_tokens(litellm_model: str, png: bytes, detail: Detail) -> int:
    """Prompt tokens the provider bills for one image, by LiteLLM's formula for the model."""
    try:
        from litellm.litellm_core_utils.token_counter import estimate_image_tokens
    except ImportError:  # an older LiteLLM: OpenAI's tiles
        return tile_tokens(litellm_model, *png_size(png), detail)
    # LiteLLM reads the size from the first bytes only: the header is enough.
    return int(estimate_image_tokens(litellm_model, data_url(png[:64]), detail))


def png_header(size: tuple[int, int]) -> bytes:
    """The first bytes of a PNG of `size`: all a token formula reads."""
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + struct.pack(">LL", *size) + b"\x08\x02\0\0\0"


@dataclass(frozen=True)
class PageImage:
    """One image part: a page of the document (or of an example) and how it is sent."""

    page: int
    png: bytes
    detail: Detail = "high"
    tokens: int = 0


def fit_images(
    litellm_model: str, images: list[PageImage], budget: int, *, preferred: Detail
) -> list[PageImage]:
    """The images that fit `budget` image tokens: every page at low detail first (pages past the
    budget dropped, the first kept whatever it costs), then pages upgraded to `preferred` in
    page order while the budget allows. Each image carries its tokens."""
    low = [
        PageImage(i.page, i.png, "low", image_tokens(litellm_model, i.png, "low")) for i in images
    ]
    kept: list[PageImage] = []
    used = 0
    for image in low:
        if kept and used + image.tokens > budget:
            break
        kept.append(image)
        used += image.tokens
    if preferred == "low":
        return kept
    for index, image in enumerate(kept):
        high = image_tokens(litellm_model, image.png, "high")
        if used - image.tokens + high <= budget:
            kept[index] = PageImage(image.page, image.png, "high", high)
            used += high - image.tokens
    return kept


class ImageMarkers:
    """Markers that stand for images in rendered templates: unguessable per call, so document
    text cannot forge one."""

    def __init__(self) -> None:
        self.nonce = ""  # drawn at the first image: most calls have none
        self.images: dict[str, PageImage] = {}

    def mark(self, key: str, image: PageImage) -> str:
        self.nonce = self.nonce or secrets.token_hex(8)
        marker = f"[[image {self.nonce} {key}]]"
        self.images[marker] = image
        return marker

    def to_parts(self, rendered: str) -> str | list[dict[str, Any]]:
        """The rendered message as OpenAI content parts, each marker an image part (the plain
        string when it holds no marker)."""
        if not self.images:
            return rendered
        pattern = re.compile(
            "(" + "|".join(re.escape(m) for m in sorted(self.images, key=len, reverse=True)) + ")"
        )
        parts: list[dict[str, Any]] = []
        for piece in pattern.split(rendered):
            if piece in self.images:
                image = self.images[piece]
                parts.append(
                    {
                        "type": "image_url",
                        "image_url": {"url": data_url(image.png), "detail": image.detail},
                    }
                )
            elif piece.strip():
                parts.append({"type": "text", "text": piece})
        return parts


def image_page_cost(litellm_model: str, detail: Detail = "high") -> float | None:
    """Dollars for one Letter page image at `detail`, from LiteLLM's price; None if unpriced."""
    price = model_data(litellm_model).get("input_cost_per_token")
    if price is None:
        return None
    return tile_tokens(litellm_model, *letter_page_size(), detail) * float(price)


def letter_page_size() -> tuple[int, int]:
    """Pixels of a US Letter page rendered into PAGE_BOX (as page_images renders it)."""
    from backend.documents.page_images import fitted_size

    return fitted_size(612, 792)


def credits_per_image_page(litellm_model: str, credits_per_page: int, text_tokens: int) -> int:
    """An image page's credits: a text page's, scaled by what a high-detail page image costs
    against a full text page (`text_tokens`) at LiteLLM's prices; never less than a text page."""
    price = model_data(litellm_model).get("input_cost_per_token")
    image = image_page_cost(litellm_model, "high")
    if price is None or image is None or not text_tokens:
        return credits_per_page
    ratio = image / (text_tokens * float(price))
    return max(credits_per_page, math.ceil(credits_per_page * ratio))
