"""Vision input: upload-to-result per scanned page, image mode against text mode, and what a
page costs in each mode.

    python -m bench.vision           # writes bench/results/vision.json (~3 minutes)

Timing: DocSift under uvicorn (SQLite, its default 2-process OCR pool) and the fake OpenAI
server answering at once, so the numbers are DocSift's own work, not a model's latency. For
each scanned docs-v1 image (every 3rd of the png/jpg files, sorted), one after another:
text mode = upload (OCR at once) + classify; image mode = upload with `ocr=on_demand` +
classify with `input_mode: image` (page rendered, cached, sent as an image part).

Cost: the exact messages DocSift sends for a one-page Letter document with the 4-label
DocumentPro schema, tokens by tiktoken (text) and LiteLLM's image formula, prices from LiteLLM's
bundled price map; text mode for a dense page of ~700 tokens (bench.tokens' page).
"""

import backend.offline  # noqa: F401, I001

import json
import statistics
import time
from pathlib import Path

import httpx

from backend.backends.llm.budget import count_tokens
from backend.backends.llm.images import image_tokens, letter_page_size, model_data, png_header
from backend.backends.llm.prompts import LabelPrompt, render_classify
from backend.config import REPO_ROOT
from bench.harness import docsift_server, fake_openai, write_result
from bench.tokens import MESSAGE_OVERHEAD, PAGE, SCHEMA

DATASET = REPO_ROOT.parent / "shared" / "datasets" / "docs-v1"
LABELS = [{"label": label, "description": description} for label, description in SCHEMA]
MODELS = ("gpt-4o-mini", "gpt-4o")


def _prompt_tokens(page_text: str) -> int:
    system, user = render_classify(
        REPO_ROOT / "prompts",
        labels=[
            LabelPrompt(code, label, description)
            for code, (label, description) in zip("ABCD", SCHEMA, strict=True)
        ],
        pages=[(1, page_text)],
        instructions=None,
        examples=[],
    )
    return count_tokens(system) + count_tokens(user) + MESSAGE_OVERHEAD


def costs() -> dict[str, dict[str, object]]:
    """USD per 1000 one-page classifications, per model and mode."""
    text = _prompt_tokens(PAGE)
    frame = _prompt_tokens("")  # the prompt around an image-only page
    size = letter_page_size()
    out: dict[str, dict[str, object]] = {}
    for model in MODELS:
        price = model_data(model)
        per_in, per_out = price["input_cost_per_token"], price["output_cost_per_token"]
        high = image_tokens(model, png_header(size), "high")
        low = image_tokens(model, png_header(size), "low")
        modes = {
            "text": text,
            "image_high": frame + high,
            "image_low": frame + low,
            "text+image_high": text + high,
        }
        out[model] = {
            "image_tokens_high": high,
            "image_tokens_low": low,
            "prompt_tokens": modes,
            "usd_per_1000_pages": {
                mode: round((tokens * per_in + per_out) * 1000, 3) for mode, tokens in modes.items()
            },
        }
    return out


def _scans() -> list[Path]:
    files = sorted(p for p in DATASET.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    return files[::3]


def _run(client: httpx.Client, key: str, path: Path, mode: str) -> dict[str, float]:
    headers = {"x-api-key": key}
    started = time.perf_counter()
    params = {"ocr": "on_demand"} if mode == "image" else {}
    uploaded = client.post(
        "/v1/documents",
        params=params,
        files={"file": (path.name, path.read_bytes())},
        headers=headers,
    )
    uploaded.raise_for_status()
    upload_s = time.perf_counter() - started
    body = uploaded.json()
    result = client.post(
        "/v1/classify",
        json={
            "document_id": body["document_id"],
            "classification_schema": LABELS,
            "query_model": "bench-vlm",
            "input_mode": mode,
        },
        headers=headers,
    )
    result.raise_for_status()
    total = time.perf_counter() - started
    return {
        "pages": body["num_pages"],
        "upload_s": upload_s,
        "classify_s": total - upload_s,
        "total_s": total,
        "image_pages": len(result.json()["image_pages"]),
    }


def timing() -> dict[str, object]:
    scans = _scans()
    with fake_openai() as base:
        models = [
            {
                "name": "bench-vlm",
                "litellm_model": "openai/bench",
                "api_base": base,
                "api_key": "none",
                "supports_vision": True,
            }
        ]
        env = {"DOCSIFT_MODELS": json.dumps(models), "DOCSIFT_OCR_WORKERS": "2"}
        with (
            docsift_server(extra_env=env) as server,
            httpx.Client(base_url=server.url, timeout=300) as client,
        ):
            _run(client, server.api_key, scans[0], "text")  # warm: LiteLLM, OCR pool
            _run(client, server.api_key, scans[0], "image")
            runs: dict[str, list[dict[str, float]]] = {"text": [], "image": []}
            for path in scans:
                for mode in ("text", "image"):
                    runs[mode].append(_run(client, server.api_key, path, mode))
    summary: dict[str, object] = {"files": [p.name for p in scans]}
    for mode, rows in runs.items():
        pages = sum(r["pages"] for r in rows)
        per_page = [r["total_s"] / r["pages"] for r in rows]
        summary[mode] = {
            "pages": pages,
            "image_pages": sum(r["image_pages"] for r in rows),
            "seconds_per_page_mean": round(sum(r["total_s"] for r in rows) / pages, 3),
            "seconds_per_page_median": round(statistics.median(per_page), 3),
            "upload_s_mean": round(statistics.mean(r["upload_s"] for r in rows), 3),
            "classify_s_mean": round(statistics.mean(r["classify_s"] for r in rows), 3),
        }
    return summary


def main() -> None:
    result = {
        "cost": costs(),
        "letter_page_pixels": list(letter_page_size()),
        "timing": timing(),
        "command": "python -m bench.vision",
    }
    path = write_result("vision", result)
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
