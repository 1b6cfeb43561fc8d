/*
 * The PCI bus (segment 0, bus 0 only) and the per-function API every PCI
 * device model uses.
 *
 * The bus is a platform model ("platform.pci") whose attach() registers
 * configuration mechanism #1 (ports 0xCF8, 0xCFC-0xCFF) and the ECAM
 * window (the platform's ecam_base, core/platform.h), then creates one device per
 * configured `pci.0.S.F.device=NAME`, in slot then function order, with
 * device id and configuration prefix "pci.0.S.F". When nothing is
 * configured at 0:0.0, a "hostbridge" is added there.
 *
 * A PCI device model (on_pci = true) embeds a struct pci_function in its
 * private state and, in create():
 *
 *	struct mydev { struct pci_function fn; pthread_mutex_t lock; ... };
 *
 *	static int mydev_create(struct device *dev)
 *	{
 *		struct mydev *s = calloc(1, sizeof(*s));
 *		dev->priv = s;
 *		if (pci_function_init(&s->fn, dev, 0x1AF4, 0x1041, 0x02, 0x00, 0x00) < 0)
 *			goto fail;
 *		pci_set_subsystem(&s->fn, 0x1AF4, 0x0001);
 *		if (pci_bar_add(&s->fn, 0, PCI_BAR_MEM64 | PCI_BAR_PREFETCH, 0x4000, mydev_bar0, s) < 0 ||
 *		    pci_msix_init(&s->fn, 4, 1, 0, 0x800) < 0 ||   // BAR 1 created for it
 *		    pci_cap_add(&s->fn, PCI_CAP_ID_VNDR, body, sizeof(body)) < 0)
 *			goto fail;
 *		...
 *	}
 *	destroy(): pci_function_destroy(&s->fn) before freeing s.
 *	reset():   pci_function_reset(&s->fn) plus the model's own state.
 *	save():    pci_function_save(&s->fn, w) plus the model's own fields.
 *	restore(): pci_function_restore(&s->fn, r) plus the model's own fields.
 *
 * BARs are placed by the bus when added (natural alignment; I/O BARs in
 * PCI_IO_BASE..PCI_IO_LIMIT, 32-bit memory BARs in the 32-bit MMIO window,
 * 64-bit ones in the 64-bit window above RAM) and decoding is enabled in
 * COMMAND, as firmware would leave it. The guest may move them: a BAR
 * write with decoding enabled, or a COMMAND change, re-registers the
 * range. Addresses that overlap RAM or another range, or overflow, are
 * not decoded (one warning per BAR); hyve never fails because of them.
 *
 * Threads and locks: config accesses and BAR accesses arrive on vCPU
 * threads; pci_msix_notify(), pci_msi_notify() and pci_intx_*() may be called from any
 * thread, also with the device's own lock held. fn->lock guards the
 * function's config space, BAR placement and MSI/MSI-X state; the PCI layer
 * never calls device code (BAR handlers, config hooks) while holding it,
 * so a device may take its own lock in those callbacks and call back into
 * pci_*() from them.
 */
#ifndef HYVE_PCI_H
#define HYVE_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "boot/layout.h"
#include "core/iobus.h"

struct vm;
struct device;
struct state_writer;
struct state_reader;
struct pci_bus;

/* ---- configuration space layout (type 0 header) ---- */
#define PCI_CFG_SPACE_SIZE 256
#define PCI_CFG_SPACE_EXP_SIZE 4096

#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_CLASS_DEVICE 0x0A /* subclass at 0x0A, base class at 0x0B */
#define PCI_CACHE_LINE_SIZE 0x0C
#define PCI_LATENCY_TIMER 0x0D
#define PCI_HEADER_TYPE 0x0E
#define PCI_BASE_ADDRESS_0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2C
#define PCI_SUBSYSTEM_ID 0x2E
#define PCI_ROM_ADDRESS 0x30
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3C
#define PCI_INTERRUPT_PIN 0x3D

#define PCI_COMMAND_IO 0x0001
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_COMMAND_PARITY 0x0040
#define PCI_COMMAND_SERR 0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400

#define PCI_STATUS_INTERRUPT 0x0008
#define PCI_STATUS_CAP_LIST 0x0010

#define PCI_HEADER_TYPE_MULTIFUNCTION 0x80

#define PCI_CAP_ID_MSI 0x05
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_EXP 0x10
#define PCI_CAP_ID_MSIX 0x11

/* Classes used by the built-in models. */
#define PCI_CLASS_BRIDGE 0x06
#define PCI_SUBCLASS_BRIDGE_HOST 0x00
#define PCI_SUBCLASS_BRIDGE_ISA 0x01

#define PCI_MAX_SLOTS 32
#define PCI_MAX_FUNCS 8
#define PCI_MAX_BARS 6

/* INTx pins as in the INTERRUPT_PIN register. */
#define PCI_INTA 1
#define PCI_INTD 4
/* INTx of (slot, pin) reaches I/O APIC GSI PCI_INTX_GSI_BASE + (slot + pin - 1) % PCI_INTX_GSIS
 * (boot/layout.h), level-triggered. */

/* ---- BARs ---- */

enum pci_bar_type {
	PCI_BAR_NONE = 0,
	PCI_BAR_IO = 1,      /* port I/O, size 4 .. 256 bytes */
	PCI_BAR_MEM32 = 2,   /* 32-bit memory, size >= 16 bytes (placed at >= 4 KiB granularity) */
	PCI_BAR_MEM64 = 3,   /* 64-bit memory: uses BAR index and index + 1 */
	PCI_BAR_TYPE_MASK = 3,
	PCI_BAR_PREFETCH = 0x10, /* OR into MEM32/MEM64: prefetchable */
};

struct pci_function;

struct pci_bar {
	struct pci_function *owner; /* set by pci_function_init() */
	unsigned index;
	unsigned type;       /* enum pci_bar_type, possibly | PCI_BAR_PREFETCH; NONE when unused */
	uint64_t size;       /* power of two */
	uint64_t addr;       /* address as the guest programmed it */
	io_handler_fn fn;    /* device handler, offsets relative to the BAR; may be NULL */
	void *opaque;
	uint64_t initial;    /* placement by the bus (restored on reset) */
	bool mapped;         /* registered on the iobus at mapped_addr */
	uint64_t mapped_addr;
	bool warned;         /* a refused placement has been logged */
};

/* ---- MSI-X ---- */

#define PCI_MSIX_ENTRY_SIZE 16
#define PCI_MSIX_MAX_VECTORS 2048
#define PCI_MSIX_ENTRY_CTRL_MASKBIT 0x1

struct pci_msix_vector {
	uint32_t addr_lo, addr_hi, data, ctrl; /* the table entry as the guest sees it */
	bool pending;        /* PBA bit */
	int efd;             /* eventfd: writing 1 raises the vector (honouring the masks) */
	int gsi;             /* KVM GSI of the MSI route; -1 until allocated */
	bool irqfd;          /* efd is attached to gsi in KVM (vector deliverable) */
	bool route_valid;    /* the route holds route_addr/route_data */
	uint64_t route_addr;
	uint32_t route_data;
};

struct pci_msix {
	unsigned nvec;       /* 0: no MSI-X capability */
	unsigned bar;        /* table and PBA BAR (BIR) */
	uint32_t table_off, pba_off;
	uint8_t cap;         /* capability offset in config space */
	struct pci_msix_vector *vec;
};

/* ---- MSI ---- */

#define PCI_MSI_MAX_VECTORS 32

/*
 * Plain MSI: the message lives in the capability; each vector reuses the
 * MSI-X vector machinery (its message as derived from the capability, the
 * ctrl mask bit from the Mask Bits register, its own GSI and irqfd).
 */
struct pci_msi {
	unsigned nvec;       /* 0: no MSI capability; else 1, 2, 4, 8, 16 or 32 */
	uint8_t cap;
	struct pci_msix_vector *vec;
};

/* ---- the function ---- */

struct pci_function {
	struct device *dev;  /* owning device (id "pci.B.S.F") */
	struct pci_bus *bus;
	uint8_t busno, slot, func;
	unsigned cfg_size;   /* PCI_CFG_SPACE_SIZE or PCI_CFG_SPACE_EXP_SIZE */

	pthread_mutex_t lock; /* see the file comment */
	uint8_t cfg[PCI_CFG_SPACE_EXP_SIZE];   /* current contents */
	uint8_t wmask[PCI_CFG_SPACE_EXP_SIZE]; /* bits the guest may write */
	uint8_t w1c[PCI_CFG_SPACE_EXP_SIZE];   /* bits the guest clears by writing 1 */
	uint8_t *cfg_reset;  /* power-on contents, captured by the bus after create() */
	uint8_t cap_next;    /* where the next capability goes */
	uint8_t cap_last;    /* offset of the last capability, 0 if none */

	struct pci_bar bars[PCI_MAX_BARS];
	struct pci_msix msix;
	struct pci_msi msi;

	unsigned intx_pin;   /* 0 none, PCI_INTA..PCI_INTD */
	unsigned intx_gsi;
	bool intx_level;     /* the device asserts its line */
	bool intx_driven;    /* the level currently counted on the shared GSI */

	/*
	 * Optional device-specific config registers. cfg_read runs after the
	 * generic read with *val already holding the config space bytes, and
	 * may replace it. cfg_write runs after the generic write (write masks
	 * applied, BARs/COMMAND/MSI-X handled); `val` is what the guest wrote.
	 * Neither runs with fn->lock held. `size` is 1, 2 or 4 and
	 * off + size <= cfg_size.
	 */
	void (*cfg_read)(struct pci_function *fn, unsigned off, unsigned size, uint32_t *val);
	void (*cfg_write)(struct pci_function *fn, unsigned off, unsigned size, uint32_t val);
	void *opaque;        /* free for the device (e.g. back pointer for hooks) */
};

/*
 * Initialises fn for dev (whose id is "pci.B.S.F") and attaches it to the
 * bus: type 0 header with the given IDs and class code, 256-byte config
 * space, COMMAND writable (I/O, memory, bus master, parity, SERR, INTx
 * disable). 0, or -1 after logging (no bus, bad id, slot taken).
 */
int pci_function_init(struct pci_function *fn, struct device *dev, uint16_t vendor, uint16_t device,
		      uint8_t class, uint8_t subclass, uint8_t progif);
/* Gives the function a 4 KiB (extended, PCIe-style) configuration space. */
void pci_function_set_extended(struct pci_function *fn);
void pci_set_subsystem(struct pci_function *fn, uint16_t vendor, uint16_t device);
void pci_set_revision(struct pci_function *fn, uint8_t rev);
/* Detaches from the bus, unmaps BARs, releases MSI-X vectors, drops INTx. */
void pci_function_destroy(struct pci_function *fn);
/* Power-on state: config space as after create(), BARs at their initial places, MSI-X off and masked. */
void pci_function_reset(struct pci_function *fn);

/* Raw config space helpers for device setup (no side effects, no locking needed before the guest runs). */
void pci_cfg_set8(struct pci_function *fn, unsigned off, uint8_t v);
void pci_cfg_set16(struct pci_function *fn, unsigned off, uint16_t v);
void pci_cfg_set32(struct pci_function *fn, unsigned off, uint32_t v);
uint32_t pci_cfg_get(struct pci_function *fn, unsigned off, unsigned size); /* takes fn->lock */
/* Marks bits the guest may write (mask) / clears by writing one (w1c), little-endian over len bytes. */
void pci_cfg_set_wmask(struct pci_function *fn, unsigned off, unsigned len, uint32_t mask);
void pci_cfg_set_w1c(struct pci_function *fn, unsigned off, unsigned len, uint32_t mask);

/*
 * Adds BAR `index` (0-5; a MEM64 BAR also takes index + 1) of `type`
 * (enum pci_bar_type, | PCI_BAR_PREFETCH for memory) and `size` (rounded
 * up to a power of two, at least 4 for I/O and 16 for memory), placed by
 * the bus allocator and decoded at once. Guest accesses call
 * fn(opaque, offset-in-BAR, data, size, is_write) on the vCPU thread.
 * Returns 0, or -1 after logging (bad index/size, window full).
 */
int pci_bar_add(struct pci_function *fn, unsigned index, unsigned type, uint64_t size, io_handler_fn fn_io,
		void *opaque);
/* Current guest-programmed base of a BAR (0 when unused). */
uint64_t pci_bar_addr(struct pci_function *fn, unsigned index);
/*
 * Is the BAR decoded (on its bus), and where? A BAR whose programmed
 * address overlaps RAM or another range is not decoded although
 * pci_bar_addr() returns that address; what follows the BAR (a KVM slot,
 * ioeventfds) must follow this instead.
 */
bool pci_bar_mapped(struct pci_function *fn, unsigned index, uint64_t *addr);

/*
 * Appends a capability: `body` is the capability after its ID and next
 * pointer (len bytes, may be 0). Returns its offset in config space
 * (>= 0x40, dword aligned), or -1 when the 256-byte space is full. The
 * caller may then mark writable bits with pci_cfg_set_wmask().
 */
int pci_cap_add(struct pci_function *fn, uint8_t id, const void *body, unsigned len);
/* Offset of the first capability with `id`, or 0. */
unsigned pci_cap_find(struct pci_function *fn, uint8_t id);

/* ---- INTx ---- */

/*
 * Gives the function an INTx pin: INTA for function 0, INTB for 1, ...
 * (function % 4), swizzled onto GSIs 16-23 by slot, level-triggered.
 */
int pci_intx_request(struct pci_function *fn);
/*
 * Level of the function's INTx line (true = asserted). Shared GSIs are
 * ORed; COMMAND.INTx_DISABLE and an enabled MSI-X keep the line low while
 * STATUS.INTERRUPT still follows the level.
 */
void pci_intx_set(struct pci_function *fn, bool level);
static inline void pci_intx_assert(struct pci_function *fn) { pci_intx_set(fn, true); }
static inline void pci_intx_deassert(struct pci_function *fn) { pci_intx_set(fn, false); }

/* ---- MSI-X ---- */

/*
 * Adds the MSI-X capability with nvec vectors (1-2048), table at
 * table_off and PBA at pba_off inside BAR `bar` (both 8-byte aligned;
 * they must not overlap). When BAR `bar` does not exist yet it is created
 * as a 32-bit memory BAR just large enough (at least 4 KiB) with no device
 * handler; otherwise accesses to the table and PBA are handled here and
 * every other offset goes to the BAR's device handler. Each vector gets an
 * eventfd and a KVM GSI (irqfd). All vectors start masked, MSI-X disabled.
 * Returns the capability offset, or -1 after logging.
 */
int pci_msix_init(struct pci_function *fn, unsigned nvec, unsigned bar, uint32_t table_off, uint32_t pba_off);
/* MSI-X enable bit set by the guest (the device must then not use INTx). */
bool pci_msix_enabled(struct pci_function *fn);
/*
 * Raises MSI-X vector `vector`, from any thread: delivered at once when
 * MSI-X is enabled and neither the function nor the vector is masked,
 * else its PBA bit is set and it is delivered when unmasked. Returns 0,
 * or -1 when MSI-X is disabled or vector is out of range (nothing sent;
 * the device may use INTx).
 */
int pci_msix_notify(struct pci_function *fn, unsigned vector);
/*
 * The vector's eventfd: writing an 8-byte 1 to it (from any thread, no
 * locks needed) has the same effect as pci_msix_notify(): KVM injects
 * it directly while the vector is deliverable; while it is masked the
 * count waits and becomes the pending bit. -1 for a bad vector.
 */
int pci_msix_eventfd(struct pci_function *fn, unsigned vector);

/* ---- MSI ---- */

/*
 * Adds the MSI capability (64-bit addresses, per-vector masking) with
 * nvec vectors (1, 2, 4, ..., 32; the guest may grant fewer through
 * Multiple Message Enable, vector i then sends data | i). Each vector gets
 * an eventfd and a KVM GSI (irqfd) while deliverable. MSI starts
 * disabled. Returns the capability offset, or -1 after logging.
 */
int pci_msi_init(struct pci_function *fn, unsigned nvec);
/* MSI enable bit set by the guest (the device must then not use INTx, which is kept low). */
bool pci_msi_enabled(struct pci_function *fn);
/*
 * Raises MSI vector `vector`, from any thread: delivered at once when MSI
 * is enabled, the vector granted and not masked; a masked vector's
 * pending bit is set instead and it is delivered when unmasked. Returns
 * 0, or -1 when MSI is disabled or the vector was not granted.
 */
int pci_msi_notify(struct pci_function *fn, unsigned vector);

/* ---- snapshots ---- */

/*
 * Writes the function's state as a nested map "pci": config space,
 * BAR addresses, MSI-X table and pending bits, MSI pending bits
 * ("msi_pending", a bit per vector, when the function has MSI), INTx level.
 */
void pci_function_save(struct pci_function *fn, struct state_writer *w);
/*
 * Reads what pci_function_save() wrote and re-applies it: BAR mappings,
 * MSI routes and the INTx line. 0, or -1 after logging.
 */
int pci_function_restore(struct pci_function *fn, struct state_reader *r);

/* ---- the bus, for the platform and tests ---- */

/* The function at bus 0 slot/func, or NULL. */
struct pci_function *pci_bus_function(struct pci_bus *bus, unsigned slot, unsigned func);
/* The VM's PCI bus, or NULL before the bus is attached. */
struct pci_bus *pci_bus_of(struct vm *vm);
/* Generic config access as the bus does it (checks bounds; unaligned/odd sizes are split). */
uint32_t pci_cfg_read(struct pci_function *fn, unsigned off, unsigned size);
void pci_cfg_write(struct pci_function *fn, unsigned off, unsigned size, uint32_t val);

#endif
