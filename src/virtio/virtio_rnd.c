/*
 * virtio entropy device ("virtio-rnd", virtio 1.2 section 5.4): one
 * request queue of device-writable buffers, each filled from the host's
 * getrandom(2). No configuration, no device features.
 *
 *   -s SLOT,virtio-rnd
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/device.h"
#include "core/log.h"
#include "virtio/virtio_pci.h"

#define RND_QUEUE_SIZE 64
#define RND_MAX_FILL (64u << 10) /* bytes per request, so one request cannot monopolise the thread */

struct virtio_rnd {
	struct virtio_dev vd;
	struct iovec iov[VIRTQ_MAX_IOV];
};

static struct device_model virtio_rnd_model;

static int fill_request(struct virtio_dev *vd, unsigned q, struct virtq_chain *ch)
{
	size_t want = ch->in_len < RND_MAX_FILL ? ch->in_len : RND_MAX_FILL, done = 0;

	(void)q;
	for (unsigned i = ch->n_out; i < ch->n_out + ch->n_in && done < want; i++) {
		uint8_t *p = ch->iov[i].iov_base;
		size_t len = ch->iov[i].iov_len < want - done ? ch->iov[i].iov_len : want - done;
		size_t got = 0;
		while (got < len) {
			ssize_t n = getrandom(p + got, len - got, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				log_warn("%s: getrandom: %s", vd->dev->id, strerror(errno));
				return (int)(done + got);
			}
			got += (size_t)n;
		}
		done += got;
	}
	return (int)done;
}

static void rnd_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtio_rnd *s = vd->opaque;

	virtio_service_queue(vd, q, s->iov, VIRTQ_MAX_IOV, fill_request);
}

static const struct virtio_ops rnd_ops = {
	.name = "virtio-rnd",
	.type = VIRTIO_ID_RNG,
	.pci_class = 0xFF, /* unclassified */
	.pci_subclass = 0x00,
	.nqueues = 1,
	.queue_size = RND_QUEUE_SIZE,
	.features = 0,
	.queue_notify = rnd_queue_notify,
};

static int rnd_create(struct device *dev)
{
	struct virtio_rnd *s = calloc(1, sizeof(*s));

	if (!s)
		return -1;
	if (virtio_dev_init(&s->vd, dev, &rnd_ops, s, NULL, 0) < 0) {
		free(s);
		return -1;
	}
	dev->priv = s;
	return 0;
}

static void rnd_destroy(struct device *dev)
{
	struct virtio_rnd *s = dev->priv;

	virtio_dev_destroy(&s->vd);
	free(s);
}

static void rnd_reset(struct device *dev)
{
	struct virtio_rnd *s = dev->priv;

	virtio_dev_reset(&s->vd);
}

static void rnd_run_state(struct device *dev, bool running)
{
	struct virtio_rnd *s = dev->priv;

	if (!running)
		virtio_freeze(&s->vd);
}

static int rnd_save(struct device *dev, struct state_writer *w)
{
	struct virtio_rnd *s = dev->priv;

	virtio_save(&s->vd, w);
	return 0;
}

static int rnd_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	struct virtio_rnd *s = dev->priv;

	(void)version;
	return virtio_restore(&s->vd, r);
}

static struct device_model virtio_rnd_model = {
	.name = "virtio-rnd",
	.state_version = 1,
	.on_pci = true,
	.create = rnd_create,
	.reset = rnd_reset,
	.save = rnd_save,
	.run_state = rnd_run_state,
	.restore = rnd_restore,
	.destroy = rnd_destroy,
};

DEVICE_MODEL(virtio_rnd_model)
