"""Input images for src/image/image_read.c, and PIL's pixels for them.

tests/fixtures/images/ holds small PNG and JPEG files of every kind sdc reads
and ref.safetensors, made with PIL 13.0.0 (libjpeg-turbo 3.2.0 inside its
wheel) and numpy; tests/test_image_read.c compares:

  decode.<file>.rgb  [h, w, 3] U8  load_image(<file>): Image.open,
                                   ImageOps.exif_transpose, .convert("RGB")
  decode.<file>.l    [h, w, 1] U8  the same, then .convert("L")
  src.<name>         [h, w, c] U8  a resize source (c = 3 RGB, 1 L)
  resize.<name>.<W>x<H>            src.<name>.resize((W, H), Image.LANCZOS)
                                   (make() checks which sizes PIL resizes
                                   vertically first, see RESIZE)

The PNGs are written here byte by byte (every colour type and bit depth,
Adam7, all five row filters, tRNS, eXIf, iTXt XMP), since PIL cannot write
most of them.  The JPEGs are PIL's (4:4:4, 4:2:2, 4:2:0, progressive, grey,
CMYK, restart markers, EXIF orientations 1-8 little- and big-endian, XMP
orientation).

16-bit grey is the one deliberate difference from PIL (image_read.h): PIL 13
opens it as "I;16" and clips every value >= 255 to 255 in convert("RGB");
the expected pixels are the high bytes instead (what PIL gives for 16-bit
RGB, RGBA and grey+alpha).  make() checks that PIL still clips, so that a
PIL that changes is noticed.
"""
import io
import os
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps, features

W, H = 13, 11          # small PNGs: odd sizes, bit packing with a partial last byte
WI, HI = 19, 13        # interlaced PNGs: every Adam7 pass non-empty
WJ, HJ = 27, 21        # JPEGs: partial MCUs at the right and bottom edges
WO, HO = 20, 12        # orientation JPEGs: not square, so that a swap shows


def pattern(w, h, seed):
    """[h, w, 3] uint8: gradients, a sharp disc and noise (edges make the
    resize's clipping and the JPEG's ringing show)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    disc = ((x - w * 0.6) ** 2 + (y - h * 0.4) ** 2) < (min(w, h) * 0.3) ** 2
    b = np.where(disc, 250.0, 20.0)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---- PNG writer -------------------------------------------------------------

def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _pack_row(row, depth):
    """row: 1-d sample values -> bytes (big-endian 16-bit, MSB-first bit packing)"""
    if depth == 16:
        return b"".join(struct.pack(">H", int(v)) for v in row)
    if depth == 8:
        return bytes(int(v) for v in row)
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(row), per):
        byte = 0
        for j in range(per):
            v = int(row[i + j]) if i + j < len(row) else 0
            byte |= v << (8 - depth * (j + 1))
        out.append(byte)
    return bytes(out)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _filter(raw, prev, ftype, bpp):
    out = bytearray([ftype])
    for i, v in enumerate(raw):
        a = raw[i - bpp] if i >= bpp else 0
        b = prev[i] if prev else 0
        c = prev[i - bpp] if prev and i >= bpp else 0
        pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][ftype]
        out.append((v - pred) & 0xFF)
    return bytes(out)


def _image_data(samples, depth, bpp):
    """Filtered rows of one (sub-)image, filter type cycling 0..4 by row."""
    data, prev = b"", None
    for y in range(samples.shape[0]):
        raw = _pack_row(samples[y].reshape(-1), depth)
        data += _filter(raw, prev, y % 5, bpp)
        prev = raw
    return data


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_encode(samples, color_type, depth, interlace=False, palette=None, trns=None, before_idat=b""):
    """samples: [h, w, c] sample values (palette indices for colour type 3)."""
    h, w, c = samples.shape
    assert c == CHANNELS[color_type]
    bpp = max(1, c * depth // 8)
    if interlace:
        data = b""
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                data += _image_data(sub, depth, bpp)
    else:
        data = _image_data(samples, depth, bpp)
    out = b"\x89PNG\r\n\x1a\n"
    out += _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        out += _chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    out += before_idat
    out += _chunk(b"IDAT", zlib.compress(data, 9))
    out += _chunk(b"IEND", b"")
    return out


def tiff_orientation(value, big=False, typ=3):
    """A TIFF header and an IFD0 of one entry: Orientation = value."""
    e = ">" if big else "<"
    head = (b"MM\0*" if big else b"II*\0") + struct.pack(e + "I", 8)
    if typ == 3:
        val = struct.pack(e + "HH", value, 0)
    else:
        val = struct.pack(e + "I", value)
    return head + struct.pack(e + "H", 1) + struct.pack(e + "HHI", 0x0112, typ, 1) + val + struct.pack(e + "I", 0)


def xmp_packet(value):
    return (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="%d"/></rdf:RDF></x:xmpmeta>'
            b'<?xpacket end="w"?>' % value)


def png_cases():
    """name -> (file bytes, expected RGB [h, w, 3] or None for PIL's own)"""
    rgb = pattern(W, H, 1).astype(np.int64)
    grey = rgb[..., 1]
    rgbi = pattern(WI, HI, 2).astype(np.int64)
    rng = np.random.default_rng(3)
    alpha = rng.integers(0, 256, (H, W, 1))
    wide = rgb * 257 + rng.integers(0, 257, rgb.shape)         # 16-bit, low bytes not a copy
    wide = np.clip(wide, 0, 65535)
    pal = np.concatenate([rng.integers(0, 256, (256, 3))], 0)
    idx = (rgb[..., :1] * 7 + rgb[..., 1:2] * 3) % 256
    c = {}
    for d in (1, 2, 4, 8):
        v = grey[..., None] >> (8 - d)
        c[f"g{d}.png"] = png_encode(v, 0, d)
        c[f"p{d}.png"] = png_encode(idx % (1 << d), 3, d, palette=pal[: 1 << d])
    c["g16.png"] = png_encode(wide[..., 1:2], 0, 16)
    c["g8_trns.png"] = png_encode(grey[..., None], 0, 8, trns=struct.pack(">H", int(grey[0, 0])))
    c["ga8.png"] = png_encode(np.concatenate([grey[..., None], alpha], -1), 4, 8)
    c["ga16.png"] = png_encode(np.concatenate([wide[..., 1:2], alpha * 257], -1), 4, 16)
    c["rgb8.png"] = png_encode(rgb, 2, 8)
    c["rgb16.png"] = png_encode(wide, 2, 16)
    c["rgb8_trns.png"] = png_encode(rgb, 2, 8, trns=struct.pack(">HHH", *[int(v) for v in rgb[0, 0]]))
    c["rgba8.png"] = png_encode(np.concatenate([rgb, alpha], -1), 6, 8)
    c["rgba16.png"] = png_encode(np.concatenate([wide, alpha * 257], -1), 6, 16)
    c["p8_trns.png"] = png_encode(idx, 3, 8, palette=pal, trns=bytes(range(0, 200, 3)))
    c["p4_trns.png"] = png_encode(idx % 16, 3, 4, palette=pal[:16], trns=b"\x00\x80")
    # interlaced
    widei = np.clip(rgbi * 257 + 100, 0, 65535)
    c["rgb8_i.png"] = png_encode(rgbi, 2, 8, interlace=True)
    c["g4_i.png"] = png_encode(rgbi[..., :1] >> 4, 0, 4, interlace=True)
    c["p8_i.png"] = png_encode((rgbi[..., :1] * 5 + rgbi[..., 2:3]) % 256, 3, 8, interlace=True, palette=pal)
    c["rgba16_i.png"] = png_encode(np.concatenate([widei, widei[..., :1]], -1), 6, 16, interlace=True)
    c["g16_i.png"] = png_encode(widei[..., 2:3], 0, 16, interlace=True)
    # orientation: eXIf (rotate 90 clockwise), XMP in iTXt (rotate 90 anticlockwise)
    c["rgb8_exif6.png"] = png_encode(rgb, 2, 8, before_idat=_chunk(b"eXIf", tiff_orientation(6)))
    # a 1-pixel-wide image turned: the same bytes, the sides swapped
    col = rgb[:, :1, 1:2]
    c["g8_1wide_exif5.png"] = png_encode(col, 0, 8, before_idat=_chunk(b"eXIf", tiff_orientation(5)))
    c["g8_1wide_exif8.png"] = png_encode(col, 0, 8, before_idat=_chunk(b"eXIf", tiff_orientation(8, big=True)))
    itxt = b"XML:com.adobe.xmp\0\0\0\0\0" + xmp_packet(8)
    c["rgb8_xmp8.png"] = png_encode(rgb, 2, 8, before_idat=_chunk(b"iTXt", itxt))
    return c


# ---- JPEG -------------------------------------------------------------------

def jpeg_cases():
    rgb = pattern(WJ, HJ, 4)
    im = Image.fromarray(rgb)
    c = {}

    def save(name, image, **kw):
        b = io.BytesIO()
        image.save(b, "JPEG", quality=90, **kw)
        c[name] = b.getvalue()

    save("j444.jpg", im, subsampling=0)
    save("j422.jpg", im, subsampling=1)
    save("j420.jpg", im, subsampling=2)
    save("j420_prog.jpg", im, subsampling=2, progressive=True)
    save("j444_prog.jpg", im, subsampling=0, progressive=True, optimize=True)
    save("j420_rst.jpg", im, subsampling=2, restart_marker_blocks=3)
    save("grey.jpg", im.convert("L"))
    save("grey_prog.jpg", im.convert("L"), progressive=True)
    cmyk = np.concatenate([255 - rgb, rgb[..., :1] // 3], -1)
    save("cmyk.jpg", Image.fromarray(cmyk, "CMYK"))
    small = Image.fromarray(pattern(WO, HO, 5))
    for o in range(1, 9):
        ex = Image.Exif()
        ex[0x0112] = o
        save(f"orient{o}.jpg", small, subsampling=2, exif=ex.tobytes())
    save("orient6_be.jpg", small, subsampling=2, exif=b"Exif\0\0" + tiff_orientation(6, big=True))
    save("orient3_long.jpg", small, subsampling=2, exif=b"Exif\0\0" + tiff_orientation(3, typ=4))
    save("xmp5.jpg", small, subsampling=2, xmp=xmp_packet(5))
    # Exif without Orientation: XMP is read; with it: XMP is not
    ex = Image.Exif()
    ex[0x010F] = "sdc"
    save("xmp7_exif.jpg", small, subsampling=2, exif=ex.tobytes(), xmp=xmp_packet(7))
    ex[0x0112] = 1
    save("xmp7_exif1.jpg", small, subsampling=2, exif=ex.tobytes(), xmp=xmp_packet(7))
    return c


def load_image(data):
    """diffusers.utils.load_image on a file's bytes."""
    im = Image.open(io.BytesIO(data))
    im = ImageOps.exif_transpose(im)
    with warnings.catch_warnings():  # "Palette images with Transparency expressed in bytes ..."
        warnings.simplefilter("ignore", UserWarning)
        return im.convert("RGB")


# ---- resize -----------------------------------------------------------------

RESIZE = {
    # source name: (w, h, seed), [(W, H), ...]
    # PIL 13 resizes vertically first when in_h - H > 2 (in_w - W): 70x20,
    # 63x34 and 64x9 do; 62x34 sits on the boundary and does not
    "rgb72x54": ((72, 54, 6), [(24, 18), (31, 22), (2, 3), (72, 30), (70, 20), (62, 34), (63, 34)]),
    "l72x54": ((72, 54, 6), [(24, 18), (31, 22), (70, 20)]),
    "rgb20x16": ((20, 16, 7), [(50, 40)]),
    "l20x16": ((20, 16, 7), [(50, 40)]),
    "rgb33x17": ((33, 17, 8), [(64, 48), (17, 33), (70, 17), (33, 40), (33, 17), (64, 9)]),
    "l33x17": ((33, 17, 8), [(64, 48)]),
    "rgb1x37": ((1, 37, 10), [(1, 12), (4, 50), (3, 37)]),
    "l1x37": ((1, 37, 10), [(1, 12), (5, 64)]),
    "rgb40x1": ((40, 1, 11), [(13, 1), (13, 4), (100, 1)]),
}


def make(out):
    folder = os.path.join(out, "images")
    os.makedirs(folder, exist_ok=True)
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
    ref = {}
    files = {**png_cases(), **jpeg_cases()}
    for name, data in sorted(files.items()):
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(data)
        im = load_image(data)
        rgb = np.asarray(im)
        if name.startswith("g16"):
            # PIL clips (checked here); sdc and the expected pixels take the high byte
            raw = Image.open(io.BytesIO(data))
            assert raw.mode == "I;16", raw.mode
            v = np.asarray(raw).astype(np.int64)
            assert (rgb[..., 0] == np.minimum(v, 255)).all(), "PIL no longer clips 16-bit grey"
            rgb = np.repeat((v >> 8).astype(np.uint8)[..., None], 3, -1)
            im = Image.fromarray(rgb)
        ref[f"decode.{name}.rgb"] = np.ascontiguousarray(rgb)
        ref[f"decode.{name}.l"] = np.asarray(im.convert("L"))[..., None].copy()
    for src, ((w, h, seed), sizes) in RESIZE.items():
        img = Image.fromarray(pattern(w, h, seed))
        if src.startswith("l"):
            img = img.convert("L")
        a = np.asarray(img)
        ref[f"src.{src}"] = (a if a.ndim == 3 else a[..., None]).copy()
        for tw, th in sizes:
            r = np.asarray(img.resize((tw, th), Image.LANCZOS))
            if tw != w and th != h:  # the pass order sdc assumes is PIL's
                v_first = th < h and h - th > 2 * (w - tw)
                two = [(tw, h), (tw, th)] if not v_first else [(w, th), (tw, th)]
                assert (np.asarray(img.resize(two[0], Image.LANCZOS).resize(two[1], Image.LANCZOS)) == r).all(), \
                    f"{src} -> {tw}x{th}: PIL's pass order is not the one assumed"
            ref[f"resize.{src}.{tw}x{th}"] = (r if r.ndim == 3 else r[..., None]).copy()
    from safetensors.numpy import save_file

    meta = {"pil": Image.__version__, "libjpeg_turbo": str(features.version("libjpeg_turbo"))}
    save_file(ref, os.path.join(folder, "ref.safetensors"), metadata=meta)
    os.chmod(os.path.join(folder, "ref.safetensors"), 0o644)
    total = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"  {len(files)} image files, {len(ref)} reference arrays, {total} bytes in {folder}")
