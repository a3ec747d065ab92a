/* libFuzzer harness: reading input images (image/image_read.c: format
 * sniffing, PNG through libpng, JPEG through libjpeg-turbo, Exif and XMP
 * orientation) and the Lanczos resize and convert (image/resize.c).
 *
 * Input: the bytes of one image file, read from an in-memory file
 * (fz_memfile) with channels 3 and with channels 1, at most MAX_PIXELS
 * pixels so that a header cannot make the fuzzer allocate much.  The
 * resize's size comes from the input's length and a middle byte (1..
 * MAX_OUT a side, up or down).  Properties: a failure leaves the image
 * empty and sets a message; both loads succeed or fail together; a loaded
 * image has sides 1..SDC_IMAGE_MAX_SIDE within MAX_PIXELS; the channels 1
 * load equals the channels 3 load converted to 1 (image_read.h: grey is
 * kept, the formula is the identity on it); resize and convert give the
 * asked size and channels. */
#include "fuzz_util.h"

#include <stdint.h>
#include <string.h>

#include "image/image_read.h"

#define MAX_PIXELS ((int64_t)1 << 20)
enum { MAX_OUT = 64 };

static void check_loaded(sdc_status st, const sdc_image *img, int channels) {
    fz_report(channels == 3 ? "load rgb" : "load l", st, sdc_last_error());
    if (st != SDC_OK) {
        FZ_ASSERT(img->data == NULL && img->width == 0 && img->height == 0 && img->channels == 0,
                  "failed load left the image set");
        FZ_ASSERT(*sdc_last_error() != 0, "failure (%d) without a message", (int)st);
        return;
    }
    FZ_ASSERT(img->data != NULL && img->channels == channels, "channels %d", img->channels);
    FZ_ASSERT(img->width >= 1 && img->width <= SDC_IMAGE_MAX_SIDE && img->height >= 1 &&
                  img->height <= SDC_IMAGE_MAX_SIDE &&
                  (int64_t)img->width * img->height <= MAX_PIXELS,
              "size %dx%d", img->width, img->height);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fz_memfile(data, size, path);
    sdc_image rgb = {0}, grey = {0};
    sdc_status st3 = sdc_image_load(path, 3, MAX_PIXELS, &rgb);
    check_loaded(st3, &rgb, 3);
    sdc_status st1 = sdc_image_load(path, 1, MAX_PIXELS, &grey);
    check_loaded(st1, &grey, 1);
    close(fd);
    FZ_ASSERT((st3 == SDC_OK) == (st1 == SDC_OK), "channels 3: %d, channels 1: %d", (int)st3,
              (int)st1);
    if (st3 != SDC_OK || st1 != SDC_OK) {
        sdc_image_free(&rgb);
        sdc_image_free(&grey);
        return 0;
    }

    sdc_image l = {0}, small = {0}, small_l = {0}, back = {0};
    FZ_ASSERT(sdc_image_convert(&rgb, 1, &l) == SDC_OK, "convert: %s", sdc_last_error());
    FZ_ASSERT(l.width == grey.width && l.height == grey.height, "sizes %dx%d, %dx%d", l.width,
              l.height, grey.width, grey.height);
    FZ_ASSERT(memcmp(l.data, grey.data, (size_t)l.width * l.height) == 0,
              "channels 1 is not channels 3 converted");

    size_t mid = data[size / 2];
    int w = 1 + (int)((size * 7 + mid) % MAX_OUT), h = 1 + (int)((size * 13 + mid * 3) % MAX_OUT);
    sdc_status st = sdc_image_resize(&rgb, w, h, &small);
    fz_report("resize", st, sdc_last_error());
    FZ_ASSERT(st == SDC_OK, "resize %dx%d -> %dx%d: %s", rgb.width, rgb.height, w, h,
              sdc_last_error());
    FZ_ASSERT(small.width == w && small.height == h && small.channels == 3, "resized %dx%dx%d",
              small.width, small.height, small.channels);
    FZ_ASSERT(sdc_image_resize(&grey, w, h, &small_l) == SDC_OK, "resize L: %s",
              sdc_last_error());
    FZ_ASSERT(small_l.width == w && small_l.height == h && small_l.channels == 1,
              "resized L %dx%dx%d", small_l.width, small_l.height, small_l.channels);
    FZ_ASSERT(sdc_image_convert(&small_l, 3, &back) == SDC_OK, "convert 1 -> 3: %s",
              sdc_last_error());
    FZ_ASSERT(back.channels == 3 && back.width == w && back.height == h, "converted %dx%dx%d",
              back.width, back.height, back.channels);

    sdc_image_free(&back);
    sdc_image_free(&small_l);
    sdc_image_free(&small);
    sdc_image_free(&l);
    sdc_image_free(&grey);
    sdc_image_free(&rgb);
    return 0;
}
