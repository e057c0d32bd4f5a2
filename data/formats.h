// formats.h - data/'s file formats parsed from bytes in memory. datasets.c reads a file and hands its bytes to these;
// the fuzz targets (fuzz/) and tests call them directly. None of them exits, prints, or trusts a size from a header
// before checking it against the bytes given: on bad input each returns -1 with one line in err naming `name` (the
// file) and the problem, and leaves the Dataset empty (dataset_free'd).
//
// Legend: N images; stored layouts as in data.h: pixels (N, C, H, W) uint8, labels (N), -1 = unlabeled.
#ifndef FORMATS_H
#define FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include "data.h"

// ---- CIFAR-10 / CIFAR-100 binary: records of label byte(s) (CIFAR-100: coarse, fine) + 3 x 32 x 32 pixels ----
enum { CIFAR_PIXELS = 3 * 32 * 32 };
int cifar_record_bytes(bool c100);   // 3073 or 3074
// The whole dataset from one file's bytes (n must be a non-zero multiple of the record).
int cifar_parse(Dataset *ds, bool c100, const uint8_t *buf, size_t n, const char *name, char *err, int err_size);
// Pieces the file loader uses to read big files in chunks: decode the records in buf (n a multiple of the record)
// into images first.. of an allocated ds; rec0 is buf's first record within its file (for messages).
int cifar_records_into(Dataset *ds, long first, const uint8_t *buf, size_t n, long rec0, bool c100, const char *name,
                       char *err, int err_size);

// ---- STL-10 binary: 3 x 96 x 96 images, each channel column-major; labels one byte each, 1..10 ----
enum { STL_SIDE = 96, STL_PLANE = STL_SIDE * STL_SIDE, STL_IMAGE = 3 * STL_PLANE };
// The whole dataset from an images file x and its labels file y (y NULL: unlabeled, labels -1).
int stl_parse(Dataset *ds, const uint8_t *x, size_t x_n, const char *x_name, const uint8_t *y, size_t y_n,
              const char *y_name, char *err, int err_size);
// Chunk pieces: images (x_n a multiple of STL_IMAGE) and labels into slots first.. of an allocated ds; lab0 is the
// chunk's first label within its file (for messages).
int stl_images_into(Dataset *ds, long first, const uint8_t *x, size_t x_n, const char *name, char *err, int err_size);
int stl_labels_into(Dataset *ds, long first, const uint8_t *y, size_t y_n, long lab0, const char *name, char *err,
                    int err_size);

// ---- IDX (Fashion-MNIST, MNIST): big-endian header, then the payload; each file gzip (1f 8b) or plain ----
// Gzip data is inflated as the parser asks for it, into a buffer that grows only as data arrives (capped at the
// header's claim), and the stream must end with a valid CRC-32 and length trailer and nothing after it. A plain
// file's claim is compared with its size before anything is allocated.
int idx_parse(Dataset *ds, bool fashion, const uint8_t *images, size_t images_n, const char *images_name,
              const uint8_t *labels, size_t labels_n, const char *labels_name, char *err, int err_size);

// ---- one image file: JPEG (libjpeg-turbo), PNG or BMP (stb_image) ----
// Limits checked from the header before any pixel is decoded: a decoded image costs 3 bytes per pixel plus a float
// plane (4 bytes per pixel) while resizing, so 16.7 M pixels cost ~117 MB per decoding thread; the aspect limit
// bounds the resized image (shorter side S, longer at most 16 S) before its centre crop.
#define IMAGE_MAX_PIXELS (4096L * 4096)
#define IMAGE_MAX_ASPECT 16
#define IMAGE_MAX_FILE_BYTES (256L << 20)
// The format from the magic bytes, the size from the header, and (PNG) every chunk length within the file and a
// valid IHDR; refuses sizes over the limits. why gets the reason (no file name: the caller adds it).
int image_header(const uint8_t *buf, size_t n, int *w, int *h, char *why, int why_size);
// image_header, then (PNG) every chunk's CRC and the image data inflating to exactly what IHDR needs, then the
// decode into dst (3, side, side): as stored when !resize (the image must be side x side), else torchvision's
// Resize(side) (bicubic, shorter side -> side) then CenterCrop(side). Any libjpeg warning refuses the file.
int image_decode(const uint8_t *buf, size_t n, int side, bool resize, uint8_t *dst, char *why, int why_size);

#endif
