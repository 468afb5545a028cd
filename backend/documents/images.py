"""Image uploads: checked from their headers (size, frames) before any decoding, then turned into
an in-memory PDF (one page per frame) so every document is read the same way."""

import io
import warnings

import pillow_heif
import pymupdf
from PIL import Image, ImageOps, ImageSequence

from backend.documents.sniff import FileKind
from backend.errors import PayloadTooLarge, UnsupportedFile

# HEIC/HEIF phone photos open through Pillow like any other image.
pillow_heif.register_heif_opener()


def check_image(data: bytes, *, max_pixels: int, max_pages: int) -> int:
    """The number of frames (pages), after checking every frame's pixel count and the page limit.

    Pillow reads only headers here, so a 20000x20000 bomb is refused without being decoded.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns past its own limit; ours is checked just below with a clearer message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                frames = getattr(image, "n_frames", 1)
                if frames > max_pages:
                    raise PayloadTooLarge(
                        f"The image has {frames} frames (pages); the limit is {max_pages}."
                    )
                for index in range(frames):
                    image.seek(index)
                    width, height = image.size
                    if width * height > max_pixels:
                        raise PayloadTooLarge(
                            f"The image is {width}x{height} pixels; "
                            f"the limit is {max_pixels:,} pixels."
                        )
    except Image.DecompressionBombError as error:
        raise PayloadTooLarge(f"The image is too large: {error}") from None
    except PayloadTooLarge:
        raise
    except Exception as error:  # Pillow raises many types for broken images
        raise UnsupportedFile(f"The image cannot be read: {error}.") from None
    return frames


def image_to_pdf(data: bytes, kind: FileKind) -> bytes:
    """A PDF with one upright page per frame (EXIF orientation applied), sized by the image's
    DPI (96 when it has none, as MuPDF assumes)."""
    if kind.pymupdf_type == "jpeg":
        # MuPDF embeds JPEG data as is (milliseconds) and applies the EXIF orientation.
        try:
            with pymupdf.open(stream=data, filetype="jpeg") as image:
                return image.convert_to_pdf()
        except Exception:  # Pillow below reports a clear error
            pass
    # Other formats: MuPDF's convert_to_pdf deflates the pixels again (2.5 s for a 1024x1536
    # PNG of docs-v1, holding the GIL); handing it Pillow's decoded pixels takes 0.3 s.
    try:
        with Image.open(io.BytesIO(data)) as image, pymupdf.open() as pdf:
            x_dpi, y_dpi = _dpi(image)
            for frame in ImageSequence.Iterator(image):
                pixels = _flatten(ImageOps.exif_transpose(frame))
                colorspace = pymupdf.csGRAY if pixels.mode == "L" else pymupdf.csRGB
                pixmap = pymupdf.Pixmap(
                    colorspace, pixels.width, pixels.height, pixels.tobytes(), False
                )
                page = pdf.new_page(
                    width=pixels.width * 72 / x_dpi, height=pixels.height * 72 / y_dpi
                )
                page.insert_image(page.rect, pixmap=pixmap)
            return pdf.tobytes()
    except Exception as error:
        raise UnsupportedFile(f"The image cannot be read: {error}.") from None


def _dpi(image: Image.Image) -> tuple[float, float]:
    dpi = image.info.get("dpi") or (96, 96)
    try:
        x_dpi, y_dpi = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return 96.0, 96.0
    # Bogus metadata (0, 1 or 10,000 dpi) would make absurd page sizes.
    plausible = 30 <= x_dpi <= 2400 and 30 <= y_dpi <= 2400
    return (x_dpi, y_dpi) if plausible else (96.0, 96.0)


def _flatten(image: Image.Image) -> Image.Image:
    """8-bit gray or RGB pixels; transparency goes onto white, as a viewer shows it (turned
    into RGB as is, transparent pixels would often come out black and hide the text)."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit gray: scale, not clip
        return image.convert("I").point(lambda value: value / 256).convert("L")
    return image.convert("L" if image.mode in ("1", "L") else "RGB")
