/*
 * virtio network device ("virtio-net", virtio 1.2 section 5.1) on a host
 * tap interface.
 *
 *   -s SLOT,virtio-net,tap=NAME[,mac=xx:xx:xx:xx:xx:xx]   (or bhyve's -s SLOT,virtio-net,NAME)
 *   pci.B.S.F.tap, .mac (default: derived from the VM name and slot)
 *
 * The tap must exist (ip tuntap add NAME mode tap); hyve attaches to it
 * with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and a 12-byte vnet header, which
 * is exactly struct virtio_net_hdr_v1, so headers pass through unchanged in
 * both directions. Offloads: the guest may send partially checksummed and
 * TSO packets (CSUM, HOST_TSO4/6: the tap accepts them with the header);
 * it receives them only when it negotiates GUEST_CSUM / GUEST_TSO4/6,
 * which become the tap's TUNSETOFFLOAD flags (offered only when the tap
 * accepts them).
 *
 * Queues: 0 receive, 1 transmit, no control queue, no mergeable buffers.
 * Both are serviced on the device's I/O thread: transmit on notification,
 * receive when the tap is readable. While the guest has no receive buffers
 * the tap is not watched for input (no busy polling): receive re-enables
 * the queue's notifications, re-checks the ring, and the notification for
 * new buffers re-arms the watch. A packet the tap cannot take yet (EAGAIN)
 * stays in the transmit queue, which waits for the tap to be writable.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/config.h"
#include "core/device.h"
#include "core/log.h"
#include "boot/bootorder.h"
#include "core/options.h"
#include "core/vm.h"
#include "snapshot/state.h"
#include "virtio/virtio_pci.h"

#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1

#define NET_RXQ 0
#define NET_TXQ 1
#define NET_QUEUE_SIZE 256
#define NET_HDR_LEN 12      /* struct virtio_net_hdr_v1 */
#define NET_NUM_BUFFERS_OFF 10
#define NET_MAX_FRAME (65535 + NET_HDR_LEN + 14 + 4)
#define NET_BATCH 64        /* packets per wakeup before others get a turn */

struct net_config {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
	uint16_t mtu;
} __attribute__((packed));

struct virtio_net {
	struct virtio_dev vd;
	int tap;
	char tapname[IFNAMSIZ];
	uint8_t mac[6];
	struct net_config cfg;
	unsigned tap_offloads;      /* TUN_F_* the tap accepted when probed */
	/* I/O thread only: */
	bool rx_wanted;             /* receive buffers may be available: read the tap when readable */
	bool tx_blocked;            /* the tap refused a packet (EAGAIN): transmit waits for EPOLLOUT */
	bool tap_lost;              /* the tap went away (EPOLLERR): no longer watched */
	uint32_t tap_events;        /* what the I/O thread's epoll watches on the tap */
	bool warned_tx, warned_rx;
	struct virtio_io_source tap_source;
	struct iovec rx_iov[VIRTQ_MAX_IOV];
	struct iovec tx_iov[VIRTQ_MAX_IOV];
};

static struct device_model virtio_net_model;

/* ---- the tap watch ---- */

/* Makes the epoll watch on the tap match what receive and transmit wait for. */
static void tap_watch_update(struct virtio_net *s)
{
	uint32_t want = (s->rx_wanted ? EPOLLIN : 0) | (s->tx_blocked ? EPOLLOUT : 0);

	if (s->tap_lost || want == s->tap_events)
		return;
	if (virtio_io_modify(&s->vd, s->tap, want, &s->tap_source) == 0)
		s->tap_events = want;
	else
		log_warn("%s: virtio-net: cannot watch tap %s: %s", s->vd.dev->id, s->tapname, strerror(errno));
}

static void rx_watch(struct virtio_net *s, bool on)
{
	s->rx_wanted = on;
	tap_watch_update(s);
}

/* ---- receive ---- */

static bool device_live(struct virtio_dev *vd)
{
	uint8_t st;

	pthread_mutex_lock(&vd->lock);
	st = vd->status;
	pthread_mutex_unlock(&vd->lock);
	return (st & VIRTIO_STATUS_DRIVER_OK) && !(st & VIRTIO_STATUS_NEEDS_RESET);
}

/* Moves packets from the tap into receive buffers until either runs out. I/O thread. */
static void rx_process(struct virtio_net *s)
{
	struct virtq *vq = &s->vd.queues[NET_RXQ].vq;
	struct virtq_chain ch = { .iov = s->rx_iov, .max_iov = VIRTQ_MAX_IOV };
	unsigned done = 0;
	bool pushed = false;

	if (s->tap_lost || !device_live(&s->vd) || !vq->enabled) {
		rx_watch(s, false);
		return;
	}
	while (done < NET_BATCH) {
		int rc = virtq_pop(vq, &ch);
		if (rc < 0) {
			rx_watch(s, false);
			break;
		}
		if (rc == 0) {
			/* No buffers: stop watching the tap until the driver adds some. */
			if (virtq_notify_enable(vq))
				continue;
			rx_watch(s, false);
			break;
		}
		if (ch.n_out || ch.in_len < NET_HDR_LEN) {
			virtq_push(vq, ch.head, 0);
			pushed = true;
			virtio_dev_fail(&s->vd, "receive buffer at head %u is not a writable buffer of at least %u bytes",
					ch.head, NET_HDR_LEN);
			break;
		}
		ssize_t n = readv(s->tap, ch.iov, (int)ch.n_in);
		if (n < 0 && errno == EINTR) {
			virtq_unpop(vq, ch.head);
			continue;
		}
		if (n < 0) {
			virtq_unpop(vq, ch.head);
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				rx_watch(s, true);
				break;
			}
			/* The packet did not fit (or the tap went down): it is gone; the buffer is reused. */
			if (!s->warned_rx)
				log_warn("%s: virtio-net: reading from tap %s: %s", s->vd.dev->id, s->tapname,
					 strerror(errno));
			s->warned_rx = true;
			done++;
			continue;
		}
		if (n < NET_HDR_LEN) {
			virtq_unpop(vq, ch.head);
			continue;
		}
		/* Without MRG_RXBUF every packet is one buffer. */
		uint16_t one = htole16(1);
		virtq_chain_write(&ch, NET_NUM_BUFFERS_OFF, &one, sizeof(one));
		virtq_push(vq, ch.head, (uint32_t)n);
		pushed = true;
		done++;
	}
	if (done == NET_BATCH)
		rx_watch(s, true); /* more may be waiting: come back after other work */
	if (pushed)
		virtio_queue_interrupt(&s->vd, NET_RXQ);
}

/* ---- transmit ---- */

/* Sends one packet; -1 keeps it in the queue until the tap is writable again. */
static int tx_packet(struct virtio_net *s, const struct virtq_chain *ch)
{
	if (ch->out_len < NET_HDR_LEN || ch->out_len > NET_MAX_FRAME)
		return 0; /* dropped: nothing a tap would take */
	for (;;) {
		ssize_t n = writev(s->tap, ch->iov, (int)ch->n_out);
		if (n >= 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			/* Dropping here would leave TCP to retransmit on its timer: wait instead. */
			s->tx_blocked = true;
			tap_watch_update(s);
			return -1;
		}
		if (!s->warned_tx)
			log_warn("%s: virtio-net: writing to tap %s: %s", s->vd.dev->id, s->tapname, strerror(errno));
		s->warned_tx = true;
		return 0; /* the tap rejected this packet: it is dropped, the next may pass */
	}
}

/*
 * Sends what the guest queued, NET_BATCH packets at a time so that receive
 * (the other end's ACKs) is not starved by a guest that keeps transmitting,
 * unless a refused packet waits for EPOLLOUT. I/O thread.
 */
static void tx_process(struct virtio_net *s)
{
	struct virtq *vq = &s->vd.queues[NET_TXQ].vq;
	struct virtq_chain ch = { .iov = s->tx_iov, .max_iov = VIRTQ_MAX_IOV };
	unsigned done = 0;

	if (s->tx_blocked || !device_live(&s->vd) || !vq->enabled)
		return;
	virtq_notify_disable(vq);
	while (done < NET_BATCH) {
		int rc = virtq_pop(vq, &ch);
		if (rc < 0)
			break;
		if (rc == 0) {
			/* Re-armed notifications cover only what comes after this check. */
			if (virtq_notify_enable(vq))
				continue;
			break;
		}
		if (tx_packet(s, &ch) < 0) {
			/* EPOLLOUT resumes from this packet; kicks meanwhile need not wake us. */
			virtq_unpop(vq, ch.head);
			break;
		}
		virtq_push(vq, ch.head, 0);
		done++;
	}
	if (done == NET_BATCH)
		virtio_kick(&s->vd, NET_TXQ); /* more may be queued: come back after other work */
	if (done)
		virtio_queue_interrupt(&s->vd, NET_TXQ);
}

static void net_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtio_net *s = vd->opaque;

	if (q == NET_TXQ)
		tx_process(s);
	else if (q == NET_RXQ)
		rx_process(s); /* new receive buffers: it watches the tap again while there are any */
}

/* The tap is gone (deleted under us): stop watching it rather than spin on EPOLLERR. */
static void tap_gone(struct virtio_net *s)
{
	virtio_io_del(&s->vd, s->tap);
	s->tap_lost = true;
	s->tap_events = 0;
	log_warn("%s: virtio-net: tap %s went away; the link is down", s->vd.dev->id, s->tapname);
	pthread_mutex_lock(&s->vd.lock);
	s->cfg.status &= htole16((uint16_t)~VIRTIO_NET_S_LINK_UP);
	pthread_mutex_unlock(&s->vd.lock);
	virtio_config_changed(&s->vd);
	/* A packet waiting for EPOLLOUT would wait forever: drop what is queued, as a cable pull would. */
	s->tx_blocked = false;
	tx_process(s);
}

static void tap_ready(void *opaque, uint32_t events)
{
	struct virtio_net *s = opaque;

	if (events & (EPOLLERR | EPOLLHUP)) {
		tap_gone(s);
		return;
	}
	if (events & EPOLLOUT) {
		s->tx_blocked = false;
		tap_watch_update(s);
		tx_process(s);
	}
	if (events & EPOLLIN)
		rx_process(s);
}

/* ---- negotiation ---- */

static unsigned offloads_for(uint64_t features)
{
	unsigned off = 0;

	if (features & (1ULL << VIRTIO_NET_F_GUEST_CSUM)) {
		off |= TUN_F_CSUM;
		if (features & (1ULL << VIRTIO_NET_F_GUEST_TSO4))
			off |= TUN_F_TSO4;
		if (features & (1ULL << VIRTIO_NET_F_GUEST_TSO6))
			off |= TUN_F_TSO6;
	}
	return off;
}

static int net_features_ok(struct virtio_dev *vd, uint64_t features)
{
	struct virtio_net *s = vd->opaque;

	/* TSO to the guest without checksum offload is meaningless (spec 5.1.3.1). */
	if ((features & ((1ULL << VIRTIO_NET_F_GUEST_TSO4) | (1ULL << VIRTIO_NET_F_GUEST_TSO6))) &&
	    !(features & (1ULL << VIRTIO_NET_F_GUEST_CSUM)))
		return -1;
	if ((features & ((1ULL << VIRTIO_NET_F_HOST_TSO4) | (1ULL << VIRTIO_NET_F_HOST_TSO6))) &&
	    !(features & (1ULL << VIRTIO_NET_F_CSUM)))
		return -1;
	if (ioctl(s->tap, TUNSETOFFLOAD, offloads_for(features)) < 0) {
		log_warn("%s: virtio-net: tap %s refused offloads: %s", vd->dev->id, s->tapname, strerror(errno));
		return -1;
	}
	return 0;
}

static void net_activate(struct virtio_dev *vd)
{
	struct virtio_net *s = vd->opaque;

	rx_watch(s, virtq_is_enabled(&vd->queues[NET_RXQ].vq));
}

static void net_reset(struct virtio_dev *vd)
{
	struct virtio_net *s = vd->opaque;

	s->tx_blocked = false;
	rx_watch(s, false);
	ioctl(s->tap, TUNSETOFFLOAD, 0);
}

/* ---- setup ---- */

static int net_parse_slot_options(struct config *cfg, const char *prefix, const char *opts)
{
	return virtio_parse_slot_options(cfg, prefix, opts, "tap");
}

static int parse_mac(const char *text, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (sscanf(text, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
		return -1;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 0xFF)
			return -1;
		mac[i] = (uint8_t)v[i];
	}
	return (mac[0] & 1) ? -1 : 0; /* multicast addresses cannot be a station's */
}

/* Locally administered unicast address, stable for a VM name and slot. */
static void derive_mac(const struct device *dev, uint8_t mac[6])
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const char *p = dev->vm->name; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	h = (h ^ '/') * 0x100000001b3ULL;
	for (const char *p = dev->id; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	mac[0] = 0x02;
	for (int i = 1; i < 6; i++)
		mac[i] = (uint8_t)(h >> (8 * i));
}

static int open_tap(struct virtio_net *s, const char *id)
{
	struct ifreq ifr;
	int hdr = NET_HDR_LEN;

	if (!if_nametoindex(s->tapname)) {
		log_error("%s: virtio-net: tap device %s does not exist (create it with: ip tuntap add %s mode tap)", id,
			  s->tapname, s->tapname);
		return -1;
	}
	s->tap = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (s->tap < 0) {
		log_error("%s: virtio-net: cannot open /dev/net/tun: %s", id, strerror(errno));
		return -1;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", s->tapname);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(s->tap, TUNSETIFF, &ifr) < 0) {
		log_error("%s: virtio-net: cannot attach to tap device %s: %s", id, s->tapname,
			  errno == EINVAL || errno == EBUSY ? "not a tap device, or in use" : strerror(errno));
		return -1;
	}
	if (ioctl(s->tap, TUNSETVNETHDRSZ, &hdr) < 0) {
		log_error("%s: virtio-net: tap %s: cannot set the vnet header size: %s", id, s->tapname, strerror(errno));
		return -1;
	}
	/* Probe the offloads this tap takes, then start with none. */
	if (ioctl(s->tap, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == 0)
		s->tap_offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
	else if (ioctl(s->tap, TUNSETOFFLOAD, TUN_F_CSUM) == 0)
		s->tap_offloads = TUN_F_CSUM;
	ioctl(s->tap, TUNSETOFFLOAD, 0);
	return 0;
}

static int valid_mac(const char *value, char *err, size_t errlen)
{
	uint8_t mac[6];

	if (parse_mac(value, mac) < 0)
		return set_error(err, errlen, "not a unicast MAC address (xx:xx:xx:xx:xx:xx)");
	return 0;
}

static int valid_ifname(const char *value, char *err, size_t errlen)
{
	if (!*value || strlen(value) >= IFNAMSIZ || strchr(value, '/'))
		return set_error(err, errlen, "not a valid interface name");
	return 0;
}

static const struct option_decl net_options[] = {
	{ .name = "tap", .type = OPTION_STRING, .flags = OPTION_HOST_BINDING, .validate = valid_ifname,
	  .help = "the host tap device (-s SLOT,virtio-net,tap=NAME)" },
	{ .name = "mac", .type = OPTION_CUSTOM, .validate = valid_mac,
	  .help = "the guest's MAC address (default: derived from the VM name and slot)" },
	{ .name = "bootindex", .type = OPTION_UINT, .max = BOOTORDER_MAX_INDEX,
	  .help = "the firmware's boot order: lower first (fw_cfg bootorder; firmware boot only)" },
	{ 0 },
};

static int read_options(struct virtio_net *s, struct device *dev)
{
	const char *tap = dev_opt_str(dev, "tap"), *mac = dev_opt_str(dev, "mac");

	if (!tap) {
		log_error("%s: virtio-net needs a tap device (-s SLOT,virtio-net,tap=NAME)", dev->id);
		return -1;
	}
	strcpy(s->tapname, tap);
	if (mac)
		parse_mac(mac, s->mac);
	else
		derive_mac(dev, s->mac);
	return 0;
}

static void net_free(struct virtio_net *s)
{
	if (s->tap >= 0)
		close(s->tap);
	free(s);
}

static int net_create(struct device *dev)
{
	/* Features depend on what the tap can do, so each device carries its own ops after its state. */
	struct virtio_net *s = calloc(1, sizeof(*s) + sizeof(struct virtio_ops));
	struct virtio_ops *ops;

	if (!s)
		return -1;
	s->tap = -1;
	if (read_options(s, dev) < 0 || open_tap(s, dev->id) < 0) {
		net_free(s);
		return -1;
	}
	ops = (struct virtio_ops *)(s + 1);
	*ops = (struct virtio_ops){
		.name = "virtio-net",
		.type = VIRTIO_ID_NET,
		.pci_class = 0x02, /* network controller, Ethernet */
		.pci_subclass = 0x00,
		.nqueues = 2,
		.queue_size = NET_QUEUE_SIZE,
		.features = (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS) | (1ULL << VIRTIO_NET_F_CSUM) |
			    (1ULL << VIRTIO_NET_F_HOST_TSO4) | (1ULL << VIRTIO_NET_F_HOST_TSO6),
		.queue_notify = net_queue_notify,
		.features_ok = net_features_ok,
		.activate = net_activate,
		.reset = net_reset,
	};
	if (s->tap_offloads & TUN_F_CSUM)
		ops->features |= 1ULL << VIRTIO_NET_F_GUEST_CSUM;
	if (s->tap_offloads & TUN_F_TSO4)
		ops->features |= 1ULL << VIRTIO_NET_F_GUEST_TSO4;
	if (s->tap_offloads & TUN_F_TSO6)
		ops->features |= 1ULL << VIRTIO_NET_F_GUEST_TSO6;
	memcpy(s->cfg.mac, s->mac, 6);
	s->cfg.status = htole16(VIRTIO_NET_S_LINK_UP);
	s->cfg.max_virtqueue_pairs = htole16(1);
	if (virtio_dev_init(&s->vd, dev, ops, s, &s->cfg, sizeof(s->cfg)) < 0) {
		net_free(s);
		return -1;
	}
	s->tap_source = (struct virtio_io_source){ tap_ready, s };
	if (virtio_io_add(&s->vd, s->tap, 0, &s->tap_source) < 0) {
		virtio_dev_destroy(&s->vd);
		net_free(s);
		return -1;
	}
	dev->priv = s;
	return 0;
}

static void net_destroy(struct device *dev)
{
	struct virtio_net *s = dev->priv;

	virtio_dev_destroy(&s->vd);
	net_free(s);
}

static void net_platform_reset(struct device *dev)
{
	struct virtio_net *s = dev->priv;

	virtio_dev_reset(&s->vd);
}

static void net_run_state(struct device *dev, bool running)
{
	struct virtio_net *s = dev->priv;

	if (!running)
		virtio_freeze(&s->vd);
}

static int net_save(struct device *dev, struct state_writer *w)
{
	struct virtio_net *s = dev->priv;

	virtio_save(&s->vd, w);
	state_put_bytes(w, "mac", s->mac, sizeof(s->mac));
	return 0;
}

static int net_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	(void)version;
	struct virtio_net *s = dev->priv;
	uint8_t mac[6];

	/* The guest knows its MAC: keep it even if the name-derived default would differ now. */
	if (state_get_bytes(r, "mac", mac, sizeof(mac)) == 0) {
		memcpy(s->mac, mac, sizeof(mac));
		pthread_mutex_lock(&s->vd.lock);
		memcpy(s->cfg.mac, mac, sizeof(mac));
		pthread_mutex_unlock(&s->vd.lock);
	}
	if (virtio_restore(&s->vd, r) < 0)
		return -1;
	virtio_quiesce(&s->vd);
	if (device_live(&s->vd)) {
		ioctl(s->tap, TUNSETOFFLOAD, offloads_for(s->vd.guest_features));
		s->tx_blocked = false; /* the restore kick retries whatever is queued */
		rx_watch(s, virtq_is_enabled(&s->vd.queues[NET_RXQ].vq));
	}
	virtio_resume(&s->vd);
	return 0;
}

static struct device_model virtio_net_model = {
	.name = "virtio-net",
	.state_version = 1,
	.on_pci = true,
	.options = net_options,
	.parse_slot_options = net_parse_slot_options,
	/* OpenFirmware names as OVMF's boot order parser expects them */
	.ofw_name = "ethernet",
	.ofw_child = "ethernet-phy@0",
	.create = net_create,
	.reset = net_platform_reset,
	.save = net_save,
	.run_state = net_run_state,
	.restore = net_restore,
	.destroy = net_destroy,
};

DEVICE_MODEL(virtio_net_model)
