/*
 * The PCI bus: configuration mechanism #1 and ECAM, BAR placement and
 * decoding, INTx routing, MSI and MSI-X (see pci.h for the device-facing API).
 *
 * Config mechanism #1: CONFIG_ADDRESS is the dword register at 0xCF8. The
 * reset control register (PORT_RESET, 0xCF9) sits inside it and answers
 * byte accesses, so the bus claims 0xCF8-0xCFB as a whole and hands byte
 * accesses at 0xCF9 to the handler that was registered there before (the
 * ACPI PM device, which attaches earlier). Other non-dword accesses to
 * 0xCF8-0xCFB reach nothing, as on a PC.
 */
#include "pci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "boot/aml.h"
#include "boot/layout.h"
#include "core/config.h"
#include "core/device.h"
#include "core/irq.h"
#include "core/log.h"
#include "core/options.h"
#include "core/platform.h"
#include "core/vm.h"
#include "snapshot/state.h"

#define BUS_DEVICE_ID "platform.pci"
#define CONFIG_ADDRESS_ENABLE 0x80000000u
#define CONFIG_ADDRESS_MASK 0x80FFFFFCu /* enable, bus, device, function, register (dword) */

#define BAR_IO_FLAG 0x1
#define BAR_MEM_TYPE_64 0x4
#define BAR_MEM_PREFETCH 0x8
#define BAR_MIN_PLACEMENT 4096 /* memory BARs each get their own page(s) */

#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_FMASK 0x4000
#define MSIX_CAP_LEN 10 /* after ID and next: control (2), table (4), PBA (4) */

/* MSI capability, 64-bit with per-vector masking; offsets from the capability. */
#define MSI_CTRL 2
#define MSI_ADDR_LO 4
#define MSI_ADDR_HI 8
#define MSI_DATA 12
#define MSI_MASK 16
#define MSI_PENDING 20
#define MSI_CAP_LEN 22 /* after ID and next */
#define MSI_CTRL_ENABLE 0x0001
#define MSI_CTRL_MME 0x0070 /* multiple message enable: log2 of the vectors granted */
#define MSI_CTRL_64BIT 0x0080
#define MSI_CTRL_PVM 0x0100 /* per-vector masking */

#define COMMAND_WRITABLE                                                                          \
	(PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | \
	 PCI_COMMAND_INTX_DISABLE)
#define STATUS_W1C 0xF900 /* parity error, SERR, master/target aborts, master data parity error */

struct pci_bus {
	struct vm *vm;
	pthread_mutex_t lock; /* config_address, the function table, INTx counts, the allocators */
	uint32_t config_address;
	struct pci_function *fns[PCI_MAX_SLOTS][PCI_MAX_FUNCS];
	unsigned gsi_asserted[PCI_INTX_GSIS]; /* functions driving each INTx GSI */
	uint64_t io_next, mmio32_next, mmio32_end, mmio64_next, mmio64_end;
	io_handler_fn reset_fn;  /* the byte register at 0xCF9 we took over, if any */
	void *reset_opaque;
	bool ports_registered, ecam_registered;
	unsigned nfuncs;  /* attached functions; the bus is freed after the last one and its own destroy */
	bool destroyed;
};

static struct device_model pci_bus_model;

/* ---- little-endian helpers ---- */

static uint32_t le_get(const uint8_t *p, unsigned size)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < size; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static void le_put(uint8_t *p, unsigned size, uint32_t v)
{
	for (unsigned i = 0; i < size; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t cfg16(const struct pci_function *fn, unsigned off)
{
	return (uint16_t)le_get(&fn->cfg[off], 2);
}

static uint32_t cfg32(const struct pci_function *fn, unsigned off)
{
	return le_get(&fn->cfg[off], 4);
}

void pci_cfg_set8(struct pci_function *fn, unsigned off, uint8_t v)
{
	if (off < PCI_CFG_SPACE_EXP_SIZE)
		fn->cfg[off] = v;
}

void pci_cfg_set16(struct pci_function *fn, unsigned off, uint16_t v)
{
	if (off + 2 <= PCI_CFG_SPACE_EXP_SIZE)
		le_put(&fn->cfg[off], 2, v);
}

void pci_cfg_set32(struct pci_function *fn, unsigned off, uint32_t v)
{
	if (off + 4 <= PCI_CFG_SPACE_EXP_SIZE)
		le_put(&fn->cfg[off], 4, v);
}

void pci_cfg_set_wmask(struct pci_function *fn, unsigned off, unsigned len, uint32_t mask)
{
	for (unsigned i = 0; i < len && i < 4 && off + i < PCI_CFG_SPACE_EXP_SIZE; i++)
		fn->wmask[off + i] = (uint8_t)(mask >> (8 * i));
}

void pci_cfg_set_w1c(struct pci_function *fn, unsigned off, unsigned len, uint32_t mask)
{
	for (unsigned i = 0; i < len && i < 4 && off + i < PCI_CFG_SPACE_EXP_SIZE; i++)
		fn->w1c[off + i] = (uint8_t)(mask >> (8 * i));
}

uint32_t pci_cfg_get(struct pci_function *fn, unsigned off, unsigned size)
{
	uint32_t v = 0;

	pthread_mutex_lock(&fn->lock);
	for (unsigned i = 0; i < size && i < 4; i++)
		if (off + i < fn->cfg_size)
			v |= (uint32_t)fn->cfg[off + i] << (8 * i);
	pthread_mutex_unlock(&fn->lock);
	return v;
}

/* ---- the bus object ---- */

struct pci_bus *pci_bus_of(struct vm *vm)
{
	struct device *d = device_find(vm, BUS_DEVICE_ID);

	return d ? d->priv : NULL;
}

struct pci_function *pci_bus_function(struct pci_bus *bus, unsigned slot, unsigned func)
{
	struct pci_function *fn;

	if (!bus || slot >= PCI_MAX_SLOTS || func >= PCI_MAX_FUNCS)
		return NULL;
	pthread_mutex_lock(&bus->lock);
	fn = bus->fns[slot][func];
	pthread_mutex_unlock(&bus->lock);
	return fn;
}

static uint64_t align_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) & ~(align - 1);
}

static uint64_t pow2_at_least(uint64_t v)
{
	uint64_t p = 1;

	while (p < v && p < (1ULL << 63))
		p <<= 1;
	return p;
}

/* ---- BAR decoding ---- */

static bool bar_is_io(const struct pci_bar *b)
{
	return (b->type & PCI_BAR_TYPE_MASK) == PCI_BAR_IO;
}

static struct iobus *bar_iobus(struct pci_function *fn, const struct pci_bar *b)
{
	return bar_is_io(b) ? &fn->dev->vm->pio : &fn->dev->vm->mmio;
}

/* The address the BAR registers hold now. */
static uint64_t bar_cfg_addr(const struct pci_function *fn, const struct pci_bar *b)
{
	unsigned reg = PCI_BASE_ADDRESS_0 + 4 * b->index;
	uint64_t lo = cfg32(fn, reg);

	switch (b->type & PCI_BAR_TYPE_MASK) {
	case PCI_BAR_IO:
		return lo & ~3ULL;
	case PCI_BAR_MEM32:
		return lo & ~0xFULL;
	case PCI_BAR_MEM64:
		return (lo & ~0xFULL) | ((uint64_t)cfg32(fn, reg + 4) << 32);
	}
	return 0;
}

/* Whether [base, base+len) is free on the bus (so iobus_register() will not complain). */
static bool iobus_free(struct iobus *bus, uint64_t base, uint64_t len)
{
	bool free_range = true;

	pthread_rwlock_rdlock(&bus->lock);
	for (unsigned i = 0; i < bus->count; i++) {
		const struct io_range *r = &bus->ranges[i];
		if (r->base < base + len && base < r->base + r->len) {
			free_range = false;
			break;
		}
	}
	pthread_rwlock_unlock(&bus->lock);
	return free_range;
}

static bool overlaps_ram(const struct guest_memory *mem, uint64_t base, uint64_t len)
{
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct mem_region *r = &mem->regions[i];
		if (r->gpa < base + len && base < r->gpa + r->size)
			return true;
	}
	return false;
}

static void bar_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write);

static void bar_refused(struct pci_function *fn, struct pci_bar *b, uint64_t addr, const char *why)
{
	if (b->warned)
		return;
	b->warned = true;
	log_warn("%s: BAR %u at 0x%llx (size 0x%llx) %s; the guest's placement is not decoded", fn->dev->id,
		 b->index, (unsigned long long)addr, (unsigned long long)b->size, why);
}

/* Maps or unmaps one BAR to match its registers and COMMAND; fn->lock held. */
static void bar_update(struct pci_function *fn, struct pci_bar *b)
{
	uint16_t cmd = cfg16(fn, PCI_COMMAND);
	bool enabled = bar_is_io(b) ? (cmd & PCI_COMMAND_IO) : (cmd & PCI_COMMAND_MEMORY);
	uint64_t addr = bar_cfg_addr(fn, b);
	struct iobus *bus = bar_iobus(fn, b);
	bool want = enabled && addr != 0;

	b->addr = addr;
	if (b->mapped && want && b->mapped_addr == addr)
		return;
	if (b->mapped) {
		iobus_unregister(bus, b->mapped_addr);
		b->mapped = false;
	}
	if (!want)
		return;
	if (addr + b->size < addr || (bar_is_io(b) && addr + b->size > PCI_IO_END)) {
		bar_refused(fn, b, addr, "runs past the end of its address space");
		return;
	}
	if (!bar_is_io(b) && overlaps_ram(&fn->dev->vm->mem, addr, b->size)) {
		bar_refused(fn, b, addr, "overlaps guest RAM");
		return;
	}
	if (!iobus_free(bus, addr, b->size) || iobus_register(bus, addr, b->size, bar_io, b) < 0) {
		bar_refused(fn, b, addr, "overlaps another device");
		return;
	}
	b->mapped = true;
	b->mapped_addr = addr;
}

static void bars_update(struct pci_function *fn)
{
	for (unsigned i = 0; i < PCI_MAX_BARS; i++)
		if (fn->bars[i].type != PCI_BAR_NONE)
			bar_update(fn, &fn->bars[i]);
}

static void bars_unmap(struct pci_function *fn)
{
	for (unsigned i = 0; i < PCI_MAX_BARS; i++) {
		struct pci_bar *b = &fn->bars[i];
		if (b->mapped) {
			iobus_unregister(bar_iobus(fn, b), b->mapped_addr);
			b->mapped = false;
		}
	}
}

/* Writes the BAR registers and their write masks for address addr. */
static void bar_set_registers(struct pci_function *fn, struct pci_bar *b, uint64_t addr)
{
	unsigned reg = PCI_BASE_ADDRESS_0 + 4 * b->index;
	uint64_t mask = ~(b->size - 1);

	switch (b->type & PCI_BAR_TYPE_MASK) {
	case PCI_BAR_IO:
		pci_cfg_set32(fn, reg, (uint32_t)(addr & ~3ULL) | BAR_IO_FLAG);
		pci_cfg_set_wmask(fn, reg, 4, (uint32_t)mask & ~3u);
		break;
	case PCI_BAR_MEM32:
		pci_cfg_set32(fn, reg, (uint32_t)(addr & ~0xFULL) | ((b->type & PCI_BAR_PREFETCH) ? BAR_MEM_PREFETCH : 0));
		pci_cfg_set_wmask(fn, reg, 4, (uint32_t)mask & ~0xFu);
		break;
	case PCI_BAR_MEM64:
		pci_cfg_set32(fn, reg, (uint32_t)(addr & ~0xFULL) | BAR_MEM_TYPE_64 |
					     ((b->type & PCI_BAR_PREFETCH) ? BAR_MEM_PREFETCH : 0));
		pci_cfg_set32(fn, reg + 4, (uint32_t)(addr >> 32));
		pci_cfg_set_wmask(fn, reg, 4, (uint32_t)mask & ~0xFu);
		pci_cfg_set_wmask(fn, reg + 4, 4, (uint32_t)(mask >> 32));
		break;
	}
}

/* Picks a naturally aligned place in the type's window; 0 or -1. */
static int bar_place(struct pci_bus *bus, unsigned type, uint64_t size, uint64_t *addr)
{
	uint64_t *next, end, align = size;
	int rc = -1;

	pthread_mutex_lock(&bus->lock);
	switch (type & PCI_BAR_TYPE_MASK) {
	case PCI_BAR_IO:
		next = &bus->io_next, end = PCI_IO_END;
		break;
	case PCI_BAR_MEM32:
		next = &bus->mmio32_next, end = bus->mmio32_end;
		align = size > BAR_MIN_PLACEMENT ? size : BAR_MIN_PLACEMENT;
		break;
	default:
		next = &bus->mmio64_next, end = bus->mmio64_end;
		align = size > BAR_MIN_PLACEMENT ? size : BAR_MIN_PLACEMENT;
		break;
	}
	uint64_t base = align_up(*next, align);
	if (base >= *next && base <= end && size <= end - base) {
		*addr = base;
		*next = base + (size > align ? size : align);
		rc = 0;
	}
	pthread_mutex_unlock(&bus->lock);
	return rc;
}

int pci_bar_add(struct pci_function *fn, unsigned index, unsigned type, uint64_t size, io_handler_fn fn_io,
		void *opaque)
{
	unsigned kind = type & PCI_BAR_TYPE_MASK;
	struct pci_bar *b;
	uint64_t addr;

	if (index >= PCI_MAX_BARS || kind == PCI_BAR_NONE || (kind == PCI_BAR_MEM64 && index + 1 >= PCI_MAX_BARS) ||
	    (kind == PCI_BAR_IO && (type & PCI_BAR_PREFETCH)) || (type & ~(PCI_BAR_TYPE_MASK | PCI_BAR_PREFETCH))) {
		log_error("%s: BAR %u: invalid type 0x%x", fn->dev->id, index, type);
		return -1;
	}
	if (fn->bars[index].type != PCI_BAR_NONE ||
	    (kind == PCI_BAR_MEM64 && fn->bars[index + 1].type != PCI_BAR_NONE) ||
	    (index > 0 && (fn->bars[index - 1].type & PCI_BAR_TYPE_MASK) == PCI_BAR_MEM64)) {
		log_error("%s: BAR %u is already in use", fn->dev->id, index);
		return -1;
	}
	if (size == 0 || (kind == PCI_BAR_IO && size > 0x10000) || (kind == PCI_BAR_MEM32 && size > (1ULL << 31)) ||
	    size > (1ULL << 62)) {
		log_error("%s: BAR %u: unsupported size 0x%llx", fn->dev->id, index, (unsigned long long)size);
		return -1;
	}
	size = pow2_at_least(size < (kind == PCI_BAR_IO ? 4u : 16u) ? (kind == PCI_BAR_IO ? 4u : 16u) : size);
	if (bar_place(fn->bus, type, size, &addr) < 0) {
		log_error("%s: BAR %u (0x%llx bytes) does not fit in the PCI %s window", fn->dev->id, index,
			  (unsigned long long)size, kind == PCI_BAR_IO ? "I/O" : kind == PCI_BAR_MEM32 ? "32-bit memory" : "64-bit memory");
		return -1;
	}
	pthread_mutex_lock(&fn->lock);
	b = &fn->bars[index];
	b->type = type;
	b->size = size;
	b->fn = fn_io;
	b->opaque = opaque;
	b->initial = addr;
	b->warned = false;
	bar_set_registers(fn, b, addr);
	/* Decoding on, as firmware leaves a device whose BARs it assigned. */
	pci_cfg_set16(fn, PCI_COMMAND,
		      cfg16(fn, PCI_COMMAND) | (kind == PCI_BAR_IO ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY));
	bar_update(fn, b);
	pthread_mutex_unlock(&fn->lock);
	return 0;
}

uint64_t pci_bar_addr(struct pci_function *fn, unsigned index)
{
	uint64_t addr;

	if (index >= PCI_MAX_BARS)
		return 0;
	pthread_mutex_lock(&fn->lock);
	addr = fn->bars[index].type != PCI_BAR_NONE ? bar_cfg_addr(fn, &fn->bars[index]) : 0;
	pthread_mutex_unlock(&fn->lock);
	return addr;
}

bool pci_bar_mapped(struct pci_function *fn, unsigned index, uint64_t *addr)
{
	bool mapped;

	if (index >= PCI_MAX_BARS)
		return false;
	pthread_mutex_lock(&fn->lock);
	mapped = fn->bars[index].mapped;
	*addr = mapped ? fn->bars[index].mapped_addr : 0;
	pthread_mutex_unlock(&fn->lock);
	return mapped;
}

/* ---- INTx ---- */

/* Brings the shared GSI in line with what the function should drive; fn->lock held. */
static void intx_update(struct pci_function *fn)
{
	struct pci_bus *bus = fn->bus;
	bool drive = fn->intx_pin && fn->intx_level && !(cfg16(fn, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE) &&
		     !(fn->msix.nvec && (cfg16(fn, fn->msix.cap + 2) & MSIX_CTRL_ENABLE)) &&
		     !(fn->msi.nvec && (cfg16(fn, fn->msi.cap + MSI_CTRL) & MSI_CTRL_ENABLE));
	unsigned idx = fn->intx_gsi - PCI_INTX_GSI_BASE;

	if (fn->intx_pin) {
		uint16_t status = cfg16(fn, PCI_STATUS);
		status = fn->intx_level ? (status | PCI_STATUS_INTERRUPT) : (status & ~PCI_STATUS_INTERRUPT);
		pci_cfg_set16(fn, PCI_STATUS, status);
	}
	if (drive == fn->intx_driven || !bus)
		return;
	fn->intx_driven = drive;
	pthread_mutex_lock(&bus->lock);
	if (drive && bus->gsi_asserted[idx]++ == 0)
		vm_set_irq(bus->vm, fn->intx_gsi, 1);
	else if (!drive && --bus->gsi_asserted[idx] == 0)
		vm_set_irq(bus->vm, fn->intx_gsi, 0);
	pthread_mutex_unlock(&bus->lock);
}

int pci_intx_request(struct pci_function *fn)
{
	unsigned pin = PCI_INTA + fn->func % 4;

	pthread_mutex_lock(&fn->lock);
	fn->intx_pin = pin;
	fn->intx_gsi = PCI_INTX_GSI_BASE + (fn->slot + pin - 1) % PCI_INTX_GSIS;
	fn->cfg[PCI_INTERRUPT_PIN] = (uint8_t)pin;
	fn->cfg[PCI_INTERRUPT_LINE] = (uint8_t)fn->intx_gsi;
	pthread_mutex_unlock(&fn->lock);
	return 0;
}

void pci_intx_set(struct pci_function *fn, bool level)
{
	pthread_mutex_lock(&fn->lock);
	fn->intx_level = level;
	intx_update(fn);
	pthread_mutex_unlock(&fn->lock);
}

/* ---- MSI-X ---- */

static bool msix_enabled_locked(const struct pci_function *fn)
{
	return fn->msix.nvec && (cfg16(fn, fn->msix.cap + 2) & MSIX_CTRL_ENABLE);
}

static bool msix_deliverable(const struct pci_function *fn, const struct pci_msix_vector *v)
{
	return msix_enabled_locked(fn) && !(cfg16(fn, fn->msix.cap + 2) & MSIX_CTRL_FMASK) &&
	       !(v->ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

/* Moves signals that arrived on a detached eventfd into the pending bit. */
static void msix_drain(struct pci_msix_vector *v)
{
	uint64_t count;

	if (v->efd >= 0 && read(v->efd, &count, sizeof(count)) == sizeof(count) && count)
		v->pending = true;
}

static void msix_send(struct pci_function *fn, struct pci_msix_vector *v)
{
	uint64_t one = 1;

	if (v->irqfd && write(v->efd, &one, sizeof(one)) == sizeof(one))
		return;
	vm_signal_msi(fn->dev->vm, ((uint64_t)v->addr_hi << 32) | v->addr_lo, v->data);
}

/*
 * Brings one vector's route, irqfd and pending bit in line with its message
 * and whether the guest lets it through (MSI and MSI-X alike); fn->lock held.
 */
static void vector_update(struct pci_function *fn, struct pci_msix_vector *v, bool deliverable)
{
	struct vm *vm = fn->dev->vm;
	uint64_t addr = ((uint64_t)v->addr_hi << 32) | v->addr_lo;

	if (!deliverable) {
		if (v->irqfd) {
			vm_irqfd_detach(vm, v->efd, (unsigned)v->gsi);
			v->irqfd = false;
		}
		msix_drain(v);
		return;
	}
	if (v->gsi >= 0 && (!v->route_valid || v->route_addr != addr || v->route_data != v->data)) {
		v->route_valid = vm_irq_msi_set(vm, (unsigned)v->gsi, addr, v->data) == 0;
		v->route_addr = addr;
		v->route_data = v->data;
	}
	msix_drain(v);
	if (!v->irqfd && v->route_valid && v->efd >= 0)
		v->irqfd = vm_irqfd_attach(vm, v->efd, (unsigned)v->gsi) == 0;
	if (v->pending) {
		v->pending = false;
		msix_send(fn, v);
	}
}

static void msix_vector_update(struct pci_function *fn, struct pci_msix_vector *v)
{
	vector_update(fn, v, msix_deliverable(fn, v));
}

static void msix_update_all(struct pci_function *fn)
{
	for (unsigned i = 0; i < fn->msix.nvec; i++)
		msix_vector_update(fn, &fn->msix.vec[i]);
}

static uint32_t *msix_field(struct pci_msix_vector *v, unsigned field)
{
	switch (field) {
	case 0: return &v->addr_lo;
	case 1: return &v->addr_hi;
	case 2: return &v->data;
	default: return &v->ctrl;
	}
}

/* Table access of any width inside the table; fn->lock held. */
static void msix_table_io(struct pci_function *fn, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	unsigned first = (unsigned)(off / PCI_MSIX_ENTRY_SIZE), last = (unsigned)((off + size - 1) / PCI_MSIX_ENTRY_SIZE);

	for (unsigned i = 0; i < size; i++) {
		uint64_t o = off + i;
		struct pci_msix_vector *v = &fn->msix.vec[o / PCI_MSIX_ENTRY_SIZE];
		uint32_t *f = msix_field(v, (unsigned)(o % PCI_MSIX_ENTRY_SIZE) / 4);
		unsigned shift = (unsigned)(o % 4) * 8;
		if (!is_write) {
			data[i] = (uint8_t)(*f >> shift);
			continue;
		}
		*f = (*f & ~(0xFFu << shift)) | ((uint32_t)data[i] << shift);
		if (f == &v->ctrl)
			v->ctrl &= PCI_MSIX_ENTRY_CTRL_MASKBIT; /* the rest is reserved */
	}
	if (is_write)
		for (unsigned e = first; e <= last; e++)
			msix_vector_update(fn, &fn->msix.vec[e]);
}

/* PBA reads; writes are ignored. fn->lock held. */
static void msix_pba_io(struct pci_function *fn, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	if (is_write)
		return;
	for (unsigned i = 0; i < fn->msix.nvec; i++)
		if (!fn->msix.vec[i].irqfd)
			msix_drain(&fn->msix.vec[i]);
	for (unsigned i = 0; i < size; i++) {
		uint8_t byte = 0;
		for (unsigned bit = 0; bit < 8; bit++) {
			uint64_t n = (off + i) * 8 + bit;
			if (n < fn->msix.nvec && fn->msix.vec[n].pending)
				byte |= (uint8_t)(1u << bit);
		}
		data[i] = byte;
	}
}

static uint64_t msix_pba_len(unsigned nvec)
{
	return ((nvec + 63) / 64) * 8ULL;
}

/* The iobus handler of every BAR: MSI-X structures first, then the device. */
static void bar_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct pci_bar *b = opaque;
	struct pci_function *fn = b->owner;
	struct pci_msix *m = &fn->msix;

	if (m->nvec && b->index == m->bar) {
		uint64_t tlen = (uint64_t)m->nvec * PCI_MSIX_ENTRY_SIZE, plen = msix_pba_len(m->nvec);
		bool in_table = offset >= m->table_off && offset + size <= m->table_off + tlen;
		bool in_pba = offset >= m->pba_off && offset + size <= m->pba_off + plen;
		bool touches = (offset < m->table_off + tlen && m->table_off < offset + size) ||
			       (offset < m->pba_off + plen && m->pba_off < offset + size);
		if (in_table || in_pba) {
			pthread_mutex_lock(&fn->lock);
			if (in_table)
				msix_table_io(fn, offset - m->table_off, data, size, is_write);
			else
				msix_pba_io(fn, offset - m->pba_off, data, size, is_write);
			pthread_mutex_unlock(&fn->lock);
			return;
		}
		if (touches) { /* straddles the table or PBA edge: not a valid access */
			if (!is_write)
				memset(data, 0xFF, size);
			return;
		}
	}
	if (b->fn)
		b->fn(b->opaque, offset, data, size, is_write);
	else if (!is_write)
		memset(data, 0, size);
}

/* Releases vectors' irqfds, GSIs and eventfds. */
static void vectors_free(struct pci_function *fn, struct pci_msix_vector *vec, unsigned n)
{
	for (unsigned i = 0; vec && i < n; i++) {
		struct pci_msix_vector *v = &vec[i];
		if (v->irqfd)
			vm_irqfd_detach(fn->dev->vm, v->efd, (unsigned)v->gsi);
		if (v->gsi >= 0)
			vm_irq_msi_free(fn->dev->vm, (unsigned)v->gsi);
		if (v->efd >= 0)
			close(v->efd);
	}
	free(vec);
}

/* nvec vectors, each with an eventfd and a KVM GSI for its MSI route; NULL after logging. */
static struct pci_msix_vector *vectors_alloc(struct pci_function *fn, unsigned nvec, const char *what)
{
	struct pci_msix_vector *vec = calloc(nvec, sizeof(*vec));

	for (unsigned i = 0; vec && i < nvec; i++) {
		vec[i].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		vec[i].gsi = vec[i].efd >= 0 ? vm_irq_msi_alloc(fn->dev->vm) : -1;
		if (vec[i].efd < 0 || vec[i].gsi < 0) {
			if (vec[i].efd < 0)
				log_error("%s: cannot create an eventfd for %s: %s", fn->dev->id, what, strerror(errno));
			vectors_free(fn, vec, i + 1);
			return NULL;
		}
	}
	return vec;
}

int pci_msix_init(struct pci_function *fn, unsigned nvec, unsigned bar, uint32_t table_off, uint32_t pba_off)
{
	uint64_t tlen = (uint64_t)nvec * PCI_MSIX_ENTRY_SIZE, plen = msix_pba_len(nvec), end;
	uint8_t body[MSIX_CAP_LEN];
	int cap;

	if (fn->msix.nvec || nvec == 0 || nvec > PCI_MSIX_MAX_VECTORS || bar >= PCI_MAX_BARS || (table_off & 7) ||
	    (pba_off & 7) || (table_off < pba_off + plen && pba_off < table_off + tlen)) {
		log_error("%s: invalid MSI-X layout (%u vectors, BAR %u, table 0x%x, PBA 0x%x)", fn->dev->id, nvec, bar,
			  table_off, pba_off);
		return -1;
	}
	end = table_off + tlen > pba_off + plen ? table_off + tlen : pba_off + plen;
	if (fn->bars[bar].type == PCI_BAR_NONE) {
		if (pci_bar_add(fn, bar, PCI_BAR_MEM32, end < 4096 ? 4096 : end, NULL, NULL) < 0)
			return -1;
	} else if ((fn->bars[bar].type & PCI_BAR_TYPE_MASK) == PCI_BAR_IO || end > fn->bars[bar].size) {
		log_error("%s: the MSI-X table and PBA do not fit in memory BAR %u", fn->dev->id, bar);
		return -1;
	}
	le_put(body, 2, nvec - 1);
	le_put(body + 2, 4, table_off | bar);
	le_put(body + 6, 4, pba_off | bar);
	cap = pci_cap_add(fn, PCI_CAP_ID_MSIX, body, sizeof(body));
	if (cap < 0)
		return -1;
	struct pci_msix_vector *vec = vectors_alloc(fn, nvec, "MSI-X");
	if (!vec)
		return -1;
	for (unsigned i = 0; i < nvec; i++)
		vec[i].ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;
	pthread_mutex_lock(&fn->lock);
	fn->msix.vec = vec;
	fn->msix.bar = bar;
	fn->msix.table_off = table_off;
	fn->msix.pba_off = pba_off;
	fn->msix.cap = (uint8_t)cap;
	fn->msix.nvec = nvec;
	pci_cfg_set_wmask(fn, (unsigned)cap + 2, 2, MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK);
	pthread_mutex_unlock(&fn->lock);
	return cap;
}

bool pci_msix_enabled(struct pci_function *fn)
{
	bool on;

	pthread_mutex_lock(&fn->lock);
	on = msix_enabled_locked(fn);
	pthread_mutex_unlock(&fn->lock);
	return on;
}

int pci_msix_notify(struct pci_function *fn, unsigned vector)
{
	int rc = -1;

	pthread_mutex_lock(&fn->lock);
	if (vector < fn->msix.nvec && msix_enabled_locked(fn)) {
		struct pci_msix_vector *v = &fn->msix.vec[vector];
		if (msix_deliverable(fn, v))
			msix_send(fn, v);
		else
			v->pending = true;
		rc = 0;
	}
	pthread_mutex_unlock(&fn->lock);
	return rc;
}

int pci_msix_eventfd(struct pci_function *fn, unsigned vector)
{
	return vector < fn->msix.nvec ? fn->msix.vec[vector].efd : -1;
}

static void msix_free(struct pci_function *fn)
{
	vectors_free(fn, fn->msix.vec, fn->msix.nvec);
	memset(&fn->msix, 0, sizeof(fn->msix));
}

/* ---- MSI ---- */

static bool msi_enabled_locked(const struct pci_function *fn)
{
	return fn->msi.nvec && (cfg16(fn, fn->msi.cap + MSI_CTRL) & MSI_CTRL_ENABLE);
}

/* Vectors the guest granted (Multiple Message Enable), never more than the function has. */
static unsigned msi_granted(const struct pci_function *fn)
{
	unsigned n = 1u << ((cfg16(fn, fn->msi.cap + MSI_CTRL) & MSI_CTRL_MME) >> 4);

	return n < fn->msi.nvec ? n : fn->msi.nvec;
}

/* Vector i's message and mask bit, from the capability; fn->lock held. */
static void msi_sync(struct pci_function *fn, unsigned i)
{
	struct pci_msix_vector *v = &fn->msi.vec[i];
	unsigned cap = fn->msi.cap, n = msi_granted(fn);

	v->addr_lo = le_get(&fn->cfg[cap + MSI_ADDR_LO], 4);
	v->addr_hi = le_get(&fn->cfg[cap + MSI_ADDR_HI], 4);
	/* With n vectors granted, the low log2(n) data bits carry the vector number. */
	v->data = (cfg16(fn, cap + MSI_DATA) & ~(n - 1)) | (i & (n - 1));
	v->ctrl = (le_get(&fn->cfg[cap + MSI_MASK], 4) >> i) & 1;
}

static bool msi_deliverable(const struct pci_function *fn, unsigned i)
{
	return msi_enabled_locked(fn) && i < msi_granted(fn) && !fn->msi.vec[i].ctrl;
}

/* The read-only Pending Bits register shows the vectors' pending flags; fn->lock held. */
static void msi_pending_show(struct pci_function *fn)
{
	uint32_t bits = 0;

	if (!fn->msi.nvec)
		return; /* no capability: offset 0 is the header */
	for (unsigned i = 0; i < fn->msi.nvec; i++)
		if (fn->msi.vec[i].pending)
			bits |= 1u << i;
	le_put(&fn->cfg[fn->msi.cap + MSI_PENDING], 4, bits);
}

/* After a write to the capability (or a reset/restore); fn->lock held. */
static void msi_update_all(struct pci_function *fn)
{
	for (unsigned i = 0; i < fn->msi.nvec; i++) {
		msi_sync(fn, i);
		vector_update(fn, &fn->msi.vec[i], msi_deliverable(fn, i));
	}
	msi_pending_show(fn);
}

int pci_msi_init(struct pci_function *fn, unsigned nvec)
{
	uint8_t body[MSI_CAP_LEN] = { 0 };
	unsigned log2n = 0;
	int cap;

	while ((1u << log2n) < nvec)
		log2n++;
	if (fn->msi.nvec || nvec == 0 || nvec > PCI_MSI_MAX_VECTORS || (1u << log2n) != nvec) {
		log_error("%s: invalid MSI vector count %u (a power of 2 up to %u, once)", fn->dev->id, nvec,
			  PCI_MSI_MAX_VECTORS);
		return -1;
	}
	le_put(body, 2, MSI_CTRL_64BIT | MSI_CTRL_PVM | log2n << 1); /* Multiple Message Capable */
	cap = pci_cap_add(fn, PCI_CAP_ID_MSI, body, sizeof(body));
	if (cap < 0)
		return -1;
	struct pci_msix_vector *vec = vectors_alloc(fn, nvec, "MSI");
	if (!vec)
		return -1;
	pthread_mutex_lock(&fn->lock);
	fn->msi.vec = vec;
	fn->msi.cap = (uint8_t)cap;
	fn->msi.nvec = nvec;
	pci_cfg_set_wmask(fn, (unsigned)cap + MSI_CTRL, 2, MSI_CTRL_ENABLE | MSI_CTRL_MME);
	pci_cfg_set_wmask(fn, (unsigned)cap + MSI_ADDR_LO, 4, 0xFFFFFFFC); /* dword-aligned address */
	pci_cfg_set_wmask(fn, (unsigned)cap + MSI_ADDR_HI, 4, 0xFFFFFFFF);
	pci_cfg_set_wmask(fn, (unsigned)cap + MSI_DATA, 2, 0xFFFF);
	pci_cfg_set_wmask(fn, (unsigned)cap + MSI_MASK, 4, nvec == 32 ? 0xFFFFFFFF : (1u << nvec) - 1);
	pthread_mutex_unlock(&fn->lock);
	return cap;
}

bool pci_msi_enabled(struct pci_function *fn)
{
	bool on;

	pthread_mutex_lock(&fn->lock);
	on = msi_enabled_locked(fn);
	pthread_mutex_unlock(&fn->lock);
	return on;
}

int pci_msi_notify(struct pci_function *fn, unsigned vector)
{
	int rc = -1;

	pthread_mutex_lock(&fn->lock);
	if (msi_enabled_locked(fn) && vector < msi_granted(fn)) {
		if (msi_deliverable(fn, vector)) {
			msix_send(fn, &fn->msi.vec[vector]);
		} else {
			fn->msi.vec[vector].pending = true;
			msi_pending_show(fn);
		}
		rc = 0;
	}
	pthread_mutex_unlock(&fn->lock);
	return rc;
}

static void msi_free(struct pci_function *fn)
{
	vectors_free(fn, fn->msi.vec, fn->msi.nvec);
	memset(&fn->msi, 0, sizeof(fn->msi));
}

/* ---- capabilities ---- */

int pci_cap_add(struct pci_function *fn, uint8_t id, const void *body, unsigned len)
{
	unsigned off;

	pthread_mutex_lock(&fn->lock);
	off = (fn->cap_next + 3u) & ~3u;
	if (off < 0x40 || off + 2 + len > PCI_CFG_SPACE_SIZE) {
		pthread_mutex_unlock(&fn->lock);
		log_error("%s: no room for capability 0x%02x (%u bytes) in config space", fn->dev->id, id, len + 2);
		return -1;
	}
	fn->cfg[off] = id;
	fn->cfg[off + 1] = 0;
	if (len)
		memcpy(&fn->cfg[off + 2], body, len);
	if (fn->cap_last)
		fn->cfg[fn->cap_last + 1] = (uint8_t)off;
	else
		fn->cfg[PCI_CAPABILITY_LIST] = (uint8_t)off;
	pci_cfg_set16(fn, PCI_STATUS, cfg16(fn, PCI_STATUS) | PCI_STATUS_CAP_LIST);
	fn->cap_last = (uint8_t)off;
	fn->cap_next = (uint8_t)(off + 2 + len > 0xFF ? 0xFF : off + 2 + len);
	pthread_mutex_unlock(&fn->lock);
	return (int)off;
}

unsigned pci_cap_find(struct pci_function *fn, uint8_t id)
{
	unsigned off, found = 0;

	pthread_mutex_lock(&fn->lock);
	off = (cfg16(fn, PCI_STATUS) & PCI_STATUS_CAP_LIST) ? fn->cfg[PCI_CAPABILITY_LIST] & ~3u : 0;
	/* At most 48 capabilities fit; the bound also stops a corrupt (looping) chain. */
	for (unsigned n = 0; off >= 0x40 && n < 48; n++, off = fn->cfg[off + 1] & ~3u) {
		if (fn->cfg[off] == id) {
			found = off;
			break;
		}
	}
	pthread_mutex_unlock(&fn->lock);
	return found;
}

/* ---- generic config access ---- */

static bool touches(unsigned off, unsigned size, unsigned start, unsigned len)
{
	return off < start + len && start < off + size;
}

uint32_t pci_cfg_read(struct pci_function *fn, unsigned off, unsigned size)
{
	uint32_t v = 0;

	if (size != 1 && size != 2 && size != 4)
		return 0xFFFFFFFFu;
	pthread_mutex_lock(&fn->lock);
	for (unsigned i = 0; i < size; i++)
		if (off + i < fn->cfg_size)
			v |= (uint32_t)fn->cfg[off + i] << (8 * i);
	pthread_mutex_unlock(&fn->lock);
	if (fn->cfg_read && off + size <= fn->cfg_size)
		fn->cfg_read(fn, off, size, &v);
	return v;
}

void pci_cfg_write(struct pci_function *fn, unsigned off, unsigned size, uint32_t val)
{
	bool msix_ctrl, msi_cap;

	if ((size != 1 && size != 2 && size != 4) || off >= fn->cfg_size)
		return;
	pthread_mutex_lock(&fn->lock);
	for (unsigned i = 0; i < size && off + i < fn->cfg_size; i++) {
		unsigned o = off + i;
		uint8_t b = (uint8_t)(val >> (8 * i));
		uint8_t v = (uint8_t)((fn->cfg[o] & ~fn->wmask[o]) | (b & fn->wmask[o]));
		fn->cfg[o] = (uint8_t)(v & ~(b & fn->w1c[o]));
	}
	msix_ctrl = fn->msix.nvec && touches(off, size, fn->msix.cap + 2u, 2);
	msi_cap = fn->msi.nvec && touches(off, size, fn->msi.cap + 2u, MSI_CAP_LEN);
	if (touches(off, size, PCI_COMMAND, 2) || touches(off, size, PCI_BASE_ADDRESS_0, 4 * PCI_MAX_BARS))
		bars_update(fn);
	if (touches(off, size, PCI_COMMAND, 2) || msix_ctrl || msi_cap)
		intx_update(fn);
	if (msix_ctrl)
		msix_update_all(fn);
	if (msi_cap)
		msi_update_all(fn);
	pthread_mutex_unlock(&fn->lock);
	if (fn->cfg_write && off + size <= fn->cfg_size)
		fn->cfg_write(fn, off, size, val);
}

/* ---- functions ---- */

static int parse_function_id(const char *id, unsigned *bus, unsigned *slot, unsigned *func)
{
	int n = 0;

	if (sscanf(id, "pci.%u.%u.%u%n", bus, slot, func, &n) != 3 || id[n] != '\0')
		return -1;
	return 0;
}

int pci_function_init(struct pci_function *fn, struct device *dev, uint16_t vendor, uint16_t device,
		      uint8_t class, uint8_t subclass, uint8_t progif)
{
	struct pci_bus *bus = pci_bus_of(dev->vm);
	unsigned b, s, f;

	memset(fn, 0, sizeof(*fn));
	if (!bus) {
		log_error("%s: there is no PCI bus", dev->id);
		return -1;
	}
	if (parse_function_id(dev->id, &b, &s, &f) < 0 || b != 0 || s >= PCI_MAX_SLOTS || f >= PCI_MAX_FUNCS) {
		log_error("%s: not a PCI address on bus 0", dev->id);
		return -1;
	}
	fn->dev = dev;
	fn->bus = bus;
	fn->busno = 0;
	fn->slot = (uint8_t)s;
	fn->func = (uint8_t)f;
	fn->cfg_size = PCI_CFG_SPACE_SIZE;
	fn->cap_next = 0x40;
	for (unsigned i = 0; i < PCI_MAX_BARS; i++) {
		fn->bars[i].owner = fn;
		fn->bars[i].index = i;
	}
	pci_cfg_set16(fn, PCI_VENDOR_ID, vendor);
	pci_cfg_set16(fn, PCI_DEVICE_ID, device);
	pci_cfg_set8(fn, PCI_CLASS_PROG, progif);
	pci_cfg_set8(fn, PCI_CLASS_DEVICE, subclass);
	pci_cfg_set8(fn, PCI_CLASS_DEVICE + 1, class);
	pci_cfg_set_wmask(fn, PCI_COMMAND, 2, COMMAND_WRITABLE);
	pci_cfg_set_w1c(fn, PCI_STATUS, 2, STATUS_W1C);
	pci_cfg_set_wmask(fn, PCI_CACHE_LINE_SIZE, 1, 0xFF);
	pci_cfg_set_wmask(fn, PCI_LATENCY_TIMER, 1, 0xFF);
	pci_cfg_set_wmask(fn, PCI_INTERRUPT_LINE, 1, 0xFF);
	pthread_mutex_init(&fn->lock, NULL);

	pthread_mutex_lock(&bus->lock);
	if (bus->fns[s][f]) {
		pthread_mutex_unlock(&bus->lock);
		pthread_mutex_destroy(&fn->lock);
		log_error("%s: PCI slot %u function %u already holds a device", dev->id, s, f);
		return -1;
	}
	bus->fns[s][f] = fn;
	bus->nfuncs++;
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

void pci_function_set_extended(struct pci_function *fn)
{
	fn->cfg_size = PCI_CFG_SPACE_EXP_SIZE;
}

void pci_set_subsystem(struct pci_function *fn, uint16_t vendor, uint16_t device)
{
	pci_cfg_set16(fn, PCI_SUBSYSTEM_VENDOR_ID, vendor);
	pci_cfg_set16(fn, PCI_SUBSYSTEM_ID, device);
}

void pci_set_revision(struct pci_function *fn, uint8_t rev)
{
	pci_cfg_set8(fn, PCI_REVISION_ID, rev);
}

static void bus_free(struct pci_bus *bus);

void pci_function_destroy(struct pci_function *fn)
{
	struct pci_bus *bus = fn->bus;
	bool last;

	if (!fn->dev || !bus)
		return;
	pthread_mutex_lock(&fn->lock);
	fn->intx_level = false;
	intx_update(fn);
	bars_unmap(fn);
	msix_free(fn);
	msi_free(fn);
	free(fn->cfg_reset);
	fn->cfg_reset = NULL;
	pthread_mutex_unlock(&fn->lock);
	pthread_mutex_lock(&bus->lock);
	if (bus->fns[fn->slot][fn->func] == fn)
		bus->fns[fn->slot][fn->func] = NULL;
	last = --bus->nfuncs == 0 && bus->destroyed;
	pthread_mutex_unlock(&bus->lock);
	pthread_mutex_destroy(&fn->lock);
	fn->bus = NULL;
	if (last)
		bus_free(bus);
}

void pci_function_reset(struct pci_function *fn)
{
	pthread_mutex_lock(&fn->lock);
	if (fn->cfg_reset)
		memcpy(fn->cfg, fn->cfg_reset, fn->cfg_size);
	for (unsigned i = 0; i < fn->msix.nvec; i++) {
		struct pci_msix_vector *v = &fn->msix.vec[i];
		v->addr_lo = v->addr_hi = v->data = 0;
		v->ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;
		msix_vector_update(fn, v);
		v->pending = false;
	}
	msi_update_all(fn); /* disabled, unmasked: routes and irqfds go */
	for (unsigned i = 0; i < fn->msi.nvec; i++)
		fn->msi.vec[i].pending = false;
	msi_pending_show(fn);
	fn->intx_level = false;
	intx_update(fn);
	bars_update(fn);
	pthread_mutex_unlock(&fn->lock);
}

/* Captures the power-on config space once the model's create() has built it. */
static int function_created(struct pci_function *fn)
{
	fn->cfg_reset = malloc(PCI_CFG_SPACE_EXP_SIZE);
	if (!fn->cfg_reset)
		return -1;
	pthread_mutex_lock(&fn->lock);
	memcpy(fn->cfg_reset, fn->cfg, PCI_CFG_SPACE_EXP_SIZE);
	pthread_mutex_unlock(&fn->lock);
	return 0;
}

/* ---- snapshots ---- */

void pci_function_save(struct pci_function *fn, struct state_writer *w)
{
	pthread_mutex_lock(&fn->lock);
	state_begin_map(w, "pci");
	state_put_bytes(w, "config", fn->cfg, fn->cfg_size);
	state_put_bool(w, "intx", fn->intx_level);
	if (fn->msix.nvec) {
		unsigned n = fn->msix.nvec;
		uint8_t *table = malloc((size_t)n * PCI_MSIX_ENTRY_SIZE), *pending = calloc((n + 7) / 8, 1);
		if (table && pending) {
			for (unsigned i = 0; i < n; i++) {
				struct pci_msix_vector *v = &fn->msix.vec[i];
				if (!v->irqfd)
					msix_drain(v);
				le_put(table + 16 * i, 4, v->addr_lo);
				le_put(table + 16 * i + 4, 4, v->addr_hi);
				le_put(table + 16 * i + 8, 4, v->data);
				le_put(table + 16 * i + 12, 4, v->ctrl);
				if (v->pending)
					pending[i / 8] |= (uint8_t)(1u << (i % 8));
			}
			state_put_bytes(w, "msix_table", table, (size_t)n * PCI_MSIX_ENTRY_SIZE);
			state_put_bytes(w, "msix_pending", pending, (n + 7) / 8);
		}
		free(table);
		free(pending);
	}
	if (fn->msi.nvec) {
		uint64_t bits = 0;
		for (unsigned i = 0; i < fn->msi.nvec; i++) {
			if (!fn->msi.vec[i].irqfd)
				msix_drain(&fn->msi.vec[i]);
			bits |= (uint64_t)fn->msi.vec[i].pending << i;
		}
		state_put_u64(w, "msi_pending", bits);
	}
	state_end_map(w);
	pthread_mutex_unlock(&fn->lock);
}

int pci_function_restore(struct pci_function *fn, struct state_reader *r)
{
	uint8_t *cfg = malloc(PCI_CFG_SPACE_EXP_SIZE), *table = NULL, *pending = NULL;
	unsigned n = fn->msix.nvec;
	uint64_t msi_pending = 0;
	bool intx = false;
	int rc = -1;

	if (!cfg)
		return -1;
	if (state_enter_map(r, "pci") < 0) {
		log_error("%s: snapshot section lacks the PCI function state", fn->dev->id);
		free(cfg);
		return -1;
	}
	if (state_get_bytes(r, "config", cfg, fn->cfg_size) < 0) {
		log_error("%s: snapshot has no %u-byte PCI config space", fn->dev->id, fn->cfg_size);
		goto out;
	}
	state_get_bool(r, "intx", &intx);
	state_get_u64(r, "msi_pending", &msi_pending); /* absent: nothing was pending */
	if (n) {
		table = malloc((size_t)n * PCI_MSIX_ENTRY_SIZE);
		pending = malloc((n + 7) / 8);
		if (!table || !pending)
			goto out;
		if (state_get_bytes(r, "msix_table", table, (size_t)n * PCI_MSIX_ENTRY_SIZE) < 0 ||
		    state_get_bytes(r, "msix_pending", pending, (n + 7) / 8) < 0) {
			log_error("%s: snapshot lacks the %u-vector MSI-X table", fn->dev->id, n);
			goto out;
		}
	}
	pthread_mutex_lock(&fn->lock);
	/*
	 * Only what the guest can write comes from the snapshot; identity,
	 * BAR types and sizes, and the capability chain stay the model's.
	 */
	for (unsigned i = 0; i < fn->cfg_size; i++) {
		uint8_t guest = fn->wmask[i] | fn->w1c[i];
		uint8_t base = fn->cfg_reset ? fn->cfg_reset[i] : fn->cfg[i];
		fn->cfg[i] = (uint8_t)((base & ~guest) | (cfg[i] & guest));
	}
	for (unsigned i = 0; i < n; i++) {
		struct pci_msix_vector *v = &fn->msix.vec[i];
		v->addr_lo = le_get(table + 16 * i, 4);
		v->addr_hi = le_get(table + 16 * i + 4, 4);
		v->data = le_get(table + 16 * i + 8, 4);
		v->ctrl = le_get(table + 16 * i + 12, 4) & PCI_MSIX_ENTRY_CTRL_MASKBIT;
		v->pending = (pending[i / 8] >> (i % 8)) & 1;
	}
	bars_update(fn);
	fn->intx_level = intx;
	intx_update(fn);
	msix_update_all(fn);
	for (unsigned i = 0; i < fn->msi.nvec; i++)
		fn->msi.vec[i].pending = (msi_pending >> i) & 1;
	msi_update_all(fn);
	pthread_mutex_unlock(&fn->lock);
	rc = 0;
out:
	state_leave_map(r);
	free(cfg);
	free(table);
	free(pending);
	return rc;
}

/* ---- configuration mechanism #1 and ECAM ---- */

static void config_access(struct pci_bus *bus, unsigned busno, unsigned slot, unsigned func, unsigned reg,
			  uint8_t *data, unsigned size, bool is_write)
{
	struct pci_function *fn = busno == 0 ? pci_bus_function(bus, slot, func) : NULL;

	if (!fn) {
		if (!is_write)
			memset(data, 0xFF, size);
		return;
	}
	if (is_write)
		pci_cfg_write(fn, reg, size, le_get(data, size));
	else
		le_put(data, size, pci_cfg_read(fn, reg, size));
}

static void config_address_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct pci_bus *bus = opaque;

	if (offset == 0 && size == 4) {
		pthread_mutex_lock(&bus->lock);
		if (is_write)
			bus->config_address = le_get(data, 4) & CONFIG_ADDRESS_MASK;
		else
			le_put(data, 4, bus->config_address);
		pthread_mutex_unlock(&bus->lock);
		return;
	}
	if (offset == PORT_RESET - PORT_PCI_CONFIG_ADDRESS && size == 1 && bus->reset_fn) {
		bus->reset_fn(bus->reset_opaque, 0, data, 1, is_write);
		return;
	}
	if (!is_write)
		memset(data, 0xFF, size);
}

static void config_data_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct pci_bus *bus = opaque;
	uint32_t addr;

	pthread_mutex_lock(&bus->lock);
	addr = bus->config_address;
	pthread_mutex_unlock(&bus->lock);
	if (!(addr & CONFIG_ADDRESS_ENABLE)) {
		if (!is_write)
			memset(data, 0xFF, size);
		return;
	}
	config_access(bus, (addr >> 16) & 0xFF, (addr >> 11) & 0x1F, (addr >> 8) & 7, (addr & 0xFC) + (unsigned)offset,
		      data, size, is_write);
}

static void ecam_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	if (size == 8) { /* two dwords, each decoded on its own */
		ecam_io(opaque, offset, data, 4, is_write);
		ecam_io(opaque, offset + 4, data + 4, 4, is_write);
		return;
	}
	config_access(opaque, (unsigned)(offset >> 20) & 0xFF, (unsigned)(offset >> 15) & 0x1F,
		      (unsigned)(offset >> 12) & 7, (unsigned)offset & 0xFFF, data, size, is_write);
}

/* Takes over the reset register at 0xCF9 (see the file comment); 0 or -1. */
static int claim_config_ports(struct pci_bus *bus)
{
	struct iobus *pio = &bus->vm->pio;
	struct io_range found = { 0 };
	bool conflict = false;

	pthread_rwlock_rdlock(&pio->lock);
	for (unsigned i = 0; i < pio->count; i++) {
		const struct io_range *r = &pio->ranges[i];
		if (r->base < PORT_PCI_CONFIG_ADDRESS + 4 && PORT_PCI_CONFIG_ADDRESS < r->base + r->len) {
			if (r->base == PORT_RESET && r->len == 1)
				found = *r;
			else
				conflict = true;
		}
	}
	pthread_rwlock_unlock(&pio->lock);
	if (conflict) {
		log_error("PCI: ports 0x%x-0x%x are already taken by another device", PORT_PCI_CONFIG_ADDRESS,
			  PORT_PCI_CONFIG_ADDRESS + 3);
		return -1;
	}
	if (found.fn) {
		iobus_unregister(pio, PORT_RESET);
		bus->reset_fn = found.fn;
		bus->reset_opaque = found.opaque;
	}
	if (iobus_register(pio, PORT_PCI_CONFIG_ADDRESS, 4, config_address_io, bus) < 0) {
		if (found.fn)
			iobus_register(pio, PORT_RESET, 1, found.fn, found.opaque);
		return -1;
	}
	if (iobus_register(pio, PORT_PCI_CONFIG_DATA, 4, config_data_io, bus) < 0) {
		iobus_unregister(pio, PORT_PCI_CONFIG_ADDRESS);
		if (found.fn)
			iobus_register(pio, PORT_RESET, 1, found.fn, found.opaque);
		return -1;
	}
	return 0;
}

/* ---- the bus device ---- */

static int pci_bus_create(struct device *dev)
{
	struct pci_bus *bus = calloc(1, sizeof(*bus));
	struct vm *vm = dev->vm;
	uint64_t high = mem_highmem_size(&vm->mem);

	if (!bus)
		return -1;
	pthread_mutex_init(&bus->lock, NULL);
	bus->vm = vm;
	bus->io_next = PCI_IO_BASE;
	bus->mmio32_next = vm->platform->mmio32_base;
	bus->mmio32_end = vm->platform->mmio32_end;
	bus->mmio64_next = PCI_MMIO64_BASE(MEM_4G + high);
	bus->mmio64_end = bus->mmio64_next + PCI_MMIO64_SIZE;
	if (claim_config_ports(bus) < 0)
		goto fail;
	bus->ports_registered = true;
	if (iobus_register(&vm->mmio, vm->platform->ecam_base, PCI_ECAM_SIZE, ecam_io, bus) < 0)
		goto fail;
	bus->ecam_registered = true;
	dev->priv = bus;
	return 0;
fail:
	if (bus->ports_registered) {
		iobus_unregister(&vm->pio, PORT_PCI_CONFIG_ADDRESS);
		iobus_unregister(&vm->pio, PORT_PCI_CONFIG_DATA);
		if (bus->reset_fn)
			iobus_register(&vm->pio, PORT_RESET, 1, bus->reset_fn, bus->reset_opaque);
	}
	bus_free(bus);
	return -1;
}

static void bus_free(struct pci_bus *bus)
{
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

/*
 * Functions are destroyed after the bus (devices go in creation order) and
 * still reach it through fn->bus, so the bus object is freed by whichever
 * comes last: this, or the last pci_function_destroy().
 */
static void pci_bus_destroy(struct device *dev)
{
	struct pci_bus *bus = dev->priv;
	bool last;

	if (!bus)
		return;
	if (bus->ports_registered) {
		iobus_unregister(&dev->vm->pio, PORT_PCI_CONFIG_ADDRESS);
		iobus_unregister(&dev->vm->pio, PORT_PCI_CONFIG_DATA);
	}
	if (bus->ecam_registered)
		iobus_unregister(&dev->vm->mmio, dev->vm->platform->ecam_base);
	pthread_mutex_lock(&bus->lock);
	bus->ports_registered = bus->ecam_registered = false;
	bus->destroyed = true;
	last = bus->nfuncs == 0;
	pthread_mutex_unlock(&bus->lock);
	dev->priv = NULL;
	if (last)
		bus_free(bus);
}

static void pci_bus_reset(struct device *dev)
{
	struct pci_bus *bus = dev->priv;

	pthread_mutex_lock(&bus->lock);
	bus->config_address = 0;
	pthread_mutex_unlock(&bus->lock);
}

static int pci_bus_save(struct device *dev, struct state_writer *w)
{
	struct pci_bus *bus = dev->priv;

	pthread_mutex_lock(&bus->lock);
	state_put_u64(w, "config_address", bus->config_address);
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

static int pci_bus_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	(void)version;
	struct pci_bus *bus = dev->priv;
	uint64_t addr = 0;

	state_get_u64(r, "config_address", &addr);
	pthread_mutex_lock(&bus->lock);
	bus->config_address = (uint32_t)addr & CONFIG_ADDRESS_MASK;
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

/* ---- options: pci.B.S.F is the node of the device named by pci.B.S.F.device ---- */

static bool is_pci_model(const struct device_model *model)
{
	return model->on_pci;
}

static int check_address(const char *node, char *err, size_t errlen)
{
	unsigned b, s, f;

	if (sscanf(node, "pci.%u.%u.%u", &b, &s, &f) != 3)
		return set_error(err, errlen, "%s: not a PCI address (pci.BUS.SLOT.FUNCTION)", node);
	if (b != 0)
		return set_error(err, errlen, "%s: only PCI bus 0 exists", node);
	if (s >= PCI_MAX_SLOTS || f >= PCI_MAX_FUNCS)
		return set_error(err, errlen, "%s: slot must be 0-31 and function 0-7", node);
	return 0;
}

static struct option_node pci_node = {
	.pattern = "pci.#.#.#",
	.model_key = "device",
	.model_ok = is_pci_model,
	.check = check_address,
};
OPTION_NODE(pci_node)

/* The model at B:S:F, or NULL. */
static const char *node_model(const struct config *cfg, unsigned b, unsigned s, unsigned f)
{
	char node[64];

	snprintf(node, sizeof(node), "pci.%u.%u.%u", b, s, f);
	return options_node_model(cfg, node);
}

/*
 * Checks every "pci.*" key before anything is created: "pci.B.S.F.KEY"
 * with B = 0, S < 32, F < 8, a device for every address that has
 * options, and function 0 present wherever a higher function is.
 */
static int check_config(const struct config *cfg, bool present[PCI_MAX_SLOTS][PCI_MAX_FUNCS])
{
	for (size_t i = 0; i < config_count(cfg); i++) {
		const char *key = config_key_at(cfg, i);
		unsigned b, s, f;
		int n = 0;

		if (strncmp(key, "pci.", 4) != 0)
			continue;
		if (sscanf(key, "pci.%u.%u.%u.%n", &b, &s, &f, &n) != 3 || n == 0 || key[n] == '\0') {
			log_error("%s: not a PCI device setting (pci.BUS.SLOT.FUNCTION.KEY)", key);
			return -1;
		}
		if (b != 0) {
			log_error("pci.%u.%u.%u: only PCI bus 0 exists", b, s, f);
			return -1;
		}
		if (s >= PCI_MAX_SLOTS || f >= PCI_MAX_FUNCS) {
			log_error("pci.%u.%u.%u: slot must be 0-31 and function 0-7", b, s, f);
			return -1;
		}
		if (!node_model(cfg, b, s, f)) {
			log_error("pci.%u.%u.%u: settings given but no device (pci.%u.%u.%u.device)", b, s, f, b, s, f);
			return -1;
		}
		present[s][f] = true;
	}
	for (unsigned s = 0; s < PCI_MAX_SLOTS; s++)
		for (unsigned f = 1; f < PCI_MAX_FUNCS; f++)
			if (present[s][f] && !present[s][0]) {
				log_error("pci.0.%u.%u: function %u needs a device in function 0 of slot %u", s, f, f, s);
				return -1;
			}
	return 0;
}

static int create_function(struct vm *vm, struct pci_bus *bus, unsigned s, unsigned f, const char *name)
{
	const struct device_model *model = device_model_find(name);
	char id[64];
	struct pci_function *fn;

	snprintf(id, sizeof(id), "pci.0.%u.%u", s, f);
	if (!model || !model->on_pci) {
		log_error("%s: unknown device '%s'", id, name);
		return -1;
	}
	if (!device_create(vm, model, id, id))
		return -1;
	fn = pci_bus_function(bus, s, f);
	if (!fn) {
		log_error("%s: device '%s' did not attach a PCI function", id, name);
		return -1;
	}
	return function_created(fn);
}

static int pci_bus_attach(struct vm *vm)
{
	bool present[PCI_MAX_SLOTS][PCI_MAX_FUNCS] = { { false } };
	struct device *dev;
	struct pci_bus *bus;

	if (check_config(vm->cfg, present) < 0)
		return -1;
	dev = device_create(vm, &pci_bus_model, BUS_DEVICE_ID, "pci");
	if (!dev)
		return -1;
	bus = dev->priv;
	for (unsigned s = 0; s < PCI_MAX_SLOTS; s++) {
		for (unsigned f = 0; f < PCI_MAX_FUNCS; f++) {
			const char *name = node_model(vm->cfg, 0, s, f);
			/* Without a device at 0:0.0 the bus gets a host bridge there, as on every PC. */
			if (!name && s == 0 && f == 0)
				name = "hostbridge";
			if (name && create_function(vm, bus, s, f, name) < 0)
				return -1;
		}
	}
	/* Multi-function devices announce it in function 0's header type. */
	for (unsigned s = 0; s < PCI_MAX_SLOTS; s++) {
		bool multi = false;
		for (unsigned f = 1; f < PCI_MAX_FUNCS; f++)
			multi |= bus->fns[s][f] != NULL;
		for (unsigned f = 0; multi && f < PCI_MAX_FUNCS; f++) {
			struct pci_function *fn = bus->fns[s][f];
			if (!fn)
				continue;
			fn->cfg[PCI_HEADER_TYPE] |= PCI_HEADER_TYPE_MULTIFUNCTION;
			if (fn->cfg_reset)
				fn->cfg_reset[PCI_HEADER_TYPE] |= PCI_HEADER_TYPE_MULTIFUNCTION;
		}
	}
	return 0;
}

/* ---- the root bridge in the DSDT ---- */

#define PRT_SLOTS 32
#define PRT_PINS 4

/*
 * End (exclusive) of the 64-bit window announced: from where the bus
 * places 64-bit BARs up to the end of the window the firmware may use
 * (platform_mmio64_end()), so BARs either of them placed are inside it.
 */
static uint64_t announced_mmio64_end(const struct vm *vm)
{
	struct platform_cpu cpu = { .vendor = "" };

	if (vm->cpuid)
		platform_cpu_from_cpuid(vm->cpuid, &cpu);
	return platform_mmio64_end(vm->platform, MEM_4G + mem_highmem_size(&vm->mem), &cpu);
}

/*
 * _CRS: bus numbers 0-PCI_ECAM_BUS_END, the configuration ports, every
 * other I/O port up to PCI_IO_END, the platform's 32-bit window and the
 * 64-bit window above RAM.
 */
static void root_bridge_crs(struct aml_buf *b, const struct vm *vm)
{
	const struct platform *p = vm->platform;
	uint64_t mmio64 = PCI_MMIO64_BASE(MEM_4G + mem_highmem_size(&vm->mem));

	aml_name(b, "_CRS");
	size_t crs = aml_resource_begin(b);
	aml_res_address(b, 2, AML_ADDR_SPACE_BUS, 0, 0, PCI_ECAM_BUS_END);
	aml_res_io(b, PORT_PCI_CONFIG_ADDRESS, 8);
	aml_res_address(b, 2, AML_ADDR_SPACE_IO, AML_ADDR_IO_ENTIRE_RANGE, 0, PORT_PCI_CONFIG_ADDRESS - 1);
	aml_res_address(b, 2, AML_ADDR_SPACE_IO, AML_ADDR_IO_ENTIRE_RANGE, PORT_PCI_CONFIG_ADDRESS + 8,
			PCI_IO_END - 1);
	aml_res_address(b, 4, AML_ADDR_SPACE_MEMORY, AML_ADDR_MEM_READWRITE, p->mmio32_base, p->mmio32_end - 1);
	aml_res_address(b, 8, AML_ADDR_SPACE_MEMORY, AML_ADDR_MEM_READWRITE, mmio64, announced_mmio64_end(vm) - 1);
	aml_resource_end(b, crs);
}

/*
 * _PRT: INTA-INTD of every slot to the GSIs INTx is routed to here (see
 * pci.h); an entry with a GSI and no link device means level-triggered,
 * active-low.
 */
static void root_bridge_prt(struct aml_buf *b)
{
	aml_name(b, "_PRT");
	size_t prt = aml_package_begin(b, PRT_SLOTS * PRT_PINS);
	for (unsigned slot = 0; slot < PRT_SLOTS; slot++) {
		for (unsigned pin = 0; pin < PRT_PINS; pin++) {
			size_t e = aml_package_begin(b, 4);
			aml_integer(b, ((uint64_t)slot << 16) | 0xFFFF); /* any function of the slot */
			aml_integer(b, pin);                              /* 0 = INTA */
			aml_integer(b, 0);                                /* no link device: the next field is a GSI */
			aml_integer(b, PCI_INTX_GSI_BASE + (slot + pin) % PCI_INTX_GSIS);
			aml_end(b, e);
		}
	}
	aml_end(b, prt);
}

/*
 * \_SB.PCI0: bus 0's root bridge, conventional PCI (PNP0A03; no function
 * has a PCI Express capability, so there is no _OSC to negotiate), and
 * MRES, a motherboard resource (PNP0C02) holding the ECAM window, without
 * which the OS does not trust the MCFG table.
 */
static void pci_bus_acpi_dsdt(struct device *dev, struct aml_buf *b)
{
	const struct vm *vm = dev->vm;

	size_t pci0 = aml_device_begin(b, "PCI0");
	aml_name(b, "_HID");
	aml_eisaid(b, "PNP0A03");
	aml_name(b, "_UID");
	aml_integer(b, 0);
	aml_name(b, "_SEG");
	aml_integer(b, 0);
	aml_name(b, "_BBN");
	aml_integer(b, 0);
	root_bridge_crs(b, vm);
	root_bridge_prt(b);
	aml_end(b, pci0);

	size_t mres = aml_device_begin(b, "MRES");
	aml_name(b, "_HID");
	aml_eisaid(b, "PNP0C02");
	aml_name(b, "_UID");
	aml_integer(b, 0);
	aml_name(b, "_CRS");
	size_t crs = aml_resource_begin(b);
	aml_res_memory32_fixed(b, (uint32_t)vm->platform->ecam_base, (uint32_t)PCI_ECAM_SIZE);
	aml_resource_end(b, crs);
	aml_end(b, mres);
}

/* After the platform devices (the reset register at 0xCF9 must already be there). */
#define PCI_ATTACH_ORDER 50

static struct device_model pci_bus_model = {
	.name = "pci",
	.state_version = 1,
	.attach_order = PCI_ATTACH_ORDER,
	.attach = pci_bus_attach,
	.create = pci_bus_create,
	.reset = pci_bus_reset,
	.save = pci_bus_save,
	.restore = pci_bus_restore,
	.destroy = pci_bus_destroy,
	.acpi_dsdt = pci_bus_acpi_dsdt,
};
DEVICE_MODEL(pci_bus_model);
