#include "ui/screenshot.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/display.h"

/* libpng reports errors by longjmp; kept in one function with nothing to leak across it. */
static int write_png(FILE *f, const uint8_t *rgb, uint32_t w, uint32_t h)
{
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png ? png_create_info_struct(png) : NULL;

	if (!info) {
		png_destroy_write_struct(&png, NULL);
		return -1;
	}
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		return -1;
	}
	png_init_io(png, f);
	png_set_compression_level(png, 6);
	png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
		     PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (uint32_t y = 0; y < h; y++)
		png_write_row(png, rgb + (size_t)y * w * 3);
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	return 0;
}

int screenshot_png(struct vm *vm, const char *path, char *err, size_t errlen)
{
	uint8_t *rgb = NULL;
	uint32_t w, h;
	size_t tlen = strlen(path) + 16;
	char *tmp;
	FILE *f;
	int rc = -1;

	if (display_capture_rgb(vm, &rgb, &w, &h, err, errlen) < 0)
		return -1;
	if (!(tmp = malloc(tlen))) {
		snprintf(err, errlen, "out of memory");
		free(rgb);
		return -1;
	}
	snprintf(tmp, tlen, "%s.tmp.XXXXXX", path);
	int fd = mkstemp(tmp);
	if (fd < 0 || !(f = fdopen(fd, "wb"))) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		goto out;
	}
	if (write_png(f, rgb, w, h) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, errno ? strerror(errno) : "PNG encoding failed");
		fclose(f);
		unlink(tmp);
		goto out;
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	free(tmp);
	free(rgb);
	return rc;
}
