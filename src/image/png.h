/* PNG output: 8-bit RGB with text chunks, written atomically, and the
 * "parameters" text that AUTOMATIC1111's web UI writes (and reads back in
 * its PNG Info tab).
 *
 * Atomic write: the image goes to a temporary file in the destination's
 * folder (mkstemp), is fsync'ed, and is then linked into place, so the
 * destination is either absent or complete, never half-written.  Without
 * `overwrite` an existing destination is never replaced: link() fails when
 * the name exists, so the check and the creation are one step.  Where the
 * file system has no hard links (EPERM, ENOTSUP, ...) the fallback is an
 * explicit existence check followed by rename() (a small window remains
 * there).  On any failure the temporary file is removed.
 *
 * Only regular files are replaced.  An existing path that is a device node,
 * FIFO, socket or folder, or a symbolic link to one, is refused (SDC_ERR_IO)
 * even with `overwrite`: rename() would put the PNG in its place (as root,
 * /dev/null or /dev/full would be gone).  A symbolic link to a regular file,
 * and a dangling one, may be replaced: rename() replaces the link itself and
 * never writes through it, so the file it names is left as it is.  The path
 * is checked when the file is moved into place (a window remains between
 * that check and rename()), as well as by sdc_png_check_dest before the
 * work. */
#ifndef SDC_IMAGE_PNG_H
#define SDC_IMAGE_PNG_H

#include "sdc.h"

/* One text chunk.  key: 1..79 Latin-1 printable characters (ASCII here);
 * text: UTF-8.  Written as tEXt when every character is in Latin-1, else as
 * uncompressed iTXt (as PIL's PngInfo.add_text does).  Invalid UTF-8 bytes
 * become U+FFFD. */
typedef struct sdc_png_text {
    const char *key;
    const char *text;
} sdc_png_text;

/* Writes img (channels must be 3) to path.  texts: n_texts chunks, may be
 * NULL when n_texts is 0.  overwrite: 0 -> SDC_ERR_IO if path exists; 1 ->
 * an existing regular file (or link, see above) is replaced, anything else
 * is SDC_ERR_IO. */
sdc_status sdc_png_write(const char *path, const sdc_image *img, const sdc_png_text *texts,
                         int n_texts, int overwrite);

/* Checks, before a long computation, that sdc_png_write(path, ...) can
 * succeed: the folder exists and is writable, and path does not exist, or
 * (with overwrite) is a regular file, a symbolic link to one or a dangling
 * link; never a folder, device node, FIFO or socket, nor a link to one.
 * SDC_ERR_IO with a message. */
sdc_status sdc_png_check_dest(const char *path, int overwrite);

/* AUTOMATIC1111's infotext for one image:
 *   <prompt>
 *   Negative prompt: <negative>            (only when not empty)
 *   Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5,
 *   Seed: 42, Size: 512x512, Model: <name>, Denoising strength: 0.75,
 *   Clip skip: 2, Version: sdc 0.1.0
 * (the last three lines are one; Denoising strength only with an init
 * image, as A1111's img2img and inpainting write it; A1111's "Mask blur"
 * is left out: sdc does not blur the mask; Clip skip only above 1, as
 * A1111).  The prompt keeps its <lora:...> tags, and the LoRAs given in
 * p->loras are appended to it as tags " <lora:NAME:W>" (NAME: the file
 * name without .safetensors), which A1111 needs to apply them.  Sampler display names are A1111's: Euler,
 * Euler a, Heun, DPM++ 2M, DDIM, PLMS (pndm), LMS.  Schedule type:
 * "Automatic" for the discrete schedule (A1111's label for a sampler's
 * default, which for its k-diffusion samplers is the model's own discrete
 * sigmas) and "Karras" for Karras sigmas.  Values holding ',', ':' or a
 * newline are written as JSON strings, as A1111's quote() does.  Returns a
 * malloc'ed string the caller frees, or NULL (out of memory). */
char *sdc_infotext(const sdc_gen_params *p, const char *model_name);

/* A1111's display name of a sampler ("Euler a"); "Unknown" if out of range. */
const char *sdc_sampler_display_name(sdc_sampler s);

#endif
