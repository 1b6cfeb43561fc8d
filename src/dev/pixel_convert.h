#ifndef HYVE_DEV_PIXEL_CONVERT_H
#define HYVE_DEV_PIXEL_CONVERT_H

#include <stdint.h>

/*
 * Bochs DISPI modes below 32 bits per pixel, converted to the x8r8g8b8 that
 * the VNC server and screenshots take. Firmware and boot loaders choose
 * such modes themselves (GRUB's video_bochs picks 24 bpp), so a display
 * that showed only 32 bpp would stay blank for them.
 */

/* Whether bpp (8, 15, 16, 24) can be converted; 32 needs no conversion. */
int pixel_convert_supported(unsigned bpp);

/*
 * Converts w x h pixels of bpp bits from src (stride bytes per row) into dst
 * (w x8r8g8b8 pixels per row, rows packed). palette: 256 x8r8g8b8 colours,
 * used for 8 bpp only. The caller has checked that every source row lies in
 * its buffer.
 */
void pixel_convert(const uint8_t *src, uint32_t stride, unsigned bpp, uint32_t w, uint32_t h,
		   const uint32_t palette[256], uint32_t *dst);

#endif
