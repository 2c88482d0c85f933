"""Image decoding (issue 10 items 2 and 11): every mode a user can hand in becomes the RGB a person would see,
and an image above the pixel limit is refused before its pixels are decoded.

Expected pixel values are worked out by hand in each test, not by the function under test.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from vlmhub.errors import ImageError
from vlmhub.imaging import InMemoryImage, load_image


def _png(im: Image.Image, **kw) -> InMemoryImage:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return InMemoryImage("t.png", buf.getvalue())


def _px(im) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in p) for p in np.asarray(im).reshape(-1, 3)]


def test_16bit_greyscale_png_is_scaled_not_clipped_to_white():
    # 16-bit values 0, 257, 32896 (= 128 * 257), 65535 -> 8-bit 0, 1, 128, 255. Pillow's convert("RGB") clipped
    # everything above 255 to white, so every 16-bit photo looked the same to every model.
    arr = np.array([[0, 257], [32896, 65535]], dtype=np.uint16)
    im = load_image(_png(Image.fromarray(arr)))
    assert im.mode == "RGB" and im.size == (2, 2)
    assert _px(im) == [(0, 0, 0), (1, 1, 1), (128, 128, 128), (255, 255, 255)]


def test_i_and_float_modes():
    # mode I (32-bit int, as Pillow decodes 16-bit PNGs) is read on the 16-bit scale: 514 / 257 = 2
    i = Image.fromarray(np.array([[514, 65535]], dtype=np.int32), "I")
    assert _px(load_image(_as_tiff(i))) == [(2, 2, 2), (255, 255, 255)]
    # mode F in [0, 1] is scaled by 255: 0.5 -> 127.5 -> 128 (round half to even gives 128)
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    assert _px(load_image(_as_tiff(f))) == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def _as_tiff(im: Image.Image) -> InMemoryImage:
    buf = io.BytesIO()
    im.save(buf, format="TIFF")
    return InMemoryImage("t.tif", buf.getvalue())


def test_rgba_is_composited_on_white():
    # alpha 0 -> white whatever the stored colour; alpha 255 -> the colour; alpha 128 on (0, 0, 0) over white:
    # 255 * (1 - 128/255) = 127
    arr = np.array([[[10, 20, 30, 0], [200, 100, 50, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    px = _px(load_image(_png(Image.fromarray(arr, "RGBA"))))
    assert px[0] == (255, 255, 255) and px[1] == (200, 100, 50)
    assert all(abs(v - 127) <= 1 for v in px[2])


def test_palette_with_transparency_and_la():
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    assert _px(load_image(_png(p, transparency=0))) == [(255, 255, 255), (255, 0, 0)]
    la = Image.fromarray(np.array([[[50, 255], [50, 0]]], dtype=np.uint8), "LA")
    assert _px(load_image(_png(la))) == [(50, 50, 50), (255, 255, 255)]


def test_cmyk_and_one_bit():
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # no cyan, full magenta + yellow = red
    buf = io.BytesIO()
    cmyk.save(buf, format="JPEG", quality=100)
    r, g, b = _px(load_image(InMemoryImage("c.jpg", buf.getvalue())))[0]
    assert r > 200 and g < 60 and b < 60
    one = Image.new("1", (2, 1))
    one.putpixel((1, 0), 1)
    assert _px(load_image(_png(one))) == [(0, 0, 0), (255, 255, 255)]


def test_exif_orientation_is_applied():
    # a 2 x 1 image stored as (red, blue) with orientation 6 ("rotate 90 CW to view") is seen as 1 x 2: red on top
    im = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif)
    out = load_image(InMemoryImage("r.png", buf.getvalue()))
    assert out.size == (1, 2)
    assert _px(out) == [(255, 0, 0), (0, 0, 255)]


def test_pixel_limit_refuses_before_decoding():
    big = Image.new("1", (3000, 2000))  # 6 MP, a few kB as a 1-bit PNG
    with pytest.raises(ImageError, match=r"6,000,000 pixels, above the limit of 5,000,000.*VLMHUB_MAX_IMAGE_PIXELS"):
        load_image(_png(big), max_pixels=5_000_000)
    assert load_image(_png(big), max_pixels=6_000_000).size == (3000, 2000)


def test_pixel_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("VLMHUB_MAX_IMAGE_PIXELS", "100")
    from vlmhub.settings import Settings

    assert Settings().max_image_pixels == 100
    monkeypatch.setenv("VLMHUB_MAX_IMAGE_PIXELS", "lots")
    from vlmhub.errors import ConfigError

    with pytest.raises(ConfigError, match="VLMHUB_MAX_IMAGE_PIXELS"):
        Settings()


def test_service_refuses_an_image_above_the_limit_with_a_4xx(toy_hub):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vlmhub.service import VlmhubService
    from vlmhub.service.app import create_app

    from vlmhub.hub import Hub

    hub = Hub(toy_hub.settings.with_(max_image_pixels=1000), model_ids=list(toy_hub.model_ids))  # same labeled home
    service = VlmhubService(hub, embedder="hashing256")
    data = base64.b64encode(_png(Image.new("RGB", (50, 50), (255, 0, 0))).data).decode()
    task = {"name": "color-task", "domain": "color swatch", "task": "color recognition", "classes": ["red", "blue"]}
    with TestClient(create_app(service)) as c:
        r = c.post("/v1/predict", json={"task": task, "images": [{"name": "big.png", "data": data}], "k": 1})
    assert 400 <= r.status_code < 500, r.text
    assert "2,500 pixels, above the limit of 1,000" in r.text, r.text

