#include "dev/pixel_convert.h"

int pixel_convert_supported(unsigned bpp)
{
	return bpp == 8 || bpp == 15 || bpp == 16 || bpp == 24;
}

/* Widens a c-bit colour component to 8 bits, replicating its high bits so that all-ones stays 0xff. */
static uint32_t widen(uint32_t v, unsigned bits)
{
	return (v << (8 - bits)) | (v >> (2 * bits - 8));
}

static uint32_t from_565(uint16_t p)
{
	return widen(p >> 11, 5) << 16 | widen((p >> 5) & 0x3f, 6) << 8 | widen(p & 0x1f, 5);
}

static uint32_t from_555(uint16_t p)
{
	return widen((p >> 10) & 0x1f, 5) << 16 | widen((p >> 5) & 0x1f, 5) << 8 | widen(p & 0x1f, 5);
}

static void convert_row(const uint8_t *src, unsigned bpp, uint32_t w, const uint32_t palette[256], uint32_t *dst)
{
	for (uint32_t x = 0; x < w; x++) {
		switch (bpp) {
		case 8:
			dst[x] = palette[src[x]];
			break;
		case 15:
			dst[x] = from_555((uint16_t)(src[2 * x] | src[2 * x + 1] << 8));
			break;
		case 16:
			dst[x] = from_565((uint16_t)(src[2 * x] | src[2 * x + 1] << 8));
			break;
		case 24: /* bytes blue, green, red */
			dst[x] = (uint32_t)src[3 * x + 2] << 16 | (uint32_t)src[3 * x + 1] << 8 | src[3 * x];
			break;
		}
	}
}

void pixel_convert(const uint8_t *src, uint32_t stride, unsigned bpp, uint32_t w, uint32_t h,
		   const uint32_t palette[256], uint32_t *dst)
{
	for (uint32_t y = 0; y < h; y++)
		convert_row(src + (uint64_t)y * stride, bpp, w, palette, dst + (uint64_t)y * w);
}
