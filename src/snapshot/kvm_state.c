/*
 * KVM-held state as named snapshot fields (docs/snapshot-format.md,
 * records vcpu.N, vm.irqchip, vm.pit, vm.clock). Field lists are X-macros
 * so that save and restore cannot drift apart.
 */
#include "kvm_state.h"

#include <errno.h>
#include <stdbool.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "core/log.h"
#include "core/vcpu.h"
#include "core/vm.h"
#include "snapshot/state.h"

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MAX_MSRS 512
#define MAX_CPUID 256

/* Copies field f of s into the writer, or back; a missing field fails the restore naming it. */
#define PUT(f) state_put_u64(w, #f, (uint64_t)(s)->f);
#define GET(f)                                                                                  \
	{                                                                                       \
		uint64_t v_;                                                                    \
		if (state_get_u64(r, #f, &v_) < 0)                                               \
			return set_error(err, errlen, "%s: field '%s' missing", where, #f);      \
		(s)->f = (__typeof__((s)->f))v_;                                                 \
	}
#define BOOL_PUT(f) state_put_u64(w, #f, (uint64_t)(s)->f);

#define REGS_FIELDS(X)                                                                          \
	X(rax) X(rbx) X(rcx) X(rdx) X(rsi) X(rdi) X(rsp) X(rbp) X(r8) X(r9) X(r10) X(r11) X(r12) \
	X(r13) X(r14) X(r15) X(rip) X(rflags)
#define SEGMENT_FIELDS(X) \
	X(base) X(limit) X(selector) X(type) X(present) X(dpl) X(db) X(s) X(l) X(g) X(avl) X(unusable)
#define SREGS_SCALARS(X) X(cr0) X(cr2) X(cr3) X(cr4) X(cr8) X(efer) X(apic_base)
#define SEGMENTS(X) X(cs) X(ds) X(es) X(fs) X(gs) X(ss) X(tr) X(ldt)
#define DTABLE_FIELDS(X) X(base) X(limit)
#define EXCEPTION_FIELDS(X) X(injected) X(nr) X(has_error_code) X(pending) X(error_code)
#define INTERRUPT_FIELDS(X) X(injected) X(nr) X(soft) X(shadow)
#define NMI_FIELDS(X) X(injected) X(pending) X(masked)
#define SMI_FIELDS(X) X(smm) X(pending) X(smm_inside_nmi) X(latched_init)
#define DEBUGREG_FIELDS(X) X(dr6) X(dr7) X(flags)
#define PIC_FIELDS(X)                                                                          \
	X(last_irr) X(irr) X(imr) X(isr) X(priority_add) X(irq_base) X(read_reg_select) X(poll) \
	X(special_mask) X(init_state) X(auto_eoi) X(rotate_on_auto_eoi) X(special_fully_nested_mode) \
	X(init4) X(elcr) X(elcr_mask)
#define IOAPIC_FIELDS(X) X(base_address) X(ioregsel) X(id) X(irr)
#define PIT_CHANNEL_FIELDS(X)                                                                  \
	X(count) X(latched_count) X(count_latched) X(status_latched) X(status) X(read_state)   \
	X(write_state) X(write_latch) X(rw_mode) X(mode) X(bcd) X(gate) X(count_load_time)

/* ---- vCPU ---- */

static void save_segment(struct state_writer *w, const char *name, const struct kvm_segment *s)
{
	state_begin_map(w, name);
	SEGMENT_FIELDS(PUT)
	state_end_map(w);
}

static int restore_segment(struct state_reader *r, const char *where, struct kvm_segment *s, char *err,
			   size_t errlen)
{
	if (state_enter_map(r, where) < 0)
		return set_error(err, errlen, "segment %s missing", where);
	SEGMENT_FIELDS(GET)
	state_leave_map(r);
	return 0;
}

static void save_dtable(struct state_writer *w, const char *name, const struct kvm_dtable *s)
{
	state_begin_map(w, name);
	DTABLE_FIELDS(PUT)
	state_end_map(w);
}

static int restore_dtable(struct state_reader *r, const char *where, struct kvm_dtable *s, char *err, size_t errlen)
{
	if (state_enter_map(r, where) < 0)
		return set_error(err, errlen, "table %s missing", where);
	DTABLE_FIELDS(GET)
	state_leave_map(r);
	return 0;
}

static int save_regs(struct vcpu *vcpu, struct state_writer *w, char *err, size_t errlen)
{
	struct kvm_regs regs, *s = &regs;
	struct kvm_sregs sregs;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return set_error(err, errlen, "vCPU %u: cannot read registers: %s", vcpu->id, strerror(errno));
	state_begin_map(w, "regs");
	REGS_FIELDS(PUT)
	state_end_map(w);
	state_begin_map(w, "sregs");
#define SAVE_SEG(n) save_segment(w, #n, &sregs.n);
	SEGMENTS(SAVE_SEG)
	save_dtable(w, "gdt", &sregs.gdt);
	save_dtable(w, "idt", &sregs.idt);
	{
		struct kvm_sregs *s = &sregs;
		SREGS_SCALARS(PUT)
	}
	state_put_bytes(w, "interrupt_bitmap", sregs.interrupt_bitmap, sizeof(sregs.interrupt_bitmap));
	state_end_map(w);
	return 0;
}

static int restore_regs(struct vcpu *vcpu, struct state_reader *r, char *err, size_t errlen)
{
	struct kvm_regs regs, *s = &regs;
	struct kvm_sregs sregs;
	const char *where = "regs";

	memset(&regs, 0, sizeof(regs));
	memset(&sregs, 0, sizeof(sregs));
	if (state_enter_map(r, "regs") < 0)
		return set_error(err, errlen, "regs missing");
	REGS_FIELDS(GET)
	state_leave_map(r);
	if (state_enter_map(r, "sregs") < 0)
		return set_error(err, errlen, "sregs missing");
#define RESTORE_SEG(n)                                                       \
	if (restore_segment(r, #n, &sregs.n, err, errlen) < 0)               \
		return -1;
	SEGMENTS(RESTORE_SEG)
	if (restore_dtable(r, "gdt", &sregs.gdt, err, errlen) < 0 || restore_dtable(r, "idt", &sregs.idt, err, errlen) < 0)
		return -1;
	{
		struct kvm_sregs *s = &sregs;
		where = "sregs";
		SREGS_SCALARS(GET)
	}
	if (state_get_bytes(r, "interrupt_bitmap", sregs.interrupt_bitmap, sizeof(sregs.interrupt_bitmap)) < 0)
		return set_error(err, errlen, "sregs: interrupt_bitmap missing");
	state_leave_map(r);
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0 || ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
		return set_error(err, errlen, "vCPU %u: cannot load registers: %s", vcpu->id, strerror(errno));
	return 0;
}

/* KVM may list an entry twice (leaves whose index is not significant); the first one counts. */
static bool cpuid_seen_before(const struct kvm_cpuid2 *c, unsigned i)
{
	for (unsigned j = 0; j < i; j++)
		if (c->entries[j].function == c->entries[i].function && c->entries[j].index == c->entries[i].index)
			return true;
	return false;
}

static bool msr_seen_before(const struct kvm_msr_list *l, unsigned i)
{
	for (unsigned j = 0; j < i; j++)
		if (l->indices[j] == l->indices[i])
			return true;
	return false;
}

static int save_cpuid(struct vcpu *vcpu, struct state_writer *w, char *err, size_t errlen)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + MAX_CPUID * sizeof(c->entries[0]));
	char key[32];

	if (!c)
		return set_error(err, errlen, "out of memory");
	c->nent = MAX_CPUID;
	if (ioctl(vcpu->fd, KVM_GET_CPUID2, c) < 0) {
		free(c);
		return set_error(err, errlen, "vCPU %u: cannot read CPUID: %s", vcpu->id, strerror(errno));
	}
	state_begin_map(w, "cpuid");
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *s = &c->entries[i];
		if (cpuid_seen_before(c, i))
			continue;
		snprintf(key, sizeof(key), "0x%08x.%u", s->function, s->index);
		state_begin_map(w, key);
		PUT(eax) PUT(ebx) PUT(ecx) PUT(edx) PUT(flags)
		state_end_map(w);
	}
	state_end_map(w);
	free(c);
	return 0;
}

/* Parses the CPUID map at the reader's current position into a kvm_cpuid2 (malloc'ed). */
struct kvm_cpuid2 *kvm_state_read_cpuid(struct state_reader *r, char *err, size_t errlen);
struct kvm_cpuid2 *kvm_state_read_cpuid(struct state_reader *r, char *err, size_t errlen)
{
	size_t n = state_map_size(r);
	struct kvm_cpuid2 *c;
	char key[32];

	if (n > MAX_CPUID) {
		set_error(err, errlen, "cpuid: %zu entries is implausible", n);
		return NULL;
	}
	c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
	if (!c)
		return NULL;
	c->nent = n;
	for (size_t i = 0; i < n; i++) {
		struct kvm_cpuid_entry2 *s = &c->entries[i];
		unsigned fn, idx;
		const char *where = key;
		if (state_key_at(r, i, key, sizeof(key)) < 0 || sscanf(key, "0x%x.%u", &fn, &idx) != 2 ||
		    state_enter_map(r, key) < 0) {
			set_error(err, errlen, "cpuid: malformed entry");
			free(c);
			return NULL;
		}
		s->function = fn;
		s->index = idx;
#define GET_OR_NULL(f)                                                                 \
	{                                                                              \
		uint64_t v_;                                                           \
		if (state_get_u64(r, #f, &v_) < 0) {                                    \
			set_error(err, errlen, "cpuid %s: field '%s' missing", where, #f);   \
			free(c);                                                       \
			return NULL;                                                   \
		}                                                                      \
		s->f = (uint32_t)v_;                                                   \
	}
		GET_OR_NULL(eax) GET_OR_NULL(ebx) GET_OR_NULL(ecx) GET_OR_NULL(edx) GET_OR_NULL(flags)
		state_leave_map(r);
	}
	return c;
}

static int restore_cpuid(struct vcpu *vcpu, struct state_reader *r, char *err, size_t errlen)
{
	struct kvm_cpuid2 *c;
	int rc;

	if (state_enter_map(r, "cpuid") < 0)
		return set_error(err, errlen, "cpuid missing");
	c = kvm_state_read_cpuid(r, err, errlen);
	state_leave_map(r);
	if (!c)
		return -1;
	rc = ioctl(vcpu->fd, KVM_SET_CPUID2, c);
	free(c);
	if (rc < 0)
		return set_error(err, errlen, "vCPU %u: this host's KVM refuses the saved CPUID: %s", vcpu->id, strerror(errno));
	return 0;
}

static struct kvm_msr_list *msr_index_list(struct vm *vm)
{
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + MAX_MSRS * sizeof(l->indices[0]));

	if (!l)
		return NULL;
	l->nmsrs = MAX_MSRS;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		free(l);
		return NULL;
	}
	return l;
}

/* One MSR through KVM_GET_MSRS or KVM_SET_MSRS; *value is read or written. 0 or -1. */
static int msr_ioctl(struct vcpu *vcpu, unsigned long request, uint32_t index, uint64_t *value)
{
	_Alignas(struct kvm_msrs) uint8_t buf[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)] = { 0 };
	struct kvm_msrs *m = (struct kvm_msrs *)buf;

	m->nmsrs = 1;
	m->entries[0].index = index;
	m->entries[0].data = *value;
	if (ioctl(vcpu->fd, request, m) != 1)
		return -1;
	*value = m->entries[0].data;
	return 0;
}

static int get_msr(struct vcpu *vcpu, uint32_t index, uint64_t *value)
{
	*value = 0;
	return msr_ioctl(vcpu, KVM_GET_MSRS, index, value);
}

static int set_msr(struct vcpu *vcpu, uint32_t index, uint64_t value)
{
	return msr_ioctl(vcpu, KVM_SET_MSRS, index, &value);
}

/*
 * KVM's MSR index list leaves out the MTRRs (QEMU saves them by name too), yet a
 * firmware programs them once at boot and the OS keeps using that setting: a
 * restored guest must find them as it left them, not at their reset value.
 */
static const uint32_t mtrr_msrs[] = {
	0x2ff,						/* MTRRdefType */
	0x250, 0x258, 0x259,				/* fixed: 64K, 16K ranges */
	0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f, /* fixed: 4K ranges */
	0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, /* variable: base/mask pairs */
	0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f,
};

static bool msr_listed(const struct kvm_msr_list *l, uint32_t index)
{
	for (unsigned j = 0; j < l->nmsrs; j++)
		if (l->indices[j] == index)
			return true;
	return false;
}

static void save_msr(struct vcpu *vcpu, struct state_writer *w, uint32_t index)
{
	char key[16];
	uint64_t v;

	/* KVM lists MSRs this CPU model may lack; those that do not read back are not state. */
	if (get_msr(vcpu, index, &v) < 0)
		return;
	snprintf(key, sizeof(key), "0x%08x", index);
	state_put_u64(w, key, v);
}

static int save_msrs(struct vcpu *vcpu, struct state_writer *w, char *err, size_t errlen)
{
	struct kvm_msr_list *l = msr_index_list(vcpu->vm);

	if (!l)
		return set_error(err, errlen, "cannot list MSRs: %s", strerror(errno));
	state_begin_map(w, "msrs");
	for (unsigned i = 0; i < l->nmsrs; i++)
		if (!msr_seen_before(l, i))
			save_msr(vcpu, w, l->indices[i]);
	for (size_t i = 0; i < sizeof(mtrr_msrs) / sizeof(mtrr_msrs[0]); i++)
		if (!msr_listed(l, mtrr_msrs[i]))
			save_msr(vcpu, w, mtrr_msrs[i]);
	state_end_map(w);
	free(l);
	return 0;
}

/* TSC first (other MSRs are relative to it), TSC_DEADLINE last (it arms the timer against the TSC). */
static int msr_order(uint32_t index)
{
	return index == MSR_IA32_TSC ? 0 : index == MSR_IA32_TSC_DEADLINE ? 2 : 1;
}

static int restore_msrs(struct vcpu *vcpu, struct state_reader *r, char *err, size_t errlen)
{
	char key[32];
	size_t n;

	if (state_enter_map(r, "msrs") < 0)
		return set_error(err, errlen, "msrs missing");
	n = state_map_size(r);
	for (int pass = 0; pass < 3; pass++) {
		for (size_t i = 0; i < n; i++) {
			unsigned index;
			uint64_t v;
			if (state_key_at(r, i, key, sizeof(key)) < 0 || sscanf(key, "0x%x", &index) != 1 ||
			    state_get_u64(r, key, &v) < 0)
				return set_error(err, errlen, "msrs: malformed entry");
			if (msr_order(index) != pass)
				continue;
			if (set_msr(vcpu, index, v) < 0)
				log_warn("vCPU %u: MSR 0x%x=0x%llx not restored", vcpu->id, index, (unsigned long long)v);
		}
	}
	state_leave_map(r);
	return 0;
}

static int save_events(struct vcpu *vcpu, struct state_writer *w, char *err, size_t errlen)
{
	struct kvm_vcpu_events ev;

	if (ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return set_error(err, errlen, "vCPU %u: cannot read events: %s", vcpu->id, strerror(errno));
	state_begin_map(w, "events");
	{
		__typeof__(ev.exception) *s = &ev.exception;
		state_begin_map(w, "exception");
		EXCEPTION_FIELDS(PUT)
		state_end_map(w);
	}
	{
		__typeof__(ev.interrupt) *s = &ev.interrupt;
		state_begin_map(w, "interrupt");
		INTERRUPT_FIELDS(PUT)
		state_end_map(w);
	}
	{
		__typeof__(ev.nmi) *s = &ev.nmi;
		state_begin_map(w, "nmi");
		NMI_FIELDS(PUT)
		state_end_map(w);
	}
	{
		__typeof__(ev.smi) *s = &ev.smi;
		state_begin_map(w, "smi");
		SMI_FIELDS(PUT)
		state_end_map(w);
	}
	state_put_u64(w, "sipi_vector", ev.sipi_vector);
	state_put_u64(w, "flags", ev.flags);
	state_end_map(w);
	return 0;
}

static int restore_events(struct vcpu *vcpu, struct state_reader *r, char *err, size_t errlen)
{
	struct kvm_vcpu_events ev;
	const char *where = "events";

	memset(&ev, 0, sizeof(ev));
	if (state_enter_map(r, "events") < 0)
		return set_error(err, errlen, "events missing");
#define EVENT_GROUP(name, FIELDS, member)                                          \
	{                                                                          \
		__typeof__(ev.member) *s = &ev.member;                             \
		where = name;                                                      \
		if (state_enter_map(r, name) < 0)                                  \
			return set_error(err, errlen, "events: %s missing", name); \
		FIELDS(GET)                                                        \
		state_leave_map(r);                                                \
	}
	EVENT_GROUP("exception", EXCEPTION_FIELDS, exception)
	EVENT_GROUP("interrupt", INTERRUPT_FIELDS, interrupt)
	EVENT_GROUP("nmi", NMI_FIELDS, nmi)
	EVENT_GROUP("smi", SMI_FIELDS, smi)
	{
		struct kvm_vcpu_events *s = &ev;
		where = "events";
		GET(sipi_vector) GET(flags)
	}
	state_leave_map(r);
	if (ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		return set_error(err, errlen, "vCPU %u: cannot load events: %s", vcpu->id, strerror(errno));
	return 0;
}

static int save_debugregs(struct vcpu *vcpu, struct state_writer *w, char *err, size_t errlen)
{
	struct kvm_debugregs d, *s = &d;
	char key[8];

	if (ioctl(vcpu->fd, KVM_GET_DEBUGREGS, &d) < 0)
		return set_error(err, errlen, "vCPU %u: cannot read debug registers: %s", vcpu->id, strerror(errno));
	state_begin_map(w, "debugregs");
	for (int i = 0; i < 4; i++) {
		snprintf(key, sizeof(key), "db%d", i);
		state_put_u64(w, key, d.db[i]);
	}
	DEBUGREG_FIELDS(PUT)
	state_end_map(w);
	return 0;
}

static int restore_debugregs(struct vcpu *vcpu, struct state_reader *r, char *err, size_t errlen)
{
	struct kvm_debugregs d, *s = &d;
	const char *where = "debugregs";
	char key[8];

	memset(&d, 0, sizeof(d));
	if (state_enter_map(r, "debugregs") < 0)
		return set_error(err, errlen, "debugregs missing");
	for (int i = 0; i < 4; i++) {
		uint64_t v;
		snprintf(key, sizeof(key), "db%d", i);
		if (state_get_u64(r, key, &v) < 0)
			return set_error(err, errlen, "debugregs: %s missing", key);
		d.db[i] = v;
	}
	DEBUGREG_FIELDS(GET)
	state_leave_map(r);
	if (ioctl(vcpu->fd, KVM_SET_DEBUGREGS, &d) < 0)
		return set_error(err, errlen, "vCPU %u: cannot load debug registers: %s", vcpu->id, strerror(errno));
	return 0;
}

static int save_blobs(struct vcpu *vcpu, struct state_writer *w, char *err, size_t errlen)
{
	struct kvm_xsave xsave;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp;
	struct kvm_xcrs xcrs;
	char key[16];

	if (ioctl(vcpu->fd, KVM_GET_XSAVE, &xsave) < 0 || ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0 ||
	    ioctl(vcpu->fd, KVM_GET_MP_STATE, &mp) < 0 || ioctl(vcpu->fd, KVM_GET_XCRS, &xcrs) < 0)
		return set_error(err, errlen, "vCPU %u: cannot read FPU/LAPIC state: %s", vcpu->id, strerror(errno));
	state_put_bytes(w, "xsave", xsave.region, sizeof(xsave.region));
	state_put_bytes(w, "lapic", lapic.regs, sizeof(lapic.regs));
	state_put_u64(w, "mp_state", mp.mp_state);
	state_begin_map(w, "xcrs");
	for (unsigned i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++) {
		snprintf(key, sizeof(key), "xcr%u", xcrs.xcrs[i].xcr);
		state_put_u64(w, key, xcrs.xcrs[i].value);
	}
	state_end_map(w);
	return 0;
}

static int restore_mp_state(struct vcpu *vcpu, struct state_reader *r, char *err, size_t errlen)
{
	struct kvm_mp_state mp;
	uint64_t v;

	if (state_get_u64(r, "mp_state", &v) < 0)
		return set_error(err, errlen, "mp_state missing");
	mp.mp_state = (uint32_t)v;
	if (ioctl(vcpu->fd, KVM_SET_MP_STATE, &mp) < 0)
		return set_error(err, errlen, "vCPU %u: cannot load MP state: %s", vcpu->id, strerror(errno));
	return 0;
}

static int restore_fpu(struct vcpu *vcpu, struct state_reader *r, char *err, size_t errlen)
{
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	char key[16];

	memset(&xcrs, 0, sizeof(xcrs));
	if (state_get_bytes(r, "xsave", xsave.region, sizeof(xsave.region)) < 0)
		return set_error(err, errlen, "xsave missing or of the wrong size");
	if (ioctl(vcpu->fd, KVM_SET_XSAVE, &xsave) < 0)
		return set_error(err, errlen, "vCPU %u: cannot load XSAVE state: %s", vcpu->id, strerror(errno));
	if (state_enter_map(r, "xcrs") < 0)
		return set_error(err, errlen, "xcrs missing");
	for (size_t i = 0; i < state_map_size(r) && xcrs.nr_xcrs < KVM_MAX_XCRS; i++) {
		unsigned n;
		uint64_t v;
		if (state_key_at(r, i, key, sizeof(key)) < 0 || sscanf(key, "xcr%u", &n) != 1 || state_get_u64(r, key, &v) < 0)
			return set_error(err, errlen, "xcrs: malformed entry");
		xcrs.xcrs[xcrs.nr_xcrs].xcr = n;
		xcrs.xcrs[xcrs.nr_xcrs++].value = v;
	}
	state_leave_map(r);
	if (ioctl(vcpu->fd, KVM_SET_XCRS, &xcrs) < 0)
		return set_error(err, errlen, "vCPU %u: cannot load XCRs: %s", vcpu->id, strerror(errno));
	return 0;
}

static int restore_lapic(struct vcpu *vcpu, struct state_reader *r, char *err, size_t errlen)
{
	struct kvm_lapic_state lapic;

	if (state_get_bytes(r, "lapic", lapic.regs, sizeof(lapic.regs)) < 0)
		return set_error(err, errlen, "lapic missing or of the wrong size");
	if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0)
		return set_error(err, errlen, "vCPU %u: cannot load LAPIC: %s", vcpu->id, strerror(errno));
	return 0;
}

int kvm_state_save_vcpu(struct vcpu *vcpu, struct state_writer *w, char *err, size_t errlen)
{
	if (save_cpuid(vcpu, w, err, errlen) < 0 || save_regs(vcpu, w, err, errlen) < 0 ||
	    save_blobs(vcpu, w, err, errlen) < 0 || save_msrs(vcpu, w, err, errlen) < 0 ||
	    save_events(vcpu, w, err, errlen) < 0 || save_debugregs(vcpu, w, err, errlen) < 0)
		return -1;
	return 0;
}

int kvm_state_restore_vcpu(struct vcpu *vcpu, struct state_reader *r, char *err, size_t errlen)
{
	if (restore_cpuid(vcpu, r, err, errlen) < 0)
		return -1;
	return kvm_state_load_vcpu(vcpu, r, err, errlen);
}

int kvm_state_load_vcpu(struct vcpu *vcpu, struct state_reader *r, char *err, size_t errlen)
{
	/* The order keeps pending interrupts and timers: see docs/snapshot-format.md. */
	if (restore_mp_state(vcpu, r, err, errlen) < 0 ||
	    restore_regs(vcpu, r, err, errlen) < 0 || restore_fpu(vcpu, r, err, errlen) < 0 ||
	    restore_debugregs(vcpu, r, err, errlen) < 0 || restore_lapic(vcpu, r, err, errlen) < 0 ||
	    restore_msrs(vcpu, r, err, errlen) < 0 || restore_events(vcpu, r, err, errlen) < 0)
		return -1;
	return 0;
}

/* ---- VM-wide ---- */

static int get_chip(struct vm *vm, unsigned id, struct kvm_irqchip *chip, char *err, size_t errlen)
{
	memset(chip, 0, sizeof(*chip));
	chip->chip_id = id;
	if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, chip) < 0)
		return set_error(err, errlen, "cannot read interrupt controller %u: %s", id, strerror(errno));
	return 0;
}

int kvm_state_save_irqchip(struct vm *vm, struct state_writer *w, char *err, size_t errlen)
{
	static const char *const pic_names[] = { "pic-master", "pic-slave" };
	struct kvm_irqchip chip;
	char key[8];

	for (unsigned id = KVM_IRQCHIP_PIC_MASTER; id <= KVM_IRQCHIP_PIC_SLAVE; id++) {
		struct kvm_pic_state *s = &chip.chip.pic;
		if (get_chip(vm, id, &chip, err, errlen) < 0)
			return -1;
		state_begin_map(w, pic_names[id]);
		PIC_FIELDS(PUT)
		state_end_map(w);
	}
	if (get_chip(vm, KVM_IRQCHIP_IOAPIC, &chip, err, errlen) < 0)
		return -1;
	{
		struct kvm_ioapic_state *s = &chip.chip.ioapic;
		state_begin_map(w, "ioapic");
		IOAPIC_FIELDS(PUT)
		state_begin_map(w, "redirection");
		for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++) {
			snprintf(key, sizeof(key), "%d", i);
			state_put_u64(w, key, s->redirtbl[i].bits);
		}
		state_end_map(w);
		state_end_map(w);
	}
	return 0;
}

int kvm_state_restore_irqchip(struct vm *vm, struct state_reader *r, char *err, size_t errlen)
{
	static const char *const pic_names[] = { "pic-master", "pic-slave" };
	struct kvm_irqchip chip;
	char key[8];

	for (unsigned id = KVM_IRQCHIP_PIC_MASTER; id <= KVM_IRQCHIP_PIC_SLAVE; id++) {
		struct kvm_pic_state *s = &chip.chip.pic;
		const char *where = pic_names[id];
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = id;
		if (state_enter_map(r, where) < 0)
			return set_error(err, errlen, "%s missing", where);
		PIC_FIELDS(GET)
		state_leave_map(r);
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			return set_error(err, errlen, "cannot load %s: %s", where, strerror(errno));
	}
	memset(&chip, 0, sizeof(chip));
	chip.chip_id = KVM_IRQCHIP_IOAPIC;
	{
		struct kvm_ioapic_state *s = &chip.chip.ioapic;
		const char *where = "ioapic";
		if (state_enter_map(r, "ioapic") < 0)
			return set_error(err, errlen, "ioapic missing");
		IOAPIC_FIELDS(GET)
		if (state_enter_map(r, "redirection") < 0)
			return set_error(err, errlen, "ioapic: redirection missing");
		for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++) {
			snprintf(key, sizeof(key), "%d", i);
			uint64_t bits;
			if (state_get_u64(r, key, &bits) < 0)
				return set_error(err, errlen, "ioapic: redirection entry %d missing", i);
			s->redirtbl[i].bits = bits;
		}
		state_leave_map(r);
		state_leave_map(r);
	}
	if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
		return set_error(err, errlen, "cannot load the IOAPIC: %s", strerror(errno));
	return 0;
}

int kvm_state_save_pit(struct vm *vm, struct state_writer *w, char *err, size_t errlen)
{
	struct kvm_pit_state2 pit;
	char key[8];

	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return set_error(err, errlen, "cannot read the PIT: %s", strerror(errno));
	state_begin_map(w, "channels");
	for (int i = 0; i < 3; i++) {
		struct kvm_pit_channel_state *s = &pit.channels[i];
		snprintf(key, sizeof(key), "%d", i);
		state_begin_map(w, key);
		PIT_CHANNEL_FIELDS(PUT)
		state_end_map(w);
	}
	state_end_map(w);
	state_put_u64(w, "flags", pit.flags);
	return 0;
}

int kvm_state_restore_pit(struct vm *vm, struct state_reader *r, char *err, size_t errlen)
{
	struct kvm_pit_state2 pit;
	char key[8];
	uint64_t flags;

	memset(&pit, 0, sizeof(pit));
	if (state_enter_map(r, "channels") < 0)
		return set_error(err, errlen, "pit: channels missing");
	for (int i = 0; i < 3; i++) {
		struct kvm_pit_channel_state *s = &pit.channels[i];
		const char *where = key;
		snprintf(key, sizeof(key), "%d", i);
		if (state_enter_map(r, key) < 0)
			return set_error(err, errlen, "pit: channel %d missing", i);
		PIT_CHANNEL_FIELDS(GET)
		state_leave_map(r);
	}
	state_leave_map(r);
	if (state_get_u64(r, "flags", &flags) < 0)
		return set_error(err, errlen, "pit: flags missing");
	pit.flags = (uint32_t)flags;
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
		return set_error(err, errlen, "cannot load the PIT: %s", strerror(errno));
	return 0;
}

int kvm_state_save_clock(struct vm *vm, struct state_writer *w, char *err, size_t errlen)
{
	struct kvm_clock_data clock;
	struct timespec now;

	memset(&clock, 0, sizeof(clock));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return set_error(err, errlen, "cannot read kvmclock: %s", strerror(errno));
	clock_gettime(CLOCK_REALTIME, &now);
	state_put_u64(w, "clock", clock.clock);
	state_put_u64(w, "flags", clock.flags);
	state_put_u64(w, "realtime", (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec);
	if (clock.flags & KVM_CLOCK_HOST_TSC)
		state_put_u64(w, "host_tsc", clock.host_tsc);
	return 0;
}

int kvm_state_restore_clock(struct vm *vm, struct state_reader *r, char *err, size_t errlen)
{
	struct kvm_clock_data clock;
	uint64_t ns;

	memset(&clock, 0, sizeof(clock));
	/* The guest's clock continues from the saved value: no jump, flags 0 (no realtime adjustment). */
	if (state_get_u64(r, "clock", &ns) < 0)
		return set_error(err, errlen, "vm.clock: clock missing");
	clock.clock = ns;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return set_error(err, errlen, "cannot load kvmclock: %s", strerror(errno));
	return 0;
}
