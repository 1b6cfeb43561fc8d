/*
 * The ATAPI CD-ROM: MMC-6/SPC packet commands on a read-only image of
 * 2048-byte blocks, one data track, a tray the guest and the control
 * socket open and close. See atapi_cd.h.
 *
 * State a guest observes besides the medium:
 * - sense data, set by the last command that ended in CHECK CONDITION and
 *   returned (then cleared) by REQUEST SENSE; any other command clears it,
 *   as ATAPI devices do (the host reads it right after the failure);
 * - one pending unit attention (power-on reset outranks medium change),
 *   reported once by the next command that may report it;
 * - one pending media event for GET EVENT STATUS NOTIFICATION;
 * - the tray (open or closed) and the guest's lock on it. A disc ejected by
 *   the guest stays in the open tray, so a later load brings it back, as
 *   on a real drive; the control socket's eject takes it out.
 */
#include "sata/atapi_cd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/blockdev.h"
#include "core/log.h"
#include "snapshot/state.h"

/* The longest disc a CD holds (80 minutes of 75 blocks a second); larger images are DVDs. */
#define CD_MAX_BLOCKS (80u * 60u * 75u)
/* Blocks before LBA 0 in MSF addresses (the two-second pregap). */
#define MSF_OFFSET 150u

#define VENDOR "HYVE"
#define PRODUCT "HYVE DVD-ROM"
#define REVISION "1.0"

/* SCSI sense keys and the additional sense codes this drive reports. */
enum {
	SENSE_NO_SENSE = 0x0,
	SENSE_NOT_READY = 0x2,
	SENSE_MEDIUM_ERROR = 0x3,
	SENSE_ILLEGAL_REQUEST = 0x5,
	SENSE_UNIT_ATTENTION = 0x6,
};
enum {
	ASC_UNRECOVERED_READ_ERROR = 0x11,
	ASC_INVALID_OPCODE = 0x20,
	ASC_LBA_OUT_OF_RANGE = 0x21,
	ASC_INVALID_FIELD_IN_CDB = 0x24,
	ASC_MEDIUM_MAY_HAVE_CHANGED = 0x28,
	ASC_POWER_ON_RESET = 0x29,
	ASC_INCOMPATIBLE_MEDIUM = 0x30,
	ASC_SAVING_NOT_SUPPORTED = 0x39,
	ASC_MEDIUM_NOT_PRESENT = 0x3a,
	ASC_REMOVAL_PREVENTED = 0x53,
};
#define ASCQ_NOT_PRESENT_TRAY_CLOSED 0x01
#define ASCQ_NOT_PRESENT_TRAY_OPEN 0x02
#define ASCQ_REMOVAL_PREVENTED 0x02
#define ASCQ_INCOMPATIBLE_FORMAT 0x02

/* GET EVENT STATUS NOTIFICATION media event codes (MMC-6 table 149). */
enum media_event {
	MEDIA_EVENT_NONE = 0,
	MEDIA_EVENT_EJECT_REQUEST = 1,
	MEDIA_EVENT_NEW_MEDIA = 2,
	MEDIA_EVENT_REMOVAL = 3,
	MEDIA_EVENT_MAX = MEDIA_EVENT_REMOVAL,
};
#define EVENT_CLASS_MEDIA 4
#define EVENT_CLASS_BUSY 6
#define EVENT_CLASSES_SUPPORTED (1u << EVENT_CLASS_MEDIA | 1u << EVENT_CLASS_BUSY)

/* MMC profiles. */
#define PROFILE_NONE 0x0000
#define PROFILE_CD_ROM 0x0008
#define PROFILE_DVD_ROM 0x0010

struct sense {
	uint8_t key, asc, ascq;
	uint8_t sks[3]; /* sense-key specific: the CDB field at fault for INVALID FIELD IN CDB */
};

struct atapi_cd {
	char owner[64];
	char serial[BLOCKDEV_SERIAL_MAX + 1];
	struct blockdev bd; /* the disc, open while one is in the tray */
	bool tray_open;
	bool locked;        /* PREVENT ALLOW MEDIUM REMOVAL */
	struct sense sense;
	uint8_t unit_attention; /* pending ASC (ASCQ 0), 0 for none */
	uint8_t media_event;    /* enum media_event pending for the guest */
};

/* A response a command builds before copying: large enough for the longest (GET CONFIGURATION). */
#define REPLY_MAX 256

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	put_be16(p, (uint16_t)(v >> 16));
	put_be16(p + 2, (uint16_t)v);
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)get_be16(p) << 16 | get_be16(p + 2);
}

/* Space-padded, not NUL-terminated (SCSI ASCII fields). */
static void put_ascii(uint8_t *p, size_t len, const char *s)
{
	size_t n = strnlen(s, len);

	memcpy(p, s, n);
	memset(p + n, ' ', len - n);
}

static bool has_disc(const struct atapi_cd *cd)
{
	return blockdev_is_open(&cd->bd);
}

static bool medium_loaded(const struct atapi_cd *cd)
{
	return has_disc(cd) && !cd->tray_open;
}

static uint64_t disc_blocks(const struct atapi_cd *cd)
{
	return has_disc(cd) ? cd->bd.size / ATAPI_CD_BLOCK : 0;
}

static bool disc_is_dvd(const struct atapi_cd *cd)
{
	return disc_blocks(cd) > CD_MAX_BLOCKS;
}

static uint16_t current_profile(const struct atapi_cd *cd)
{
	if (!medium_loaded(cd))
		return PROFILE_NONE;
	return disc_is_dvd(cd) ? PROFILE_DVD_ROM : PROFILE_CD_ROM;
}

/* READ CAPACITY and the TOC address blocks with 32 bits; an image that large is no disc anyway. */
static uint32_t lead_out_lba(const struct atapi_cd *cd)
{
	uint64_t blocks = disc_blocks(cd);

	return blocks > UINT32_MAX ? UINT32_MAX : (uint32_t)blocks;
}

/* ---- command completion ---- */

static void complete_ok(struct sata_result *res)
{
	res->status = ATA_STATUS_DRDY;
	res->error = 0;
}

static void check_condition(struct atapi_cd *cd, struct sata_result *res, uint8_t key, uint8_t asc, uint8_t ascq)
{
	cd->sense = (struct sense){ .key = key, .asc = asc, .ascq = ascq };
	res->status = ATA_STATUS_DRDY | ATA_STATUS_ERR;
	res->error = (uint8_t)(key << 4 | ATA_ERROR_ABRT);
}

/* INVALID FIELD IN CDB, pointing at byte (and bit, or -1 for the whole byte) of the CDB (SPC-4 4.5.2.4.2). */
static void invalid_field(struct atapi_cd *cd, struct sata_result *res, unsigned byte, int bit)
{
	check_condition(cd, res, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, 0);
	cd->sense.sks[0] = 0x80 | 0x40 | (bit >= 0 ? 0x08 | (uint8_t)(bit & 7) : 0);
	put_be16(cd->sense.sks + 1, (uint16_t)byte);
}

static void not_ready(struct atapi_cd *cd, struct sata_result *res)
{
	check_condition(cd, res, SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT,
			cd->tray_open ? ASCQ_NOT_PRESENT_TRAY_OPEN : ASCQ_NOT_PRESENT_TRAY_CLOSED);
}

/* Copies a built response, bounded by the CDB's allocation length and the buffers. */
static void reply(const struct sata_sg *sg, struct sata_result *res, const void *buf, size_t len, uint32_t alloc)
{
	if (len > alloc)
		len = alloc;
	res->transferred = sata_sg_copy_to(sg, 0, buf, len);
	complete_ok(res);
}

/* A closed tray with a disc: the disc is (again) ready, which the guest learns once. */
static void medium_arrived(struct atapi_cd *cd)
{
	if (cd->unit_attention != ASC_POWER_ON_RESET)
		cd->unit_attention = ASC_MEDIUM_MAY_HAVE_CHANGED;
	cd->media_event = MEDIA_EVENT_NEW_MEDIA;
}

static void medium_left(struct atapi_cd *cd)
{
	cd->media_event = MEDIA_EVENT_REMOVAL;
}

/* ---- SPC commands ---- */

static void cmd_test_unit_ready(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
				struct sata_result *res)
{
	(void)cd, (void)cdb, (void)sg;
	complete_ok(res); /* the dispatcher reported a missing disc */
}

static void fill_fixed_sense(uint8_t *p, const struct sense *s)
{
	memset(p, 0, 18);
	p[0] = 0x70; /* current error, fixed format */
	p[2] = s->key;
	p[7] = 10; /* additional sense length */
	p[12] = s->asc;
	p[13] = s->ascq;
	memcpy(p + 15, s->sks, 3);
}

/*
 * The sense of the command that just failed; else a pending unit attention
 * (reported here and so cleared, SPC-4 5.14); else the drive's condition.
 */
static void cmd_request_sense(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
			      struct sata_result *res)
{
	struct sense s = cd->sense;
	uint8_t buf[18];

	if (cdb[1] & 0x01) /* DESC: descriptor format is not supported */
		return invalid_field(cd, res, 1, 0);
	if (s.key == SENSE_NO_SENSE && cd->unit_attention) {
		s = (struct sense){ .key = SENSE_UNIT_ATTENTION, .asc = cd->unit_attention };
		cd->unit_attention = 0;
	} else if (s.key == SENSE_NO_SENSE && !medium_loaded(cd)) {
		s = (struct sense){ .key = SENSE_NOT_READY, .asc = ASC_MEDIUM_NOT_PRESENT,
				    .ascq = cd->tray_open ? ASCQ_NOT_PRESENT_TRAY_OPEN : ASCQ_NOT_PRESENT_TRAY_CLOSED };
	}
	cd->sense = (struct sense){ 0 };
	fill_fixed_sense(buf, &s);
	reply(sg, res, buf, sizeof(buf), cdb[4]);
}

static size_t inquiry_standard(uint8_t *buf)
{
	memset(buf, 0, 36);
	buf[0] = 0x05; /* CD/DVD device */
	buf[1] = 0x80; /* removable medium */
	buf[2] = 0x05; /* SPC-3 */
	buf[3] = 0x02; /* response data format */
	buf[4] = 36 - 5;
	put_ascii(buf + 8, 8, VENDOR);
	put_ascii(buf + 16, 16, PRODUCT);
	put_ascii(buf + 32, 4, REVISION);
	return 36;
}

static const uint8_t vpd_pages[] = { 0x00, 0x80, 0x83 };

/* The VPD page, or 0 when there is no such page. */
static size_t inquiry_vpd(const struct atapi_cd *cd, uint8_t page, uint8_t *buf)
{
	size_t serial_len = strlen(cd->serial), n = 4;

	memset(buf, 0, 4);
	buf[0] = 0x05;
	buf[1] = page;
	switch (page) {
	case 0x00:
		memcpy(buf + 4, vpd_pages, sizeof(vpd_pages));
		n += sizeof(vpd_pages);
		break;
	case 0x80:
		memcpy(buf + 4, cd->serial, serial_len);
		n += serial_len;
		break;
	case 0x83: /* one T10 vendor identification designator: vendor, product, serial */
		buf[4] = 0x02; /* ASCII */
		buf[5] = 0x01; /* T10 vendor ID, associated with the logical unit */
		buf[6] = 0;
		buf[7] = (uint8_t)(8 + 16 + serial_len);
		put_ascii(buf + 8, 8, VENDOR);
		put_ascii(buf + 16, 16, PRODUCT);
		memcpy(buf + 32, cd->serial, serial_len);
		n += 4 + buf[7];
		break;
	default:
		return 0;
	}
	put_be16(buf + 2, (uint16_t)(n - 4));
	return n;
}

static void cmd_inquiry(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg, struct sata_result *res)
{
	uint8_t buf[64];
	size_t n;

	if (cdb[1] & 0x02) /* CMDDT (obsolete) */
		return invalid_field(cd, res, 1, 1);
	if (!(cdb[1] & 0x01)) {
		if (cdb[2])
			return invalid_field(cd, res, 2, -1);
		n = inquiry_standard(buf);
	} else if (!(n = inquiry_vpd(cd, cdb[2], buf))) {
		return invalid_field(cd, res, 2, -1);
	}
	reply(sg, res, buf, n, get_be16(cdb + 3));
}

/* ---- medium access ---- */

static void cmd_read_capacity(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
			      struct sata_result *res)
{
	uint8_t buf[8];

	if (!(cdb[8] & 0x01) && get_be32(cdb + 2)) /* an LBA only with PMI */
		return invalid_field(cd, res, 2, -1);
	put_be32(buf, lead_out_lba(cd) - 1);
	put_be32(buf + 4, ATAPI_CD_BLOCK);
	reply(sg, res, buf, sizeof(buf), sizeof(buf));
}

static bool blocks_in_disc(const struct atapi_cd *cd, uint64_t lba, uint64_t count)
{
	uint64_t blocks = disc_blocks(cd);

	return lba <= blocks && count <= blocks - lba;
}

/* How many iovecs one preadv gets: the guest's list is read in pieces this long. */
#define READ_IOV_BATCH 64

/* Reads straight into the guest's buffers, as much of the range as they hold. */
static void read_blocks(struct atapi_cd *cd, uint64_t lba, uint64_t count, const struct sata_sg *sg,
			struct sata_result *res)
{
	uint64_t len, done = 0;

	if (!blocks_in_disc(cd, lba, count))
		return check_condition(cd, res, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
	len = count * ATAPI_CD_BLOCK; /* no overflow: within the image's size */
	if (len > sg->len)
		len = sg->len;
	while (done < len) {
		struct iovec iov[READ_IOV_BATCH];
		unsigned n = sata_sg_slice(sg, done, len - done, iov, READ_IOV_BATCH);
		uint64_t bytes = 0;
		int err;

		for (unsigned i = 0; i < n; i++)
			bytes += iov[i].iov_len;
		if (!bytes)
			break;
		err = blockdev_rw(&cd->bd, iov, n, lba * ATAPI_CD_BLOCK + done, false);
		if (err) {
			blockdev_io_error(&cd->bd, "read", err);
			res->transferred = done;
			return check_condition(cd, res, SENSE_MEDIUM_ERROR, ASC_UNRECOVERED_READ_ERROR, 0);
		}
		done += bytes;
	}
	res->transferred = done;
	complete_ok(res);
}

static void cmd_read10(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg, struct sata_result *res)
{
	read_blocks(cd, get_be32(cdb + 2), get_be16(cdb + 7), sg, res);
}

static void cmd_read12(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg, struct sata_result *res)
{
	read_blocks(cd, get_be32(cdb + 2), get_be32(cdb + 6), sg, res);
}

static void cmd_seek(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg, struct sata_result *res)
{
	(void)sg;
	if (!blocks_in_disc(cd, get_be32(cdb + 2), 1))
		return check_condition(cd, res, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
	complete_ok(res);
}

/* ---- READ TOC/PMA/ATIP ---- */

/* An address as READ TOC gives it: an LBA, or 0/M/S/F (saturating where a DVD outgrows MSF). */
static void put_toc_address(uint8_t *p, uint32_t lba, bool msf)
{
	uint64_t frames = (uint64_t)lba + MSF_OFFSET;
	uint64_t minutes = frames / (60 * 75);

	if (!msf) {
		put_be32(p, lba);
		return;
	}
	p[0] = 0;
	if (minutes > 0xff) {
		p[1] = 0xff, p[2] = 59, p[3] = 74;
		return;
	}
	p[1] = (uint8_t)minutes;
	p[2] = (uint8_t)(frames / 75 % 60);
	p[3] = (uint8_t)(frames % 75);
}

#define TOC_ADR_CONTROL 0x14 /* ADR 1 (position), control 4 (data track, not copy-protected) */
#define TRACK_LEAD_OUT 0xaa

static size_t toc_track(uint8_t *p, uint8_t track, uint32_t lba, bool msf)
{
	p[0] = 0;
	p[1] = TOC_ADR_CONTROL;
	p[2] = track;
	p[3] = 0;
	put_toc_address(p + 4, lba, msf);
	return 8;
}

/* Format 0: track 1 and the lead-out, from the requested track on. 0 when there is no such track. */
static size_t toc_format0(const struct atapi_cd *cd, uint8_t first, bool msf, uint8_t *buf)
{
	size_t n = 4;

	if (first > 1 && first != TRACK_LEAD_OUT)
		return 0;
	if (first <= 1)
		n += toc_track(buf + n, 1, 0, msf);
	n += toc_track(buf + n, TRACK_LEAD_OUT, lead_out_lba(cd), msf);
	buf[2] = 1, buf[3] = 1; /* first and last track */
	return n;
}

/* Format 1: the first track of the last (only) session. */
static size_t toc_format1(bool msf, uint8_t *buf)
{
	buf[2] = 1, buf[3] = 1; /* first and last session */
	return 4 + toc_track(buf + 4, 1, 0, msf);
}

static size_t full_toc_entry(uint8_t *p, uint8_t point, uint8_t pmin, uint8_t psec, uint8_t pframe)
{
	memset(p, 0, 11);
	p[0] = 1; /* session */
	p[1] = TOC_ADR_CONTROL;
	p[3] = point;
	p[8] = pmin, p[9] = psec, p[10] = pframe;
	return 11;
}

/* Format 2 (CDs only): the session's points A0-A2 and track 1, always in MSF. */
static size_t toc_format2(const struct atapi_cd *cd, uint8_t session, uint8_t *buf)
{
	uint8_t lead_out[4], track1[4];
	size_t n = 4;

	if (session > 1)
		return 0;
	put_toc_address(lead_out, lead_out_lba(cd), true);
	put_toc_address(track1, 0, true);
	n += full_toc_entry(buf + n, 0xa0, 1, 0x00, 0); /* first track; disc type CD-DA or CD-ROM */
	n += full_toc_entry(buf + n, 0xa1, 1, 0, 0);    /* last track */
	n += full_toc_entry(buf + n, 0xa2, lead_out[1], lead_out[2], lead_out[3]);
	n += full_toc_entry(buf + n, 1, track1[1], track1[2], track1[3]);
	buf[2] = 1, buf[3] = 1;
	return n;
}

static void cmd_read_toc(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg, struct sata_result *res)
{
	bool msf = cdb[1] & 0x02;
	/* SFF-8020 drivers put the format in the control byte's vendor bits */
	unsigned format = (cdb[2] & 0x0f) ? (cdb[2] & 0x0f) : (unsigned)(cdb[9] >> 6);
	uint8_t buf[64];
	size_t n;

	switch (format) {
	case 0:
		n = toc_format0(cd, cdb[6], msf, buf);
		break;
	case 1:
		n = toc_format1(msf, buf);
		break;
	case 2:
		if (disc_is_dvd(cd))
			return invalid_field(cd, res, 2, 3);
		n = toc_format2(cd, cdb[6], buf);
		break;
	default:
		return invalid_field(cd, res, 2, 3);
	}
	if (!n)
		return invalid_field(cd, res, 6, -1);
	put_be16(buf, (uint16_t)(n - 2));
	reply(sg, res, buf, n, get_be16(cdb + 7));
}

/* ---- GET CONFIGURATION ---- */

/* One feature descriptor at p with len additional bytes; returns its size. */
static size_t feature_header(uint8_t *p, uint16_t code, uint8_t version, bool persistent, bool current, uint8_t len)
{
	put_be16(p, code);
	p[2] = (uint8_t)(version << 2 | (persistent ? 0x02 : 0) | (current ? 0x01 : 0));
	p[3] = len;
	memset(p + 4, 0, len);
	return 4u + len;
}

/* The descriptor of feature code at p (size returned, 0 when not supported), and whether it is current. */
static size_t build_feature(const struct atapi_cd *cd, uint16_t code, uint8_t *p, bool *current)
{
	bool loaded = medium_loaded(cd), dvd = disc_is_dvd(cd);
	uint16_t profile = current_profile(cd);
	size_t n;

	*current = true;
	switch (code) {
	case 0x0000: /* Profile List */
		n = feature_header(p, code, 0, true, true, 8);
		put_be16(p + 4, PROFILE_DVD_ROM);
		p[6] = profile == PROFILE_DVD_ROM;
		put_be16(p + 8, PROFILE_CD_ROM);
		p[10] = profile == PROFILE_CD_ROM;
		return n;
	case 0x0001: /* Core: ATAPI, device busy events */
		n = feature_header(p, code, 2, true, true, 8);
		put_be32(p + 4, 2);
		p[8] = 0x01;
		return n;
	case 0x0002: /* Morphing: no asynchronous or operational change events */
		return feature_header(p, code, 1, true, true, 4);
	case 0x0003: /* Removable Medium: tray, load, eject, lockable, no prevent jumper */
		n = feature_header(p, code, 2, true, true, 4);
		p[4] = 0x20 | 0x10 | 0x08 | 0x04 | 0x01;
		return n;
	case 0x0010: /* Random Readable */
		n = feature_header(p, code, 0, false, loaded, 8);
		put_be32(p + 4, ATAPI_CD_BLOCK);
		put_be16(p + 8, dvd ? 16 : 1); /* blocking: an ECC block of a DVD, one CD sector */
		*current = loaded;
		return n;
	case 0x001e: /* CD Read: no CD-DA, C2 or CD-Text */
		*current = profile == PROFILE_CD_ROM;
		return feature_header(p, code, 2, false, *current, 4);
	case 0x001f: /* DVD Read: single layer -ROM */
		*current = profile == PROFILE_DVD_ROM;
		return feature_header(p, code, 1, false, *current, 4);
	case 0x0100: /* Power Management */
		return feature_header(p, code, 0, true, true, 0);
	default:
		return 0;
	}
}

static const uint16_t features[] = { 0x0000, 0x0001, 0x0002, 0x0003, 0x0010, 0x001e, 0x001f, 0x0100 };

static void cmd_get_configuration(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
				  struct sata_result *res)
{
	unsigned rt = cdb[1] & 0x03;
	uint16_t start = get_be16(cdb + 2);
	uint8_t buf[REPLY_MAX];
	size_t n = 8;

	if (rt == 3)
		return invalid_field(cd, res, 1, 1);
	memset(buf, 0, 8);
	for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
		bool current;
		size_t len;

		if (features[i] < start || (rt == 2 && features[i] != start))
			continue;
		len = build_feature(cd, features[i], buf + n, &current);
		if (rt == 1 && !current)
			continue;
		n += len;
	}
	put_be32(buf, (uint32_t)(n - 4));
	put_be16(buf + 6, current_profile(cd));
	reply(sg, res, buf, n, get_be16(cdb + 7));
}

/* ---- MODE SENSE ---- */

enum { PC_CURRENT, PC_CHANGEABLE, PC_DEFAULT, PC_SAVED };

#define MODE_PAGE_ERROR_RECOVERY 0x01
#define MODE_PAGE_CAPABILITIES 0x2a
#define MODE_PAGE_ALL 0x3f

/* Speeds in kB/s: 48x CD (176.4 kB/s each), what guests show and nothing depends on. */
#define MAX_READ_SPEED 8467u

static size_t mode_page(const struct atapi_cd *cd, uint8_t page, unsigned pc, uint8_t *p)
{
	switch (page) {
	case MODE_PAGE_ERROR_RECOVERY:
		memset(p, 0, 12);
		p[0] = page, p[1] = 10;
		if (pc != PC_CHANGEABLE)
			p[3] = 5; /* read retry count */
		return 12;
	case MODE_PAGE_CAPABILITIES:
		memset(p, 0, 22);
		p[0] = page, p[1] = 20;
		if (pc == PC_CHANGEABLE)
			return 22;
		p[2] = 0x08 | 0x02 | 0x01;                           /* reads DVD-ROM, CD-RW, CD-R */
		p[6] = 0x20 | 0x08 | 0x01 | (cd->locked ? 0x02 : 0); /* tray, eject, lock, lock state */
		put_be16(p + 8, MAX_READ_SPEED);
		put_be16(p + 12, 512); /* buffer size (KiB) */
		put_be16(p + 14, MAX_READ_SPEED);
		return 22;
	default:
		return 0;
	}
}

/* The page(s) after a header of hdr bytes; 0 with sense set when the CDB asks for what is not there. */
static size_t mode_pages(struct atapi_cd *cd, const uint8_t *cdb, struct sata_result *res, uint8_t *buf, size_t hdr)
{
	unsigned pc = cdb[2] >> 6;
	uint8_t page = cdb[2] & 0x3f, subpage = cdb[3];
	size_t n = hdr;

	if (pc == PC_SAVED) {
		check_condition(cd, res, SENSE_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED, 0);
		return 0;
	}
	if (subpage && !(page == MODE_PAGE_ALL && subpage == 0xff)) {
		invalid_field(cd, res, 3, -1);
		return 0;
	}
	memset(buf, 0, hdr);
	if (page == MODE_PAGE_ALL) {
		n += mode_page(cd, MODE_PAGE_ERROR_RECOVERY, pc, buf + n);
		n += mode_page(cd, MODE_PAGE_CAPABILITIES, pc, buf + n);
		return n;
	}
	n += mode_page(cd, page, pc, buf + n);
	if (n == hdr) {
		invalid_field(cd, res, 2, 5);
		return 0;
	}
	return n;
}

static void cmd_mode_sense10(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
			     struct sata_result *res)
{
	uint8_t buf[REPLY_MAX];
	size_t n = mode_pages(cd, cdb, res, buf, 8);

	if (!n)
		return;
	put_be16(buf, (uint16_t)(n - 2));
	reply(sg, res, buf, n, get_be16(cdb + 7));
}

static void cmd_mode_sense6(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
			    struct sata_result *res)
{
	uint8_t buf[REPLY_MAX];
	size_t n = mode_pages(cd, cdb, res, buf, 4);

	if (!n)
		return;
	buf[0] = (uint8_t)(n - 1);
	reply(sg, res, buf, n, cdb[4]);
}

/* ---- events, tray and lock ---- */

static void cmd_get_event_status(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
				 struct sata_result *res)
{
	unsigned asked = cdb[4] & EVENT_CLASSES_SUPPORTED;
	uint8_t buf[8] = { 0 };
	size_t n = 4;

	if (!(cdb[1] & 0x01)) /* asynchronous operation is not supported */
		return invalid_field(cd, res, 1, 0);
	buf[3] = EVENT_CLASSES_SUPPORTED;
	if (!asked) {
		buf[2] = 0x80; /* NEA */
	} else if (asked & 1u << EVENT_CLASS_MEDIA) {
		buf[2] = EVENT_CLASS_MEDIA;
		buf[4] = cd->media_event;
		buf[5] = (uint8_t)((cd->tray_open ? 0x01 : 0) | (medium_loaded(cd) ? 0x02 : 0));
		cd->media_event = MEDIA_EVENT_NONE;
		n += 4;
	} else {
		buf[2] = EVENT_CLASS_BUSY; /* never busy: no event, no status */
		n += 4;
	}
	put_be16(buf, (uint16_t)(n - 2));
	reply(sg, res, buf, n, get_be16(cdb + 7));
}

static void cmd_prevent_allow(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
			      struct sata_result *res)
{
	(void)sg;
	/* bit 1 (persistent prevent) only changes how an eject request is reported: events either way */
	cd->locked = cdb[4] & 0x01;
	complete_ok(res);
}

static bool valid_power_condition(unsigned pc)
{
	/* active, idle, standby, sleep, LU control, force idle, force standby (MMC-6 table 503) */
	return pc == 0 || pc == 1 || pc == 2 || pc == 3 || pc == 5 || pc == 7 || pc == 0xa || pc == 0xb;
}

static void cmd_start_stop(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg, struct sata_result *res)
{
	unsigned power = cdb[4] >> 4;
	bool loej = cdb[4] & 0x02, start = cdb[4] & 0x01;

	(void)sg;
	if (!valid_power_condition(power))
		return invalid_field(cd, res, 4, 7);
	/* with a power condition, START and LOEJ are ignored; spinning is free */
	if (power || !loej)
		return complete_ok(res);
	if (start) {
		if (cd->tray_open) {
			cd->tray_open = false;
			if (has_disc(cd))
				medium_arrived(cd);
		}
		return complete_ok(res);
	}
	if (cd->locked)
		return check_condition(cd, res, SENSE_ILLEGAL_REQUEST, ASC_REMOVAL_PREVENTED, ASCQ_REMOVAL_PREVENTED);
	if (!cd->tray_open) {
		cd->tray_open = true;
		if (has_disc(cd))
			medium_left(cd);
	}
	complete_ok(res);
}

static void cmd_mechanism_status(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
				 struct sata_result *res)
{
	uint8_t buf[8] = { 0 };

	buf[1] = cd->tray_open ? 0x10 : 0; /* idle, door open */
	reply(sg, res, buf, sizeof(buf), get_be16(cdb + 8));
}

static void cmd_set_cd_speed(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
			     struct sata_result *res)
{
	(void)sg;
	if ((cdb[1] & 0x03) > 1) /* rotational control: CLV or CAV */
		return invalid_field(cd, res, 1, 1);
	complete_ok(res); /* an image reads at one speed */
}

/* ---- disc and track information ---- */

static void cmd_read_disc_info(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
			       struct sata_result *res)
{
	uint8_t buf[34] = { 0 };

	if (cdb[1] & 0x07) /* only standard disc information */
		return invalid_field(cd, res, 1, 2);
	put_be16(buf, sizeof(buf) - 2);
	buf[2] = 0x0e; /* last session complete, disc finalized */
	buf[3] = 1;    /* first track */
	buf[4] = 1;    /* sessions */
	buf[5] = 1;    /* first track of the last session */
	buf[6] = 1;    /* last track of the last session */
	buf[7] = 0x20; /* unrestricted use */
	buf[8] = 0x00; /* CD-DA or CD-ROM (DVDs say 0 too) */
	put_be32(buf + 16, 0xffffffff); /* no lead-in or lead-out to come: finalized */
	put_be32(buf + 20, 0xffffffff);
	reply(sg, res, buf, sizeof(buf), get_be16(cdb + 7));
}

static void cmd_read_track_info(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
				struct sata_result *res)
{
	uint32_t number = get_be32(cdb + 2);
	uint8_t buf[36] = { 0 };
	bool track1;

	switch (cdb[1] & 0x03) {
	case 0: /* the track holding an LBA */
		track1 = number < lead_out_lba(cd);
		break;
	case 1: /* a track number */
	case 2: /* a session number: its first track */
		track1 = number == 1;
		break;
	default:
		return invalid_field(cd, res, 1, 1);
	}
	if (!track1)
		return invalid_field(cd, res, 2, -1);
	put_be16(buf, sizeof(buf) - 2);
	buf[2] = 1;    /* track */
	buf[3] = 1;    /* session */
	buf[5] = 0x04; /* data track, recorded uninterrupted */
	buf[6] = 0x01; /* mode 1 */
	put_be32(buf + 24, lead_out_lba(cd));
	reply(sg, res, buf, sizeof(buf), get_be16(cdb + 7));
}

/* ---- dispatch ---- */

#define NEEDS_MEDIUM 0x01 /* NOT READY without a loaded disc */
#define NO_UA 0x02        /* never reports a unit attention (SPC-4 5.14, MMC-6 4.1.6) */

typedef void (*command_fn)(struct atapi_cd *cd, const uint8_t *cdb, const struct sata_sg *sg,
			   struct sata_result *res);

struct command {
	command_fn run;
	uint8_t flags;
};

static const struct command commands[256] = {
	[0x00] = { cmd_test_unit_ready, NEEDS_MEDIUM },
	[0x03] = { cmd_request_sense, NO_UA },
	[0x12] = { cmd_inquiry, NO_UA },
	[0x1a] = { cmd_mode_sense6, 0 },
	[0x1b] = { cmd_start_stop, 0 },
	[0x1e] = { cmd_prevent_allow, 0 },
	[0x25] = { cmd_read_capacity, NEEDS_MEDIUM },
	[0x28] = { cmd_read10, NEEDS_MEDIUM },
	[0x2b] = { cmd_seek, NEEDS_MEDIUM },
	[0x43] = { cmd_read_toc, NEEDS_MEDIUM },
	[0x46] = { cmd_get_configuration, NO_UA },
	[0x4a] = { cmd_get_event_status, NO_UA },
	[0x51] = { cmd_read_disc_info, NEEDS_MEDIUM },
	[0x52] = { cmd_read_track_info, NEEDS_MEDIUM },
	[0x5a] = { cmd_mode_sense10, 0 },
	[0xa8] = { cmd_read12, NEEDS_MEDIUM },
	[0xbb] = { cmd_set_cd_speed, 0 },
	[0xbd] = { cmd_mechanism_status, 0 },
};

void atapi_cd_packet(struct atapi_cd *cd, const uint8_t cdb[16], const struct sata_sg *sg, struct sata_result *res)
{
	const struct command *c = &commands[cdb[0]];

	*res = (struct sata_result){ .sector_count = 0x03 }; /* I/O and C/D: command complete */
	if (c->run != cmd_request_sense)
		cd->sense = (struct sense){ 0 };
	if (!c->run)
		return check_condition(cd, res, SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE, 0);
	if (!(c->flags & NO_UA) && cd->unit_attention) {
		uint8_t asc = cd->unit_attention;

		cd->unit_attention = 0;
		return check_condition(cd, res, SENSE_UNIT_ATTENTION, asc, 0);
	}
	if ((c->flags & NEEDS_MEDIUM) && !medium_loaded(cd))
		return not_ready(cd, res);
	c->run(cd, cdb, sg, res);
}

/* ---- IDENTIFY PACKET DEVICE ---- */

void atapi_cd_identify(const struct atapi_cd *cd, uint16_t id[256])
{
	uint8_t sum = 0;

	memset(id, 0, 256 * sizeof(id[0]));
	id[0] = 0x85c0; /* ATAPI, CD-ROM, removable, DRQ within 50 us, 12-byte packets */
	sata_id_string(id + 10, 10, cd->serial);
	sata_id_string(id + 23, 4, REVISION);
	sata_id_string(id + 27, 20, PRODUCT);
	id[49] = 0x0f00;  /* IORDY, IORDY may be disabled, LBA, DMA */
	id[50] = 0x4000;
	id[53] = 0x0006;  /* words 64-70 and 88 valid */
	id[63] = 0x0007;  /* multiword DMA 0-2 supported */
	id[64] = 0x0003;  /* PIO 3 and 4 */
	id[65] = 120;     /* DMA and PIO cycle times (ns) */
	id[66] = 120;
	id[67] = 120;
	id[68] = 120;
	id[76] = 0x0006;  /* SATA Gen1 and Gen2 */
	id[80] = 0x01f0;  /* ATA/ATAPI-4 to ATA8-ACS */
	id[82] = 0x0210;  /* DEVICE RESET, PACKET */
	id[83] = 0x4000;
	id[84] = 0x4000;
	id[85] = 0x0210;
	id[87] = 0x4000;
	id[88] = 0x203f;  /* UDMA 0-5 supported, 5 selected */
	id[222] = 0x101f; /* serial transport: SATA 1.0a, II extensions, 2.5, 2.6, 3.0 */
	/* integrity word: signature A5h and a checksum making all 512 bytes sum to 0 */
	id[255] = 0x00a5;
	for (unsigned i = 0; i < 256; i++)
		sum = (uint8_t)(sum + (id[i] & 0xff) + (id[i] >> 8));
	id[255] = (uint16_t)((uint8_t)-sum << 8 | 0xa5);
}

/* ---- media ---- */

/*
 * Whether fd can be a disc: a regular file or block device holding at least
 * one block. fstat only: media changes run on the confined main thread,
 * which may not lseek; a block device's size comes from blockdev_open_fd().
 */
static int disc_usable(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return set_error(err, errlen, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return set_error(err, errlen, "%s is not a regular file or a block device", path);
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < ATAPI_CD_BLOCK)
		return set_error(err, errlen, "%s holds no whole %u-byte block", path, ATAPI_CD_BLOCK);
	return 0;
}

/* The drive's serial, not the disc's: stable across media changes (FNV-1a of the device id). */
static void default_serial(const char *owner, char *out, size_t size)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const char *p = owner; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	snprintf(out, size, "hyve-%015llx", (unsigned long long)(h >> 4));
}

struct atapi_cd *atapi_cd_new(const char *owner, const char *path, const char *serial)
{
	struct atapi_cd *cd = calloc(1, sizeof(*cd));

	if (!cd) {
		log_error("%s: out of memory", owner);
		return NULL;
	}
	snprintf(cd->owner, sizeof(cd->owner), "%s", owner);
	blockdev_init(&cd->bd);
	if (serial)
		snprintf(cd->serial, sizeof(cd->serial), "%s", serial);
	else
		default_serial(owner, cd->serial, sizeof(cd->serial));
	if (path) {
		if (blockdev_open(&cd->bd, cd->owner, "ahci-cd", path, true, false, ATAPI_CD_BLOCK) < 0) {
			free(cd);
			return NULL;
		}
		if (!cd->bd.size) {
			log_error("%s: %s holds no whole %u-byte block", owner, path, ATAPI_CD_BLOCK);
			atapi_cd_free(cd);
			return NULL;
		}
	}
	atapi_cd_reset(cd);
	return cd;
}

void atapi_cd_free(struct atapi_cd *cd)
{
	if (!cd)
		return;
	blockdev_close(&cd->bd);
	free(cd);
}

void atapi_cd_reset(struct atapi_cd *cd)
{
	cd->sense = (struct sense){ 0 };
	cd->unit_attention = ASC_POWER_ON_RESET;
	cd->media_event = MEDIA_EVENT_NONE;
	cd->locked = false;
}

int atapi_cd_change(struct atapi_cd *cd, int fd, const char *path, bool force, char *err, size_t errlen)
{
	struct blockdev next;

	if (cd->locked && !cd->tray_open && !force) {
		/* what a press of the eject button does on a locked drive: ask the guest to let go */
		if (cd->media_event == MEDIA_EVENT_NONE)
			cd->media_event = MEDIA_EVENT_EJECT_REQUEST;
		return set_error(err, errlen, "the guest has locked the disc in (force replaces it anyway)");
	}
	if (fd < 0) {
		if (has_disc(cd)) {
			blockdev_close(&cd->bd);
			medium_left(cd);
		}
		cd->tray_open = true;
		return 0;
	}
	if (!path)
		path = "(descriptor)";
	if (disc_usable(fd, path, err, errlen) < 0)
		return -1;
	blockdev_init(&next);
	if (blockdev_open_fd(&next, cd->owner, "ahci-cd", path, fd, true, ATAPI_CD_BLOCK) < 0)
		return set_error(err, errlen, "%s cannot be used as a disc", path);
	if (!next.size) {
		next.fd = -1; /* still the caller's */
		blockdev_close(&next);
		return set_error(err, errlen, "%s holds no whole %u-byte block", path, ATAPI_CD_BLOCK);
	}
	blockdev_close(&cd->bd);
	cd->bd = next;
	cd->tray_open = false;
	medium_arrived(cd);
	return 0;
}

const char *atapi_cd_path(const struct atapi_cd *cd)
{
	return has_disc(cd) ? cd->bd.path : NULL;
}

/* ---- snapshots ---- */

/* Who the disc is: the image's path, size and modification time; false when there is no disc. */
static bool disc_identity(const struct atapi_cd *cd, uint64_t *size, uint64_t *mtime_ns)
{
	struct stat st;

	if (!has_disc(cd) || fstat(cd->bd.fd, &st) < 0)
		return false;
	*size = cd->bd.size;
	*mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec;
	return true;
}

void atapi_cd_save(const struct atapi_cd *cd, struct state_writer *w)
{
	uint64_t size, mtime_ns;

	state_put_u64(w, "sense_key", cd->sense.key);
	state_put_u64(w, "sense_asc", cd->sense.asc);
	state_put_u64(w, "sense_ascq", cd->sense.ascq);
	state_put_bytes(w, "sense_sks", cd->sense.sks, sizeof(cd->sense.sks));
	state_put_u64(w, "unit_attention", cd->unit_attention);
	state_put_u64(w, "media_event", cd->media_event);
	state_put_bool(w, "locked", cd->locked);
	state_put_bool(w, "tray_open", cd->tray_open);
	if (disc_identity(cd, &size, &mtime_ns)) {
		state_begin_map(w, "disc");
		state_put_str(w, "path", cd->bd.path);
		state_put_u64(w, "size", size);
		state_put_u64(w, "mtime_ns", mtime_ns);
		state_end_map(w);
	}
}

struct saved_disc {
	bool present;
	char path[sizeof(((struct blockdev *)0)->path)];
	uint64_t size, mtime_ns;
};

static int restore_disc(struct state_reader *r, struct saved_disc *d)
{
	int bad;

	d->present = state_enter_map(r, "disc") == 0;
	if (!d->present)
		return 0;
	bad = state_get_str(r, "path", d->path, sizeof(d->path)) < 0 || state_get_u64(r, "size", &d->size) < 0 ||
	      state_get_u64(r, "mtime_ns", &d->mtime_ns) < 0;
	state_leave_map(r);
	return bad ? -1 : 0;
}

/* Is the disc in the drive now the one the snapshot's guest saw? */
static bool same_disc(const struct atapi_cd *cd, const struct saved_disc *d)
{
	uint64_t size, mtime_ns;

	if (!disc_identity(cd, &size, &mtime_ns))
		return !d->present;
	return d->present && !strcmp(d->path, cd->bd.path) && d->size == size && d->mtime_ns == mtime_ns;
}

static bool valid_unit_attention(uint8_t asc)
{
	return asc == 0 || asc == ASC_MEDIUM_MAY_HAVE_CHANGED || asc == ASC_POWER_ON_RESET;
}

int atapi_cd_restore(struct atapi_cd *cd, struct state_reader *r)
{
	struct sense s = { 0 };
	struct saved_disc disc;
	uint8_t ua, event;
	bool locked, tray_open;

	if (state_get_u8(r, "sense_key", 0x0f, &s.key) < 0 || state_get_u8(r, "sense_asc", 0xff, &s.asc) < 0 ||
	    state_get_u8(r, "sense_ascq", 0xff, &s.ascq) < 0 ||
	    state_get_bytes(r, "sense_sks", s.sks, sizeof(s.sks)) < 0 ||
	    state_get_u8(r, "unit_attention", 0xff, &ua) < 0 || !valid_unit_attention(ua) ||
	    state_get_u8(r, "media_event", MEDIA_EVENT_MAX, &event) < 0 || state_get_bool(r, "locked", &locked) < 0 ||
	    state_get_bool(r, "tray_open", &tray_open) < 0 || restore_disc(r, &disc) < 0) {
		log_error("%s: the CD-ROM's saved state is malformed", cd->owner);
		return -1;
	}
	cd->sense = s;
	cd->unit_attention = ua;
	cd->media_event = event;
	cd->locked = locked;
	cd->tray_open = tray_open;
	if (!same_disc(cd, &disc)) {
		log_warn("%s: the CD-ROM holds %s, the snapshot was taken with %s; the guest is told the disc changed",
			 cd->owner, has_disc(cd) ? cd->bd.path : "no disc", disc.present ? disc.path : "no disc");
		if (medium_loaded(cd))
			medium_arrived(cd);
		else
			medium_left(cd);
	}
	return 0;
}
