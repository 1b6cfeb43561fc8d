/*
 * Helpers shared by the AHCI port and its devices (see sata.h).
 */
#include <string.h>

#include "sata/sata.h"

/* Walks the buffers from byte off: fn gets each piece; returns the bytes visited (at most len). */
static size_t sg_walk(const struct sata_sg *sg, uint64_t off, size_t len,
		      void (*fn)(uint8_t *guest, size_t done, size_t n, void *opaque), void *opaque)
{
	size_t done = 0;

	for (unsigned i = 0; i < sg->n && done < len; i++) {
		size_t l = sg->iov[i].iov_len;
		if (off >= l) {
			off -= l;
			continue;
		}
		size_t n = l - (size_t)off;
		if (n > len - done)
			n = len - done;
		fn((uint8_t *)sg->iov[i].iov_base + off, done, n, opaque);
		done += n;
		off = 0;
	}
	return done;
}

static void put_piece(uint8_t *guest, size_t done, size_t n, void *opaque)
{
	memcpy(guest, (const uint8_t *)opaque + done, n);
}

static void get_piece(uint8_t *guest, size_t done, size_t n, void *opaque)
{
	memcpy((uint8_t *)opaque + done, guest, n);
}

size_t sata_sg_copy_to(const struct sata_sg *sg, uint64_t off, const void *src, size_t len)
{
	return sg_walk(sg, off, len, put_piece, (void *)src);
}

size_t sata_sg_copy_from(const struct sata_sg *sg, uint64_t off, void *dst, size_t len)
{
	return sg_walk(sg, off, len, get_piece, dst);
}

unsigned sata_sg_slice(const struct sata_sg *sg, uint64_t off, uint64_t len, struct iovec *out, unsigned max)
{
	unsigned k = 0;

	for (unsigned i = 0; i < sg->n && len && k < max; i++) {
		size_t l = sg->iov[i].iov_len;
		if (off >= l) {
			off -= l;
			continue;
		}
		size_t n = l - (size_t)off;
		if (n > len)
			n = (size_t)len;
		out[k++] = (struct iovec){ .iov_base = (uint8_t *)sg->iov[i].iov_base + off, .iov_len = n };
		len -= n;
		off = 0;
	}
	return k;
}

void sata_id_string(uint16_t *words, unsigned nwords, const char *s)
{
	size_t len = strlen(s);

	for (unsigned i = 0; i < nwords * 2; i++) {
		uint8_t c = i < len ? (uint8_t)s[i] : ' ';
		/* ATA strings put the first character of each pair in the high byte. */
		if (i % 2 == 0)
			words[i / 2] = (uint16_t)(c << 8);
		else
			words[i / 2] |= c;
	}
}

void sata_cmd_from_fis(const uint8_t fis[20], struct ata_cmd *c)
{
	c->command = fis[2];
	c->features = (uint16_t)(fis[3] | fis[11] << 8);
	c->lba = (uint64_t)fis[4] | (uint64_t)fis[5] << 8 | (uint64_t)fis[6] << 16 | (uint64_t)fis[8] << 24 |
		 (uint64_t)fis[9] << 32 | (uint64_t)fis[10] << 40;
	c->device = fis[7];
	c->count = (uint16_t)(fis[12] | fis[13] << 8);
	c->control = fis[15];
}

enum ata_protocol sata_protocol_of(uint8_t command)
{
	switch (command) {
	case 0xEC: /* IDENTIFY DEVICE */
	case 0xA1: /* IDENTIFY PACKET DEVICE */
	case 0x20: /* READ SECTOR(S) */
	case 0x24: /* READ SECTOR(S) EXT */
	case 0xC4: /* READ MULTIPLE */
	case 0x29: /* READ MULTIPLE EXT */
	case 0x2F: /* READ LOG EXT */
	case 0xB0: /* SMART (READ DATA, READ THRESHOLDS) */
		return ATA_PROT_PIO_IN;
	case 0x30: /* WRITE SECTOR(S) */
	case 0x34: /* WRITE SECTOR(S) EXT */
	case 0xC5: /* WRITE MULTIPLE */
	case 0x39: /* WRITE MULTIPLE EXT */
		return ATA_PROT_PIO_OUT;
	case 0xC8: /* READ DMA */
	case 0x25: /* READ DMA EXT */
	case 0xCA: /* WRITE DMA */
	case 0x35: /* WRITE DMA EXT */
	case 0x06: /* DATA SET MANAGEMENT */
	case 0x47: /* READ LOG DMA EXT */
		return ATA_PROT_DMA;
	case 0x60: /* READ FPDMA QUEUED */
	case 0x61: /* WRITE FPDMA QUEUED */
		return ATA_PROT_NCQ;
	case 0xA0: /* PACKET */
		return ATA_PROT_PACKET;
	default:
		return ATA_PROT_NODATA;
	}
}
