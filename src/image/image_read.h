/* Input images (img2img's init image, inpainting's mask): PNG and JPEG read
 * as diffusers reads them, and PIL's Lanczos resize.
 *
 * diffusers' load_image is PIL's Image.open, ImageOps.exif_transpose, then
 * .convert("RGB"); its VaeImageProcessor.preprocess resizes with
 * Image.resize((W, H), Image.LANCZOS) (no reducing_gap) and, for the
 * inpainting mask, then converts with .convert("L").  The functions below
 * give PIL 13's pixels; what differs is listed under "Differences".
 *
 * Reading (sdc_image_load):
 *   - The format is told by the first bytes, never by the name.  GIF, WebP,
 *     TIFF, BMP and HEIF/AVIF are recognised and refused by name
 *     (SDC_ERR_UNSUPPORTED); anything else that is not PNG or JPEG is
 *     SDC_ERR_FORMAT.  Only regular files are read (a folder, FIFO or device
 *     is SDC_ERR_IO).
 *   - PNG (libpng): every colour type and bit depth, interlaced or not.
 *     Palettes are expanded, 1/2/4-bit grey scaled to 8 bits (x255, x85,
 *     x17), alpha and tRNS dropped without compositing (convert("RGB")),
 *     16-bit samples reduced to their high byte (PIL's "RGB;16B" unpacking:
 *     v >> 8, not rounded).  Gamma, sRGB, iCCP, sBIT are ignored, as PIL
 *     ignores them.  A file that ends after the last row's data but before
 *     IEND is read (as PIL reads it); one cut before the end of the image
 *     data's zlib stream is SDC_ERR_FORMAT.
 *   - JPEG (libjpeg-turbo): baseline and progressive; grey,
 *     YCbCr/RGB and CMYK/YCCK (CMYK as PIL: the samples taken as Adobe's
 *     inverted CMYK, then PIL's cmyk2rgb: v = nk - nk*c/255 rounded, nk =
 *     255 - k).  Decoded as PIL decodes: JDCT_ISLOW, fancy upsampling.
 *     Every libjpeg warning about the data (premature end of file, corrupt
 *     entropy data, bad progression) is an error, never a partly grey
 *     image; warnings that leave the pixels intact (extraneous bytes before
 *     a marker, unknown JFIF revision or Adobe transform, bad ICC marker)
 *     are ignored.  12-bit and lossless JPEG are SDC_ERR_UNSUPPORTED, as in
 *     PIL.  More than 1000 scans is SDC_ERR_FORMAT (a CPU-time bomb).
 *   - Orientation as ImageOps.exif_transpose: the Orientation tag (0x0112)
 *     of IFD0 of the Exif data (JPEG: the APP1 "Exif" segments joined as
 *     PIL joins them; PNG: an eXIf chunk before the image data), else
 *     XMP's tiff:Orientation (JPEG: the APP1 XMP segment; PNG: an iTXt
 *     "XML:com.adobe.xmp" before the image data).  2..8 flip/rotate the
 *     image; anything else (absent, 1, malformed, out of range) leaves it.
 *   - channels 3: RGB; grey input is replicated.  channels 1: what
 *     .convert("RGB").convert("L") gives: L = (19595 R + 38470 G + 7471 B
 *     + 0x8000) >> 16 (ITU-R 601-2, PIL's integer form; checked equal to PIL
 *     over all 2^24 colours); grey input is kept as it is (the formula is
 *     the identity on grey).
 *   - Limits, checked from the header before any pixel memory: each side 1..
 *     SDC_IMAGE_MAX_SIDE and width*height <= max_pixels.  libpng's own
 *     limits are set too (user limits, chunk cache, 8 MiB per ancillary
 *     chunk), so that a hostile file cannot make it allocate more.
 *
 * Differences from PIL (deliberate):
 *   - 16-bit grey PNG: PIL 13 opens it as "I;16" and convert("RGB") /
 *     convert("L") clip the 16-bit value to 255 (every value >= 255 becomes
 *     white: a normal 16-bit image comes out nearly all white).  sdc takes
 *     the high byte, as PIL does for 16-bit RGB, RGBA and grey+alpha.
 *   - Exif in PNG's "Raw profile type exif" text chunks, and eXIf / XMP
 *     chunks after the image data, are not read (PIL reads them).
 *   - An Orientation stored as a rational or float (PIL honours 6/1 or
 *     6.0), and Exif in a BigTIFF layout, are ignored.
 *   - PIL accepts a PNG whose file ends inside the last IDAT chunk after the
 *     last row's data (zlib checksum or CRC cut off); sdc refuses it.
 *
 * Resize (sdc_image_resize): Image.resize((W, H), Image.LANCZOS) for 8-bit
 * RGB and L images, bit for bit (PIL's src/libImaging/Resample.c is the
 * specification; resize.c states its steps).
 *
 * diffusers' mask: preprocess resizes first and converts to L after, so a
 * colour mask is loaded with channels 3, resized, then sdc_image_convert(...,
 * 1, ...); for a grey mask the order makes no difference.
 *
 * Every function leaves *out empty ({0}) on failure and sets the thread's
 * message (sdc_last_error) naming the file and the problem. */
#ifndef SDC_IMAGE_IMAGE_READ_H
#define SDC_IMAGE_IMAGE_READ_H

#include <stdint.h>

#include "sdc.h"

/* The largest side sdc reads or makes: PNG allows 2^31-1, JPEG 65535. */
#define SDC_IMAGE_MAX_SIDE 65535
/* A max_pixels for callers without their own: PIL's Image.MAX_IMAGE_PIXELS
 * (it warns above it, and refuses above twice it). */
#define SDC_IMAGE_DEFAULT_MAX_PIXELS ((int64_t)89478485)

/* Reads the PNG or JPEG at path into *out (data malloc'ed, owned by the
 * caller: sdc_image_free): rows top to bottom after the orientation is
 * applied, channels interleaved, channels 3 (RGB) or 1 (L).  max_pixels >=
 * 1: a larger width*height is refused before decoding.
 * SDC_ERR_IO: cannot open or read, not a regular file.
 * SDC_ERR_FORMAT: empty, not an image, corrupt, truncated, size out of range.
 * SDC_ERR_UNSUPPORTED: another image format; 12-bit, lossless or 2-component
 * JPEG.
 * SDC_ERR_INVALID_ARG: path NULL or empty, channels not 1 or 3, max_pixels < 1.
 * SDC_ERR_NOMEM. */
sdc_status sdc_image_load(const char *path, int channels, int64_t max_pixels, sdc_image *out);

/* PIL's Image.resize((width, height), Image.LANCZOS) of in (channels 1 or
 * 3) into *out (same channels; data malloc'ed, owned by the caller).  The
 * same size gives a copy.  width, height: 1..SDC_IMAGE_MAX_SIDE.
 * SDC_ERR_INVALID_ARG, SDC_ERR_NOMEM. */
sdc_status sdc_image_resize(const sdc_image *in, int width, int height, sdc_image *out);

/* PIL's convert: 3 -> 1 channels is convert("L") (the formula above), 1 -> 3
 * replicates, the same count copies.  *out's data malloc'ed, owned by the
 * caller.  SDC_ERR_INVALID_ARG, SDC_ERR_NOMEM. */
sdc_status sdc_image_convert(const sdc_image *in, int channels, sdc_image *out);

#endif
