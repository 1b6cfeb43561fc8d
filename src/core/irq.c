#include "irq.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "boot/layout.h"
#include "log.h"
#include "vm.h"

#define NR_MSI (IRQ_MAX_GSI - IRQ_MSI_GSI_BASE)
#define NR_PLATFORM (16 + IOAPIC_PINS - 1) /* every ISA IRQ on a PIC; every I/O APIC pin but the cascade */

struct msi_route {
	bool used, routed;
	uint64_t addr;
	uint32_t data;
};

struct irq_routing {
	pthread_mutex_t lock;
	struct kvm_irq_routing *table; /* scratch for commits: header plus every entry */
	struct msi_route msi[NR_MSI];
	unsigned next_hint;            /* where the search for a free MSI GSI starts */
};

static unsigned platform_routes(struct kvm_irq_routing_entry *e)
{
	unsigned n = 0;

	/* ISA IRQs reach the PICs ... */
	for (unsigned gsi = 0; gsi < 16; gsi++) {
		e[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { .irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, .pin = gsi % 8 },
		};
	}
	/*
	 * ... and the I/O APIC, where IRQ 0 (the PIT) is wired to pin 2, as
	 * the MADT's interrupt source override and the MP table announce;
	 * KVM's default routing would send it to pin 0. GSIs 16-23 are the
	 * PCI INTx lines.
	 */
	for (unsigned gsi = 0; gsi < IOAPIC_PINS; gsi++) {
		if (gsi == 2)
			continue; /* the cascade: pin 2 belongs to IRQ 0 */
		e[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi == 0 ? 2 : gsi },
		};
	}
	return n;
}

/* Sends the whole table; call with the lock held. The caller logs failures. */
static int commit(struct vm *vm, struct irq_routing *r)
{
	struct kvm_irq_routing_entry *e = r->table->entries;
	unsigned n = platform_routes(e);

	for (unsigned i = 0; i < NR_MSI; i++) {
		if (!r->msi[i].routed)
			continue;
		e[n++] = (struct kvm_irq_routing_entry){
			.gsi = IRQ_MSI_GSI_BASE + i, .type = KVM_IRQ_ROUTING_MSI,
			.u.msi = { .address_lo = (uint32_t)r->msi[i].addr, .address_hi = (uint32_t)(r->msi[i].addr >> 32),
				   .data = r->msi[i].data },
		};
	}
	r->table->nr = n;
	r->table->flags = 0;
	if (vm->vm_fd < 0)
		return 0; /* no KVM: nothing to send */
	return ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r->table) < 0 ? -1 : 0;
}

static struct irq_routing *routing_new(void)
{
	struct irq_routing *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->table = calloc(1, sizeof(*r->table) + (NR_PLATFORM + NR_MSI) * sizeof(struct kvm_irq_routing_entry));
	if (!r->table) {
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->lock, NULL);
	return r;
}

int vm_irq_routing_init(struct vm *vm)
{
	struct irq_routing *r = routing_new();
	int rc;

	if (!r)
		return -1;
	vm->irq_routing = r;
	pthread_mutex_lock(&r->lock);
	rc = commit(vm, r);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* The VM's manager (vm_irq_routing_init: with the VM, with or without KVM). */
static struct irq_routing *routing_of(struct vm *vm)
{
	return vm->irq_routing;
}

void vm_irq_routing_free(struct vm *vm)
{
	struct irq_routing *r = vm->irq_routing;

	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r->table);
	free(r);
	vm->irq_routing = NULL;
}

int vm_irq_msi_alloc(struct vm *vm)
{
	struct irq_routing *r = routing_of(vm);
	int gsi = -1;

	if (!r)
		return -1;
	pthread_mutex_lock(&r->lock);
	for (unsigned k = 0; k < NR_MSI; k++) {
		unsigned i = (r->next_hint + k) % NR_MSI;
		if (!r->msi[i].used) {
			r->msi[i] = (struct msi_route){ .used = true };
			r->next_hint = (i + 1) % NR_MSI;
			gsi = IRQ_MSI_GSI_BASE + (int)i;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	if (gsi < 0)
		log_error("no free interrupt routes for MSI (%d in use)", NR_MSI);
	return gsi;
}

static struct msi_route *route_of(struct irq_routing *r, unsigned gsi)
{
	if (!r || gsi < IRQ_MSI_GSI_BASE || gsi >= IRQ_MAX_GSI || !r->msi[gsi - IRQ_MSI_GSI_BASE].used)
		return NULL;
	return &r->msi[gsi - IRQ_MSI_GSI_BASE];
}

int vm_irq_msi_set(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data)
{
	struct irq_routing *r = routing_of(vm);
	struct msi_route *m;
	int rc = -1;

	if (!r)
		return -1;
	pthread_mutex_lock(&r->lock);
	m = route_of(r, gsi);
	if (m) {
		if (m->routed && m->addr == addr && m->data == data) {
			rc = 0;
		} else {
			m->routed = true;
			m->addr = addr;
			m->data = data;
			rc = commit(vm, r);
			if (rc < 0)
				log_error("cannot route MSI GSI %u: %s", gsi, strerror(errno));
		}
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int vm_irq_msi_get(struct vm *vm, unsigned gsi, uint64_t *addr, uint32_t *data)
{
	struct irq_routing *r = routing_of(vm);
	struct msi_route *m;
	int rc = -1;

	if (!r)
		return -1;
	pthread_mutex_lock(&r->lock);
	m = route_of(r, gsi);
	if (m && m->routed) {
		*addr = m->addr;
		*data = m->data;
		rc = 0;
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

void vm_irq_msi_free(struct vm *vm, unsigned gsi)
{
	struct irq_routing *r = routing_of(vm);
	struct msi_route *m;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	m = route_of(r, gsi);
	if (m) {
		bool was_routed = m->routed;
		*m = (struct msi_route){ 0 };
		if (was_routed)
			commit(vm, r);
	}
	pthread_mutex_unlock(&r->lock);
}

static int irqfd(struct vm *vm, int fd, unsigned gsi, uint32_t flags)
{
	struct kvm_irqfd req = { .fd = (uint32_t)fd, .gsi = gsi, .flags = flags };

	if (vm->vm_fd < 0)
		return 0;
	if (ioctl(vm->vm_fd, KVM_IRQFD, &req) < 0) {
		log_error("cannot %s irqfd for GSI %u: %s", flags ? "detach" : "attach", gsi, strerror(errno));
		return -1;
	}
	return 0;
}

int vm_irqfd_attach(struct vm *vm, int fd, unsigned gsi)
{
	return irqfd(vm, fd, gsi, 0);
}

int vm_irqfd_detach(struct vm *vm, int fd, unsigned gsi)
{
	return irqfd(vm, fd, gsi, KVM_IRQFD_FLAG_DEASSIGN);
}

int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32), .data = data };

	if (vm->vm_fd < 0)
		return 0;
	return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? -1 : 0;
}
