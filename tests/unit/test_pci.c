/*
 * The PCI bus against the KVM stand-in: config mechanism #1 and ECAM, BAR
 * sizing, placement and moves, hostile BAR values, INTx, MSI-X table/PBA
 * semantics, MSI, the capability list, bad configurations and save/restore.
 * A small test device ("pcitest") exercises the function API.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "boot/layout.h"
#include "core/config.h"
#include "core/device.h"
#include "core/irq.h"
#include "core/log.h"
#include "core/options.h"
#include "core/vm.h"
#include "pci/pci.h"
#include "snapshot/state.h"
#include "testvm.h"

#define TEST_VENDOR 0xABCD
#define TEST_DEVICE 0x0042
#define IO_BAR_SIZE 32
#define MEM_BAR_SIZE 4096
#define MEM64_BAR_SIZE 16384
#define MSIX_BAR 4
#define MSIX_VECTORS 4
#define MSIX_PBA 0x800
#define VNDR_REG 4 /* offset in the vendor capability of a hook-handled register */

/* ---- the test device ---- */

struct tdev {
	struct pci_function fn;
	uint8_t io[IO_BAR_SIZE];
	uint8_t mem[MEM64_BAR_SIZE]; /* shared by BAR 1 (4 KiB) and BAR 2 (16 KiB) */
	unsigned accesses;
	int vndr_cap;
	uint32_t hook_value;  /* what the device keeps behind the vendor register */
	unsigned hook_writes;
};

static void tdev_bar(void *opaque, uint64_t off, uint8_t *data, unsigned size, bool is_write, uint8_t *regs,
		     size_t len)
{
	struct tdev *s = opaque;

	s->accesses++;
	assert_true(off + size <= len);
	if (is_write)
		memcpy(regs + off, data, size);
	else
		memcpy(data, regs + off, size);
}

static void tdev_io(void *opaque, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	tdev_bar(opaque, off, data, size, is_write, ((struct tdev *)opaque)->io, IO_BAR_SIZE);
}

static void tdev_mem(void *opaque, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	tdev_bar(opaque, off, data, size, is_write, ((struct tdev *)opaque)->mem, MEM64_BAR_SIZE);
}

static void tdev_cfg_read(struct pci_function *fn, unsigned off, unsigned size, uint32_t *val)
{
	struct tdev *s = fn->opaque;

	if (off == (unsigned)s->vndr_cap + VNDR_REG && size == 4)
		*val = s->hook_value;
}

static void tdev_cfg_write(struct pci_function *fn, unsigned off, unsigned size, uint32_t val)
{
	struct tdev *s = fn->opaque;

	if (off == (unsigned)s->vndr_cap + VNDR_REG && size == 4) {
		s->hook_value = val ^ 0xFFFFFFFF;
		s->hook_writes++;
	}
}

static int tdev_create(struct device *dev)
{
	struct tdev *s = calloc(1, sizeof(*s));
	uint8_t vndr[6] = { 8 /* cap length */, 0 };

	if (!s)
		return -1;
	if (pci_function_init(&s->fn, dev, TEST_VENDOR, TEST_DEVICE, 0xFF, 0x00, 0x00) < 0) {
		free(s);
		return -1;
	}
	s->fn.opaque = s;
	s->fn.cfg_read = tdev_cfg_read;
	s->fn.cfg_write = tdev_cfg_write;
	dev->priv = s;
	if (pci_bar_add(&s->fn, 0, PCI_BAR_IO, IO_BAR_SIZE, tdev_io, s) < 0 ||
	    pci_bar_add(&s->fn, 1, PCI_BAR_MEM32, MEM_BAR_SIZE, tdev_mem, s) < 0 ||
	    pci_bar_add(&s->fn, 2, PCI_BAR_MEM64 | PCI_BAR_PREFETCH, MEM64_BAR_SIZE, tdev_mem, s) < 0)
		return -1;
	s->vndr_cap = pci_cap_add(&s->fn, PCI_CAP_ID_VNDR, vndr, sizeof(vndr));
	if (s->vndr_cap < 0 || pci_msix_init(&s->fn, MSIX_VECTORS, MSIX_BAR, 0, MSIX_PBA) < 0 ||
	    pci_intx_request(&s->fn) < 0)
		return -1;
	/* pci.0.S.F.msi=N: also plain MSI with N vectors. */
	if (dev_opt_is_set(dev, "msi") && pci_msi_init(&s->fn, (unsigned)dev_opt_u64(dev, "msi")) < 0)
		return -1;
	return 0;
}

static void tdev_destroy(struct device *dev)
{
	struct tdev *s = dev->priv;

	if (!s)
		return;
	pci_function_destroy(&s->fn);
	free(s);
	dev->priv = NULL;
}

static void tdev_reset(struct device *dev)
{
	pci_function_reset(&((struct tdev *)dev->priv)->fn);
}

static int tdev_save(struct device *dev, struct state_writer *w)
{
	pci_function_save(&((struct tdev *)dev->priv)->fn, w);
	return 0;
}

static int tdev_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	(void)version;
	return pci_function_restore(&((struct tdev *)dev->priv)->fn, r);
}

static const struct option_decl tdev_options[] = {
	{ .name = "msi", .type = OPTION_UINT, .max = 32, .help = "plain MSI with this many vectors" },
	{ 0 },
};

static struct device_model tdev_model = {
	.name = "pcitest",
	.options = tdev_options,
	.state_version = 1,
	.on_pci = true,
	.create = tdev_create,
	.reset = tdev_reset,
	.save = tdev_save,
	.restore = tdev_restore,
	.destroy = tdev_destroy,
};
DEVICE_MODEL(tdev_model);

/* ---- helpers ---- */

static struct vm *new_vm(const char *const *settings)
{
	struct vm *vm = testvm_new(256ULL << 20);

	for (; settings && *settings; settings++)
		assert_int_equal(config_set_assignment(vm->cfg, *settings), 0);
	return vm;
}

static int attach(struct vm *vm)
{
	return device_model_find("pci")->attach(vm);
}

/* Devices first (they release their MSI routes), then the routing table the stand-in VM got on first use. */
static void free_vm(struct vm *vm)
{
	devices_destroy_all(vm);
	vm_irq_routing_free(vm);
	testvm_free(vm);
}

static struct vm *std_vm(void)
{
	static const char *const cfg[] = { "pci.0.3.0.device=pcitest", "pci.0.31.0.device=lpc", NULL };
	struct vm *vm = new_vm(cfg);

	assert_int_equal(attach(vm), 0);
	return vm;
}

static int setup(void **state)
{
	*state = std_vm();
	return 0;
}

static int teardown(void **state)
{
	free_vm(*state);
	return 0;
}

static struct tdev *tdev_at(struct vm *vm, const char *id)
{
	struct device *d = device_find(vm, id);

	assert_non_null(d);
	return d->priv;
}

static uint32_t conf1_addr(unsigned bus, unsigned slot, unsigned func, unsigned reg)
{
	return 0x80000000u | bus << 16 | slot << 11 | func << 8 | (reg & 0xFC);
}

static uint32_t cfg_read(struct vm *vm, unsigned slot, unsigned func, unsigned reg, unsigned size)
{
	outl(vm, 0xCF8, conf1_addr(0, slot, func, reg));
	return testvm_in(vm, (uint16_t)(0xCFC + (reg & 3)), size);
}

static void cfg_write(struct vm *vm, unsigned slot, unsigned func, unsigned reg, unsigned size, uint32_t v)
{
	outl(vm, 0xCF8, conf1_addr(0, slot, func, reg));
	testvm_out(vm, (uint16_t)(0xCFC + (reg & 3)), size, v);
}

static uint64_t mmio_read(struct vm *vm, uint64_t addr, unsigned size, bool *claimed)
{
	uint8_t data[8] = { 0 };
	uint64_t v = 0;
	bool c = iobus_access(&vm->mmio, addr, data, size, false);

	if (claimed)
		*claimed = c;
	for (unsigned i = 0; i < size; i++)
		v |= (uint64_t)data[i] << (8 * i);
	return v;
}

static bool mmio_write(struct vm *vm, uint64_t addr, unsigned size, uint64_t v)
{
	uint8_t data[8];

	for (unsigned i = 0; i < size; i++)
		data[i] = (uint8_t)(v >> (8 * i));
	return iobus_access(&vm->mmio, addr, data, size, true);
}

/*
 * The q35 layout (a new VM's default), spelt out: ECAM where OVMF puts it
 * and the 32-bit window OVMF assigns from; the ids of the Q35 MCH and the
 * ICH9 LPC bridge.
 */
#define ECAM_BASE 0xB0000000ULL
#define MMIO32_BASE 0xC0000000ULL
#define MMIO32_END 0xFC000000ULL
#define HOSTBRIDGE_IDS 0x29C08086u
#define LPC_IDS 0x29188086u

static uint64_t ecam(unsigned bus, unsigned slot, unsigned func, unsigned reg)
{
	return ECAM_BASE + ((uint64_t)bus << 20 | slot << 15 | func << 12 | reg);
}

static uint64_t bar_of(struct vm *vm, unsigned slot, unsigned index)
{
	uint32_t lo = cfg_read(vm, slot, 0, PCI_BASE_ADDRESS_0 + 4 * index, 4);

	if (lo & 1)
		return lo & ~3u;
	if ((lo & 6) == 4)
		return (lo & ~0xFull) | (uint64_t)cfg_read(vm, slot, 0, PCI_BASE_ADDRESS_0 + 4 * index + 4, 4) << 32;
	return lo & ~0xFull;
}

static uint64_t efd_count(int fd)
{
	uint64_t n = 0;

	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

/* ---- config mechanism #1 and ECAM ---- */

static void test_conf1(void **state)
{
	struct vm *vm = *state;

	/* Linux's probe: a dword write of 0x80000000 to 0xCF8 reads back. */
	outl(vm, 0xCF8, 0x80000000);
	assert_int_equal(inl(vm, 0xCF8), 0x80000000);
	/* The host bridge was added at 0:0.0 automatically. */
	assert_int_equal(cfg_read(vm, 0, 0, PCI_VENDOR_ID, 4), HOSTBRIDGE_IDS);
	assert_int_equal(cfg_read(vm, 0, 0, PCI_CLASS_DEVICE, 2), 0x0600);
	assert_int_equal(cfg_read(vm, 31, 0, PCI_VENDOR_ID, 4), LPC_IDS);
	assert_int_equal(cfg_read(vm, 31, 0, PCI_REVISION_ID, 4) >> 8, 0x060100);
	/* Word and byte reads at 0xCFE, 0xCFD. */
	assert_int_equal(cfg_read(vm, 3, 0, PCI_DEVICE_ID, 2), TEST_DEVICE);
	assert_int_equal(cfg_read(vm, 3, 0, 1, 1), TEST_VENDOR >> 8);
	/* Absent functions and other buses read all ones. */
	assert_int_equal(cfg_read(vm, 4, 0, 0, 4), 0xFFFFFFFF);
	assert_int_equal(cfg_read(vm, 3, 1, 0, 4), 0xFFFFFFFF);
	outl(vm, 0xCF8, conf1_addr(1, 3, 0, 0));
	assert_int_equal(inl(vm, 0xCFC), 0xFFFFFFFF);
	/* Without the enable bit nothing is addressed. */
	outl(vm, 0xCF8, conf1_addr(0, 3, 0, 0) & 0x7FFFFFFF);
	assert_int_equal(inl(vm, 0xCFC), 0xFFFFFFFF);
	/* Byte accesses to 0xCF8-0xCFB are not CONFIG_ADDRESS. */
	outl(vm, 0xCF8, 0x80001800);
	outb(vm, 0xCFB, 0x01);
	outb(vm, 0xCF8, 0x00);
	assert_int_equal(inl(vm, 0xCF8), 0x80001800);
	assert_int_equal(inb(vm, 0xCFA), 0xFF);
	/* Reserved and low bits of CONFIG_ADDRESS read as zero. */
	outl(vm, 0xCF8, 0xFFFFFFFF);
	assert_int_equal(inl(vm, 0xCF8), 0x80FFFFFC);
}

static void test_conf1_writes(void **state)
{
	struct vm *vm = *state;

	/* Writable registers keep what is written; read-only ones ignore it. */
	cfg_write(vm, 3, 0, PCI_CACHE_LINE_SIZE, 1, 0x10);
	assert_int_equal(cfg_read(vm, 3, 0, PCI_CACHE_LINE_SIZE, 1), 0x10);
	cfg_write(vm, 3, 0, PCI_VENDOR_ID, 4, 0x11112222);
	assert_int_equal(cfg_read(vm, 3, 0, PCI_VENDOR_ID, 4), TEST_DEVICE << 16 | TEST_VENDOR);
	cfg_write(vm, 3, 0, PCI_INTERRUPT_LINE, 1, 0x0B);
	assert_int_equal(cfg_read(vm, 3, 0, PCI_INTERRUPT_LINE, 1), 0x0B);
	assert_int_equal(cfg_read(vm, 3, 0, PCI_INTERRUPT_PIN, 1), PCI_INTA);
	/* Only the defined COMMAND bits stick. */
	cfg_write(vm, 3, 0, PCI_COMMAND, 2, 0xFFFF);
	assert_int_equal(cfg_read(vm, 3, 0, PCI_COMMAND, 2), 0x0547);
	/* STATUS error bits are write-1-to-clear; the capability bit stays. */
	assert_true(cfg_read(vm, 3, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	cfg_write(vm, 3, 0, PCI_STATUS, 2, 0xFFFF);
	assert_true(cfg_read(vm, 3, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
}

static void test_ecam(void **state)
{
	struct vm *vm = *state;
	bool claimed;

	assert_int_equal(mmio_read(vm, ecam(0, 0, 0, 0), 4, &claimed), HOSTBRIDGE_IDS);
	assert_true(claimed);
	assert_int_equal(mmio_read(vm, ecam(0, 3, 0, 2), 2, NULL), TEST_DEVICE);
	assert_int_equal(mmio_read(vm, ecam(0, 3, 0, 0xB), 1, NULL), 0xFF);
	/* 8-byte reads are two dwords. */
	assert_int_equal(mmio_read(vm, ecam(0, 3, 0, 0), 8, NULL),
			 (uint64_t)cfg_read(vm, 3, 0, 4, 4) << 32 | (TEST_DEVICE << 16 | TEST_VENDOR));
	/* Absent functions, other buses: all ones; past 256 bytes of a conventional function: zero. */
	assert_int_equal(mmio_read(vm, ecam(0, 5, 0, 0), 4, NULL), 0xFFFFFFFF);
	assert_int_equal(mmio_read(vm, ecam(7, 3, 0, 0), 4, NULL), 0xFFFFFFFF);
	assert_int_equal(mmio_read(vm, ecam(0, 3, 0, 0x100), 4, NULL), 0);
	assert_int_equal(mmio_read(vm, ecam(0, 3, 0, 0xFFE), 4, NULL), 0);
	/* Writes through ECAM are seen through 0xCFC. */
	assert_true(mmio_write(vm, ecam(0, 3, 0, PCI_LATENCY_TIMER), 1, 0x40));
	assert_int_equal(cfg_read(vm, 3, 0, PCI_LATENCY_TIMER, 1), 0x40);
	/* The last byte of the window is still ECAM (bus 255, slot 31, function 7). */
	assert_int_equal(mmio_read(vm, ECAM_BASE + PCI_ECAM_SIZE - 1, 1, &claimed), 0xFF);
	assert_true(claimed);
}

static void test_pcie_hostbridge(void **state)
{
	static const char *const cfg[] = { "pci.0.0.0.device=hostbridge", "pci.0.0.0.pcie=true", NULL };
	struct vm *vm = new_vm(cfg);
	unsigned cap;

	(void)state;
	assert_int_equal(attach(vm), 0);
	cap = pci_cap_find(pci_bus_function(pci_bus_of(vm), 0, 0), PCI_CAP_ID_EXP);
	assert_int_not_equal(cap, 0);
	assert_int_equal(cfg_read(vm, 0, 0, PCI_CAPABILITY_LIST, 1), cap);
	assert_int_equal(cfg_read(vm, 0, 0, cap + 2, 2) >> 4 & 0xF, 9); /* integrated endpoint */
	/* 4 KiB space: extended offsets exist (empty), and are not an alias of the header. */
	assert_int_equal(mmio_read(vm, ecam(0, 0, 0, 0x100), 4, NULL), 0);
	assert_int_equal(mmio_read(vm, ecam(0, 0, 0, 0xFFC), 4, NULL), 0);
	free_vm(vm);
}

static void test_reset_register_shares_cf8(void **state)
{
	struct vm *vm = testvm_new(256ULL << 20);

	(void)state;
	/* The ACPI PM device owns 0xCF9 before the bus attaches; the bus forwards byte accesses there. */
	assert_int_equal(device_model_find("acpi-pm")->attach(vm), 0);
	assert_int_equal(attach(vm), 0);
	outl(vm, 0xCF8, 0x80000000);
	assert_int_equal(inl(vm, 0xCF8), 0x80000000);
	outb(vm, PORT_RESET, 0x02);
	assert_int_equal(inb(vm, PORT_RESET), 0x02);
	assert_int_equal(testvm_exit_status(), -1);
	outb(vm, PORT_RESET, RESET_VALUE);
	assert_int_equal(testvm_exit_status(), HYVE_EXIT_REBOOT);
	/* CONFIG_ADDRESS is untouched by the byte accesses. */
	assert_int_equal(inl(vm, 0xCF8), 0x80000000);
	free_vm(vm);
}

/* ---- BARs ---- */

static void test_initial_placement(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");
	uint64_t io = bar_of(vm, 3, 0), mem = bar_of(vm, 3, 1), mem64 = bar_of(vm, 3, 2), msix = bar_of(vm, 3, 4);
	bool claimed;

	assert_true(io >= PCI_IO_BASE && io + IO_BAR_SIZE <= PCI_IO_END && io % IO_BAR_SIZE == 0);
	assert_true(mem >= MMIO32_BASE && mem + MEM_BAR_SIZE <= MMIO32_END && mem % MEM_BAR_SIZE == 0);
	assert_true(msix >= MMIO32_BASE && msix + 4096 <= MMIO32_END && msix != mem);
	assert_true(mem64 >= PCI_MMIO64_BASE(MEM_4G) && mem64 % MEM64_BAR_SIZE == 0);
	assert_int_equal(cfg_read(vm, 3, 0, PCI_BASE_ADDRESS_0 + 8, 4) & 0xF, 0xC); /* 64-bit, prefetchable */
	assert_int_equal(pci_bar_addr(&s->fn, 1), mem);
	/* Decoding is on, and accesses reach the device's handlers at BAR-relative offsets. */
	assert_int_equal(cfg_read(vm, 3, 0, PCI_COMMAND, 2) & 3, 3);
	uint32_t v;
	outl(vm, (uint16_t)(io + 4), 0xCAFEF00D);
	memcpy(&v, &s->io[4], 4);
	assert_int_equal(v, 0xCAFEF00D);
	assert_true(mmio_write(vm, mem + 0x10, 4, 0x12345678));
	assert_int_equal(mmio_read(vm, mem + 0x10, 4, &claimed), 0x12345678);
	assert_true(claimed);
	assert_int_equal(mmio_read(vm, mem64 + 0x10, 4, &claimed), 0x12345678);
	assert_true(claimed);
}

static void test_bar_sizing(void **state)
{
	struct vm *vm = *state;
	uint64_t mem64 = bar_of(vm, 3, 2);

	/* Linux sizes with decoding off. */
	cfg_write(vm, 3, 0, PCI_COMMAND, 2, 0);
	for (unsigned i = 0; i < 6; i++)
		cfg_write(vm, 3, 0, PCI_BASE_ADDRESS_0 + 4 * i, 4, 0xFFFFFFFF);
	assert_int_equal(cfg_read(vm, 3, 0, 0x10, 4), (uint32_t)~(IO_BAR_SIZE - 1) | 1);
	assert_int_equal(cfg_read(vm, 3, 0, 0x14, 4), (uint32_t)~(MEM_BAR_SIZE - 1));
	assert_int_equal(cfg_read(vm, 3, 0, 0x18, 4), (uint32_t)~(MEM64_BAR_SIZE - 1) | 0xC);
	assert_int_equal(cfg_read(vm, 3, 0, 0x1C, 4), 0xFFFFFFFF);
	assert_int_equal(cfg_read(vm, 3, 0, 0x20, 4), 0xFFFFF000); /* MSI-X BAR: 4 KiB */
	assert_int_equal(cfg_read(vm, 3, 0, 0x24, 4), 0);          /* unused */
	/* Unused BARs of the LPC bridge stay zero. */
	cfg_write(vm, 31, 0, 0x10, 4, 0xFFFFFFFF);
	assert_int_equal(cfg_read(vm, 31, 0, 0x10, 4), 0);
	/* Nothing is decoded with decoding off, even at the sizing addresses. */
	bool claimed;
	mmio_read(vm, 0xFFFFF000, 4, &claimed);
	assert_false(claimed);
	/* Put BAR 2 back and decode again: it is where the guest put it. */
	cfg_write(vm, 3, 0, 0x18, 4, (uint32_t)mem64);
	cfg_write(vm, 3, 0, 0x1C, 4, (uint32_t)(mem64 >> 32));
	cfg_write(vm, 3, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	mmio_read(vm, mem64, 4, &claimed);
	assert_true(claimed);
}

static void test_bar_move(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");
	uint64_t mem = bar_of(vm, 3, 1), io = bar_of(vm, 3, 0);
	uint64_t to = MMIO32_BASE + 0x100000;
	bool claimed;

	/* Moving with decoding on re-registers the range at once. */
	cfg_write(vm, 3, 0, 0x14, 4, (uint32_t)to);
	assert_int_equal(bar_of(vm, 3, 1), to);
	mmio_read(vm, mem, 4, &claimed);
	assert_false(claimed);
	unsigned before = s->accesses;
	mmio_read(vm, to + 8, 4, &claimed);
	assert_true(claimed);
	assert_int_equal(s->accesses, before + 1);
	/* Memory decoding off: unclaimed; on again: back. */
	cfg_write(vm, 3, 0, PCI_COMMAND, 2, PCI_COMMAND_IO);
	mmio_read(vm, to, 4, &claimed);
	assert_false(claimed);
	assert_int_equal(inl(vm, (uint16_t)io), 0); /* I/O still decoded */
	cfg_write(vm, 3, 0, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
	mmio_read(vm, to, 4, &claimed);
	assert_true(claimed);
	/* I/O BAR move. */
	cfg_write(vm, 3, 0, 0x10, 4, 0xC000);
	outl(vm, 0xC004, 0x55AA55AA);
	assert_int_equal(inl(vm, 0xC004), 0x55AA55AA);
	assert_int_equal(testvm_in(vm, (uint16_t)(io + 4), 4), 0xFFFFFFFF);
	/* A 64-bit BAR moved in two halves ends up at the full address. */
	uint64_t high = PCI_MMIO64_BASE(MEM_4G) + 0x40000000;
	cfg_write(vm, 3, 0, 0x18, 4, (uint32_t)high);
	cfg_write(vm, 3, 0, 0x1C, 4, (uint32_t)(high >> 32));
	mmio_read(vm, high, 4, &claimed);
	assert_true(claimed);
}

static void test_hostile_bar_values(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");
	uint64_t mem = bar_of(vm, 3, 1), io = bar_of(vm, 3, 0), msix = bar_of(vm, 3, 4);
	bool claimed;

	/* Into RAM: refused (RAM always wins in KVM anyway), nothing decoded. */
	cfg_write(vm, 3, 0, 0x14, 4, 0x00100000);
	mmio_read(vm, 0x00100000, 4, &claimed);
	assert_false(claimed);
	assert_false(s->fn.bars[1].mapped);
	assert_true(s->fn.bars[1].warned);
	/* The register holds the guest's value; what follows the BAR asks where it is decoded. */
	uint64_t where = 1;
	assert_int_equal(pci_bar_addr(&s->fn, 1), 0x00100000);
	assert_false(pci_bar_mapped(&s->fn, 1, &where));
	assert_int_equal(where, 0);
	assert_true(pci_bar_mapped(&s->fn, 4, &where));
	assert_int_equal(where, msix);
	/* Onto ECAM, onto another BAR: refused, the other ranges stay intact. */
	cfg_write(vm, 3, 0, 0x14, 4, (uint32_t)ECAM_BASE);
	assert_int_equal(mmio_read(vm, ecam(0, 0, 0, 0), 4, NULL), HOSTBRIDGE_IDS);
	cfg_write(vm, 3, 0, 0x14, 4, (uint32_t)msix);
	assert_false(s->fn.bars[1].mapped);
	assert_int_equal(mmio_read(vm, msix + 12, 4, NULL), 1); /* still the MSI-X table (masked entry 0) */
	/* 64-bit BAR at the very top of the address space: overflow, refused. */
	cfg_write(vm, 3, 0, 0x18, 4, 0xFFFFFFFF);
	cfg_write(vm, 3, 0, 0x1C, 4, 0xFFFFFFFF);
	assert_false(s->fn.bars[2].mapped);
	/* I/O BARs past 64 KiB or onto the config ports: refused. */
	cfg_write(vm, 3, 0, 0x10, 4, 0xFFE0);
	assert_true(s->fn.bars[0].mapped); /* 0xFFE0 + 32 ends exactly at 64 KiB: fine */
	cfg_write(vm, 3, 0, 0x10, 4, 0x10000);
	assert_false(s->fn.bars[0].mapped);
	cfg_write(vm, 3, 0, 0x10, 4, 0xCE0);
	assert_false(s->fn.bars[0].mapped);
	outl(vm, 0xCF8, 0x80000000);
	assert_int_equal(inl(vm, 0xCF8), 0x80000000);
	/* Zero means unassigned: not decoded, no complaint. */
	cfg_write(vm, 3, 0, 0x10, 4, 0);
	assert_false(s->fn.bars[0].mapped);
	/* A sane value afterwards works again. */
	cfg_write(vm, 3, 0, 0x10, 4, (uint32_t)io);
	cfg_write(vm, 3, 0, 0x14, 4, (uint32_t)mem);
	assert_true(s->fn.bars[0].mapped && s->fn.bars[1].mapped);
	mmio_read(vm, mem, 4, &claimed);
	assert_true(claimed);
}

static void test_bar_add_errors(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");

	assert_int_equal(pci_bar_add(&s->fn, 1, PCI_BAR_MEM32, 4096, NULL, NULL), -1); /* in use */
	assert_int_equal(pci_bar_add(&s->fn, 3, PCI_BAR_MEM32, 4096, NULL, NULL), -1); /* upper half of BAR 2 */
	assert_int_equal(pci_bar_add(&s->fn, 5, PCI_BAR_MEM64, 4096, NULL, NULL), -1); /* no BAR 6 */
	assert_int_equal(pci_bar_add(&s->fn, 6, PCI_BAR_MEM32, 4096, NULL, NULL), -1);
	assert_int_equal(pci_bar_add(&s->fn, 5, PCI_BAR_IO | PCI_BAR_PREFETCH, 16, NULL, NULL), -1);
	assert_int_equal(pci_bar_add(&s->fn, 5, PCI_BAR_MEM32, 0, NULL, NULL), -1);
	assert_int_equal(pci_bar_add(&s->fn, 5, PCI_BAR_MEM32, 1ULL << 30, NULL, NULL), -1); /* window is 512 MiB */
	/* A size that is not a power of two is rounded up. */
	assert_int_equal(pci_bar_add(&s->fn, 5, PCI_BAR_MEM32, 5000, NULL, NULL), 0);
	assert_int_equal(s->fn.bars[5].size, 8192);
}

/* ---- capabilities ---- */

static void test_capability_walk(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");
	unsigned off, ids[8], n = 0;

	assert_true(cfg_read(vm, 3, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	for (off = cfg_read(vm, 3, 0, PCI_CAPABILITY_LIST, 1); off && n < 8; off = cfg_read(vm, 3, 0, off + 1, 1)) {
		assert_true(off >= 0x40 && off % 4 == 0);
		ids[n++] = cfg_read(vm, 3, 0, off, 1);
	}
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], PCI_CAP_ID_VNDR);
	assert_int_equal(ids[1], PCI_CAP_ID_MSIX);
	assert_int_equal(pci_cap_find(&s->fn, PCI_CAP_ID_VNDR), (unsigned)s->vndr_cap);
	assert_int_equal(pci_cap_find(&s->fn, PCI_CAP_ID_MSIX), s->fn.msix.cap);
	assert_int_equal(pci_cap_find(&s->fn, PCI_CAP_ID_MSI), 0);
	/* The vendor capability's body is read-only to the guest, except through the hooks. */
	assert_int_equal(cfg_read(vm, 3, 0, s->vndr_cap + 2, 1), 8);
	cfg_write(vm, 3, 0, s->vndr_cap + 2, 1, 0x77);
	assert_int_equal(cfg_read(vm, 3, 0, s->vndr_cap + 2, 1), 8);
	/* Filling the 256-byte space fails cleanly. */
	uint8_t big[200] = { 0 };
	assert_int_equal(pci_cap_add(&s->fn, PCI_CAP_ID_VNDR, big, sizeof(big)), -1);
	/* A looping chain (as a hostile restore could not make, but a buggy model could) ends the walk. */
	s->fn.cfg[s->fn.msix.cap + 1] = (uint8_t)s->vndr_cap;
	assert_int_equal(pci_cap_find(&s->fn, PCI_CAP_ID_MSI), 0);
	s->fn.cfg[s->fn.msix.cap + 1] = 0;
}

static void test_config_hooks(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");
	unsigned reg = (unsigned)s->vndr_cap + VNDR_REG;

	cfg_write(vm, 3, 0, reg, 4, 0x0F0F0F0F);
	assert_int_equal(s->hook_writes, 1);
	assert_int_equal(cfg_read(vm, 3, 0, reg, 4), 0xF0F0F0F0);
	assert_int_equal(mmio_read(vm, ecam(0, 3, 0, reg), 4, NULL), 0xF0F0F0F0);
}

/* ---- INTx ---- */

static void test_intx(void **state)
{
	static const char *const cfg[] = { "pci.0.3.0.device=pcitest", "pci.0.11.0.device=pcitest",
					   "pci.0.3.1.device=pcitest", NULL };
	struct vm *vm = new_vm(cfg);
	unsigned gsi = PCI_INTX_GSI_BASE + (3 + PCI_INTA - 1) % PCI_INTX_GSIS; /* 19: slot 3 and slot 11 share it */
	struct tdev *a, *b, *c;

	(void)state;
	assert_int_equal(attach(vm), 0);
	a = tdev_at(vm, "pci.0.3.0"), b = tdev_at(vm, "pci.0.11.0"), c = tdev_at(vm, "pci.0.3.1");
	assert_int_equal(a->fn.intx_gsi, gsi);
	assert_int_equal(b->fn.intx_gsi, gsi);
	assert_int_equal(cfg_read(vm, 3, 1, PCI_INTERRUPT_PIN, 1), 2); /* function 1: INTB */
	assert_int_equal(c->fn.intx_gsi, PCI_INTX_GSI_BASE + (3 + 2 - 1) % PCI_INTX_GSIS);
	assert_int_equal(cfg_read(vm, 3, 0, PCI_INTERRUPT_LINE, 1), gsi);

	pci_intx_assert(&a->fn);
	assert_int_equal(testvm_irq_level(gsi), 1);
	assert_true(cfg_read(vm, 3, 0, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	pci_intx_assert(&b->fn);
	pci_intx_deassert(&a->fn);
	assert_int_equal(testvm_irq_level(gsi), 1); /* b still holds the shared line */
	assert_false(cfg_read(vm, 3, 0, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	pci_intx_deassert(&b->fn);
	assert_int_equal(testvm_irq_level(gsi), 0);
	assert_int_equal(testvm_irq_edges(gsi), 1);

	/* INTx disable masks the line but not the status bit. */
	pci_intx_assert(&a->fn);
	cfg_write(vm, 3, 0, PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE | 3);
	assert_int_equal(testvm_irq_level(gsi), 0);
	assert_true(cfg_read(vm, 3, 0, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	cfg_write(vm, 3, 0, PCI_COMMAND, 2, 3);
	assert_int_equal(testvm_irq_level(gsi), 1);
	/* Enabling MSI-X takes the function off its INTx line. */
	cfg_write(vm, 3, 0, a->fn.msix.cap + 2, 2, 0x8000);
	assert_int_equal(testvm_irq_level(gsi), 0);
	cfg_write(vm, 3, 0, a->fn.msix.cap + 2, 2, 0);
	assert_int_equal(testvm_irq_level(gsi), 1);
	/* Destroying an asserting function releases the line. */
	free_vm(vm);
	assert_int_equal(testvm_irq_level(gsi), 0);
}

/* ---- MSI-X ---- */

#define MSI_ADDR 0xFEE01000ULL
#define MSI_DATA 0x4041

static void msix_program(struct vm *vm, uint64_t table, unsigned v, uint64_t addr, uint32_t data, bool masked)
{
	assert_true(mmio_write(vm, table + 16 * v, 4, (uint32_t)addr));
	assert_true(mmio_write(vm, table + 16 * v + 4, 4, (uint32_t)(addr >> 32)));
	assert_true(mmio_write(vm, table + 16 * v + 8, 4, data));
	assert_true(mmio_write(vm, table + 16 * v + 12, 4, masked));
}

static void test_msix_capability(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");
	unsigned cap = s->fn.msix.cap;

	assert_int_equal(cfg_read(vm, 3, 0, cap, 1), PCI_CAP_ID_MSIX);
	assert_int_equal(cfg_read(vm, 3, 0, cap + 2, 2), MSIX_VECTORS - 1);
	assert_int_equal(cfg_read(vm, 3, 0, cap + 4, 4), 0 | MSIX_BAR);
	assert_int_equal(cfg_read(vm, 3, 0, cap + 8, 4), MSIX_PBA | MSIX_BAR);
	/* Only enable and function mask are writable. */
	cfg_write(vm, 3, 0, cap + 2, 2, 0xFFFF);
	assert_int_equal(cfg_read(vm, 3, 0, cap + 2, 2), 0xC000 | (MSIX_VECTORS - 1));
	assert_true(pci_msix_enabled(&s->fn));
	cfg_write(vm, 3, 0, cap + 4, 4, 0x12345678);
	assert_int_equal(cfg_read(vm, 3, 0, cap + 4, 4), MSIX_BAR);
}

static void test_msix_table_and_delivery(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");
	uint64_t table = bar_of(vm, 3, MSIX_BAR), pba = table + MSIX_PBA;
	unsigned cap = s->fn.msix.cap;
	int efd = pci_msix_eventfd(&s->fn, 1);
	uint64_t addr;
	uint32_t data;

	assert_true(efd >= 0);
	assert_int_equal(pci_msix_eventfd(&s->fn, MSIX_VECTORS), -1);
	/* Power-on: every vector masked, table zero, MSI-X off: notify refuses. */
	assert_int_equal(mmio_read(vm, table + 16 + 12, 4, NULL), 1);
	assert_int_equal(mmio_read(vm, table + 16, 8, NULL), 0);
	assert_int_equal(pci_msix_notify(&s->fn, 1), -1);
	assert_int_equal(pci_msix_notify(&s->fn, MSIX_VECTORS), -1);

	/* Program vector 1 (64-bit write of the address), keep it masked, enable MSI-X. */
	assert_true(mmio_write(vm, table + 16, 8, MSI_ADDR));
	assert_true(mmio_write(vm, table + 16 + 8, 4, MSI_DATA));
	assert_int_equal(mmio_read(vm, table + 16, 4, NULL), (uint32_t)MSI_ADDR);
	assert_int_equal(mmio_read(vm, table + 16 + 8, 4, NULL), MSI_DATA);
	cfg_write(vm, 3, 0, cap + 2, 2, 0x8000);
	/* Masked: the notification becomes a pending bit, nothing is sent. */
	assert_int_equal(pci_msix_notify(&s->fn, 1), 0);
	assert_int_equal(efd_count(efd), 0);
	assert_int_equal(mmio_read(vm, pba, 8, NULL), 1u << 1);
	/* The PBA is read-only. */
	mmio_write(vm, pba, 8, 0);
	assert_int_equal(mmio_read(vm, pba, 8, NULL), 1u << 1);
	/* Unmasking routes the vector and delivers the pending message. */
	assert_true(mmio_write(vm, table + 16 + 12, 4, 0));
	assert_int_equal(vm_irq_msi_get(vm, (unsigned)s->fn.msix.vec[1].gsi, &addr, &data), 0);
	assert_int_equal(addr, MSI_ADDR);
	assert_int_equal(data, MSI_DATA);
	assert_int_equal(efd_count(efd), 1);
	assert_int_equal(mmio_read(vm, pba, 8, NULL), 0);
	/* Unmasked: each notification is one message. */
	assert_int_equal(pci_msix_notify(&s->fn, 1), 0);
	assert_int_equal(pci_msix_notify(&s->fn, 1), 0);
	assert_int_equal(efd_count(efd), 2);
	/* Function mask: pending again, delivered on clearing it. */
	cfg_write(vm, 3, 0, cap + 2, 2, 0xC000);
	assert_int_equal(pci_msix_notify(&s->fn, 1), 0);
	assert_int_equal(efd_count(efd), 0);
	assert_int_equal(mmio_read(vm, pba, 4, NULL), 1u << 1);
	cfg_write(vm, 3, 0, cap + 2, 2, 0x8000);
	assert_int_equal(efd_count(efd), 1);
	/* A writer of the eventfd while the vector is masked: the count becomes the pending bit. */
	assert_true(mmio_write(vm, table + 16 + 12, 4, 1));
	uint64_t one = 1;
	assert_int_equal(write(efd, &one, sizeof(one)), sizeof(one));
	assert_int_equal(mmio_read(vm, pba, 8, NULL), 1u << 1);
	assert_int_equal(efd_count(efd), 0);
	assert_true(mmio_write(vm, table + 16 + 12, 4, 0));
	assert_int_equal(efd_count(efd), 1);
	/* Changing the message updates the route. */
	msix_program(vm, table, 1, MSI_ADDR + 0x2000, MSI_DATA + 1, false);
	assert_int_equal(vm_irq_msi_get(vm, (unsigned)s->fn.msix.vec[1].gsi, &addr, &data), 0);
	assert_int_equal(addr, MSI_ADDR + 0x2000);
	assert_int_equal(data, MSI_DATA + 1);
	/* Reserved vector control bits read as zero. */
	assert_true(mmio_write(vm, table + 16 + 12, 4, 0xFFFFFFFE));
	assert_int_equal(mmio_read(vm, table + 16 + 12, 4, NULL), 0);
	/* Disabling MSI-X: notify refuses again. */
	cfg_write(vm, 3, 0, cap + 2, 2, 0);
	assert_int_equal(pci_msix_notify(&s->fn, 1), -1);
}

static void test_msix_odd_accesses(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");
	uint64_t table = bar_of(vm, 3, MSIX_BAR);
	bool claimed;

	/* Byte and word accesses of the table work byte-wise; an access straddling the table's end reads ones. */
	assert_true(mmio_write(vm, table + 2 * 16 + 8, 1, 0x5A));
	assert_true(mmio_write(vm, table + 2 * 16 + 9, 2, 0xA5A5));
	assert_int_equal(s->fn.msix.vec[2].data, 0xA5A55A);
	assert_int_equal(mmio_read(vm, table + MSIX_VECTORS * 16 - 4, 8, &claimed), 0xFFFFFFFFFFFFFFFFull);
	/* Between the table and the PBA: the BAR has no device handler, reads zero. */
	assert_int_equal(mmio_read(vm, table + 0x400, 4, &claimed), 0);
	assert_true(claimed);
	/* Past the PBA's last qword (4 vectors: 8 bytes). */
	assert_int_equal(mmio_read(vm, table + MSIX_PBA + 8, 4, NULL), 0);
}

/* ---- MSI ---- */

static void *save_device(struct vm *vm, const char *id, size_t *len);
static int restore_device(struct vm *vm, const char *id, const void *buf, size_t len);

#define MSI_CTRL 2
#define MSI_ADDR_LO 4
#define MSI_ADDR_HI 8
#define MSI_DATA_REG 12
#define MSI_MASK 16
#define MSI_PENDING 20

static struct vm *msi_vm(void)
{
	static const char *const cfg[] = { "pci.0.4.0.device=pcitest", "pci.0.4.0.msi=4", NULL };
	struct vm *vm = new_vm(cfg);

	assert_int_equal(attach(vm), 0);
	return vm;
}

/* Address, data, then enable with `granted` vectors (a power of 2). */
static void msi_program(struct vm *vm, unsigned cap, uint64_t addr, uint16_t data, unsigned granted)
{
	unsigned mme = 0;

	while ((1u << mme) < granted)
		mme++;
	cfg_write(vm, 4, 0, cap + MSI_ADDR_LO, 4, (uint32_t)addr);
	cfg_write(vm, 4, 0, cap + MSI_ADDR_HI, 4, (uint32_t)(addr >> 32));
	cfg_write(vm, 4, 0, cap + MSI_DATA_REG, 2, data);
	cfg_write(vm, 4, 0, cap + MSI_CTRL, 2, mme << 4 | 1);
}

static void test_msi_capability(void **state)
{
	struct vm *vm = msi_vm();
	struct tdev *s = tdev_at(vm, "pci.0.4.0");
	unsigned cap = s->fn.msi.cap;

	(void)state;
	assert_int_equal(pci_cap_find(&s->fn, PCI_CAP_ID_MSI), cap);
	assert_int_equal(pci_cap_find(&s->fn, PCI_CAP_ID_MSIX), s->fn.msix.cap);
	/* 64-bit, per-vector masking, 4 vectors capable (log2 = 2), off. */
	assert_int_equal(cfg_read(vm, 4, 0, cap + MSI_CTRL, 2), 0x0184);
	/* Only enable and Multiple Message Enable are writable in control. */
	cfg_write(vm, 4, 0, cap + MSI_CTRL, 2, 0xFFFF);
	assert_int_equal(cfg_read(vm, 4, 0, cap + MSI_CTRL, 2), 0x01F5);
	assert_true(pci_msi_enabled(&s->fn));
	cfg_write(vm, 4, 0, cap + MSI_CTRL, 2, 0);
	assert_false(pci_msi_enabled(&s->fn));
	/* The address is dword aligned, mask bits exist for 4 vectors, pending bits are read-only. */
	cfg_write(vm, 4, 0, cap + MSI_ADDR_LO, 4, 0xFEE01003);
	assert_int_equal(cfg_read(vm, 4, 0, cap + MSI_ADDR_LO, 4), 0xFEE01000);
	cfg_write(vm, 4, 0, cap + MSI_MASK, 4, 0xFFFFFFFF);
	assert_int_equal(cfg_read(vm, 4, 0, cap + MSI_MASK, 4), 0xF);
	cfg_write(vm, 4, 0, cap + MSI_PENDING, 4, 0xFFFFFFFF);
	assert_int_equal(cfg_read(vm, 4, 0, cap + MSI_PENDING, 4), 0);
	free_vm(vm);
}

static void test_msi_delivery(void **state)
{
	struct vm *vm = msi_vm();
	struct tdev *s = tdev_at(vm, "pci.0.4.0");
	unsigned cap = s->fn.msi.cap;
	uint64_t addr;
	uint32_t data;

	(void)state;
	/* Off: notify refuses. */
	assert_int_equal(pci_msi_notify(&s->fn, 0), -1);
	/* 4 vectors granted: vector 2 sends data | 2 to the programmed address, through its own route. */
	msi_program(vm, cap, MSI_ADDR, 0x4040, 4);
	assert_int_equal(pci_msi_notify(&s->fn, 2), 0);
	assert_int_equal(efd_count(s->fn.msi.vec[2].efd), 1);
	assert_int_equal(vm_irq_msi_get(vm, (unsigned)s->fn.msi.vec[2].gsi, &addr, &data), 0);
	assert_int_equal(addr, MSI_ADDR);
	assert_int_equal(data, 0x4042);
	assert_int_equal(pci_msi_notify(&s->fn, 4), -1);
	/* 2 granted: vector 2 does not exist for the guest; vector 1 sends data | 1. */
	msi_program(vm, cap, MSI_ADDR + 0x2000, 0x5050, 2);
	assert_int_equal(pci_msi_notify(&s->fn, 2), -1);
	assert_int_equal(vm_irq_msi_get(vm, (unsigned)s->fn.msi.vec[1].gsi, &addr, &data), 0);
	assert_int_equal(addr, MSI_ADDR + 0x2000);
	assert_int_equal(data, 0x5051);
	/* A masked vector becomes a pending bit, delivered when unmasked. */
	cfg_write(vm, 4, 0, cap + MSI_MASK, 4, 1u << 1);
	assert_int_equal(pci_msi_notify(&s->fn, 1), 0);
	assert_int_equal(efd_count(s->fn.msi.vec[1].efd), 0);
	assert_int_equal(cfg_read(vm, 4, 0, cap + MSI_PENDING, 4), 1u << 1);
	cfg_write(vm, 4, 0, cap + MSI_MASK, 4, 0);
	assert_int_equal(efd_count(s->fn.msi.vec[1].efd), 1);
	assert_int_equal(cfg_read(vm, 4, 0, cap + MSI_PENDING, 4), 0);
	/* More granted than the function has: only its 4 vectors exist. */
	cfg_write(vm, 4, 0, cap + MSI_CTRL, 2, 5 << 4 | 1);
	assert_int_equal(pci_msi_notify(&s->fn, 3), 0);
	assert_int_equal(pci_msi_notify(&s->fn, 4), -1);
	/* MSI on keeps INTx low; off lets the level through again. */
	pci_intx_assert(&s->fn);
	assert_int_equal(testvm_irq_level(s->fn.intx_gsi), 0);
	cfg_write(vm, 4, 0, cap + MSI_CTRL, 2, 0);
	assert_int_equal(testvm_irq_level(s->fn.intx_gsi), 1);
	pci_intx_deassert(&s->fn);
	assert_int_equal(pci_msi_notify(&s->fn, 0), -1);
	free_vm(vm);
}

static void test_msi_reset_and_restore(void **state)
{
	struct vm *vm = msi_vm(), *vm2;
	struct tdev *s = tdev_at(vm, "pci.0.4.0"), *s2;
	unsigned cap = s->fn.msi.cap;
	uint64_t addr;
	uint32_t data;
	size_t len;

	(void)state;
	/* A masked pending vector survives a snapshot and is delivered when unmasked. */
	msi_program(vm, cap, MSI_ADDR, 0x4040, 4);
	cfg_write(vm, 4, 0, cap + MSI_MASK, 4, 1u << 3);
	assert_int_equal(pci_msi_notify(&s->fn, 3), 0);
	uint8_t *buf = save_device(vm, "pci.0.4.0", &len);
	vm2 = msi_vm();
	s2 = tdev_at(vm2, "pci.0.4.0");
	assert_int_equal(restore_device(vm2, "pci.0.4.0", buf, len), 0);
	assert_true(pci_msi_enabled(&s2->fn));
	assert_int_equal(cfg_read(vm2, 4, 0, cap + MSI_PENDING, 4), 1u << 3);
	cfg_write(vm2, 4, 0, cap + MSI_MASK, 4, 0);
	assert_int_equal(efd_count(s2->fn.msi.vec[3].efd), 1);
	assert_int_equal(vm_irq_msi_get(vm2, (unsigned)s2->fn.msi.vec[3].gsi, &addr, &data), 0);
	assert_int_equal(addr, MSI_ADDR);
	assert_int_equal(data, 0x4043);
	free_vm(vm2);
	free(buf);
	/* Reset: off, nothing masked or pending. */
	assert_int_equal(pci_msi_notify(&s->fn, 3), 0);
	pci_function_reset(&s->fn);
	assert_false(pci_msi_enabled(&s->fn));
	assert_int_equal(cfg_read(vm, 4, 0, cap + MSI_CTRL, 2), 0x0184);
	assert_int_equal(cfg_read(vm, 4, 0, cap + MSI_MASK, 4), 0);
	assert_int_equal(cfg_read(vm, 4, 0, cap + MSI_PENDING, 4), 0);
	assert_int_equal(pci_msi_notify(&s->fn, 0), -1);
	free_vm(vm);
}

static void test_msi_init_errors(void **state)
{
	struct vm *vm = msi_vm();
	struct tdev *s = tdev_at(vm, "pci.0.4.0");
	struct pci_function *lpc = pci_bus_function(pci_bus_of(vm), 0, 0); /* the host bridge */

	(void)state;
	assert_int_equal(pci_msi_init(&s->fn, 4), -1); /* already has MSI */
	assert_int_equal(pci_msi_init(lpc, 0), -1);
	assert_int_equal(pci_msi_init(lpc, 3), -1);
	assert_int_equal(pci_msi_init(lpc, 64), -1);
	free_vm(vm);
}

static void test_msix_init_errors(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");
	struct pci_function *lpc = pci_bus_function(pci_bus_of(vm), 31, 0);

	assert_int_equal(pci_msix_init(&s->fn, 4, 5, 0, 0x800), -1); /* already has MSI-X */
	assert_int_equal(pci_msix_init(lpc, 0, 0, 0, 0x800), -1);
	assert_int_equal(pci_msix_init(lpc, 4, 0, 4, 0x800), -1);  /* misaligned */
	assert_int_equal(pci_msix_init(lpc, 4, 0, 0, 0x20), -1);   /* PBA inside the table */
	assert_int_equal(pci_msix_init(lpc, 4, 6, 0, 0x800), -1);
	assert_int_equal(pci_msix_init(lpc, 4000, 0, 0, 0x800), -1);
	/* Into an existing BAR that is too small. */
	assert_int_equal(pci_msix_init(&s->fn, 4, 1, 0, 0x1000), -1);
}

/* ---- bad configurations ---- */

static void expect_attach_fails(const char *const *cfg)
{
	struct vm *vm = new_vm(cfg);

	assert_int_equal(attach(vm), -1);
	free_vm(vm);
}

static void test_bad_configurations(void **state)
{
	static const char *const bus1[] = { "pci.1.3.0.device=pcitest", NULL };
	static const char *const no_fn0[] = { "pci.0.3.1.device=pcitest", NULL };
	static const char *const no_dev[] = { "pci.0.3.0.foo=1", NULL };
	static const char *const slot40[] = { "pci.0.40.0.device=pcitest", NULL };
	static const char *const func8[] = { "pci.0.3.8.device=pcitest", NULL };
	static const char *const notpci[] = { "pci.0.3.0.device=uart", NULL };
	static const char *const unknown[] = { "pci.0.3.0.device=nope", NULL };
	static const char *const junk[] = { "pci.x.device=lpc", NULL };
	static const char *const two_lpc[] = { "pci.0.30.0.device=lpc", "pci.0.31.0.device=lpc", NULL };
	static const char *const bad_vendor[] = { "pci.0.0.0.device=hostbridge", "pci.0.0.0.vendor=65536", NULL };

	(void)state;
	expect_attach_fails(bus1);
	expect_attach_fails(no_fn0);
	expect_attach_fails(no_dev);
	expect_attach_fails(slot40);
	expect_attach_fails(func8);
	expect_attach_fails(notpci);
	expect_attach_fails(unknown);
	expect_attach_fails(junk);
	expect_attach_fails(two_lpc);
	expect_attach_fails(bad_vendor);
}

static void test_multifunction_and_no_hostbridge(void **state)
{
	static const char *const cfg[] = { "pci.0.0.0.device=lpc", "pci.0.5.0.device=pcitest",
					   "pci.0.5.2.device=pcitest", NULL };
	struct vm *vm = new_vm(cfg);

	(void)state;
	assert_int_equal(attach(vm), 0);
	/* The user's device at 0:0.0 replaces the automatic host bridge. */
	assert_int_equal(cfg_read(vm, 0, 0, PCI_CLASS_DEVICE, 2), 0x0601);
	assert_int_equal(cfg_read(vm, 5, 0, PCI_HEADER_TYPE, 1), 0x80);
	assert_int_equal(cfg_read(vm, 5, 2, PCI_HEADER_TYPE, 1), 0x80);
	assert_int_equal(cfg_read(vm, 0, 0, PCI_HEADER_TYPE, 1), 0x00);
	/* Each function got its own BARs. */
	struct pci_function *f0 = pci_bus_function(pci_bus_of(vm), 5, 0), *f2 = pci_bus_function(pci_bus_of(vm), 5, 2);
	assert_int_not_equal(pci_bar_addr(f0, 1), pci_bar_addr(f2, 1));
	free_vm(vm);
}

/* A hostile guest: random config writes through both mechanisms and random BAR traffic. */
static void test_random_guest(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");
	static const unsigned sizes[] = { 1, 2, 4, 8 };
	unsigned seed = 12345;

	for (unsigned i = 0; i < 50000; i++) {
		unsigned r = (unsigned)rand_r(&seed), v = (unsigned)rand_r(&seed) * 2654435761u;
		unsigned slot = (r & 1) ? 3 : (r & 2) ? 0 : 31, size = sizes[(r >> 2) & 3];
		unsigned off = (unsigned)rand_r(&seed) % (r & 0x10 ? 0x1000 : 0x100);
		/* Half the time aim at the interesting registers: COMMAND, BARs, the MSI-X control. */
		if (r & 0x20)
			off = (r & 0x40) ? PCI_BASE_ADDRESS_0 + ((r >> 8) % 6) * 4 : (r & 0x80) ? s->fn.msix.cap + 2u : PCI_COMMAND;
		if (r & 0x100) {
			mmio_write(vm, ecam(0, slot, 0, off), size, (uint64_t)v << 32 | v);
		} else if (size < 8) {
			outl(vm, 0xCF8, conf1_addr(0, slot, 0, off));
			testvm_out(vm, (uint16_t)(0xCFC + (off & 3)), size > 4 - (off & 3) ? 1 : size, v);
		}
		/* Traffic to wherever the BARs are now, including the MSI-X table and PBA. */
		uint64_t bar = s->fn.bars[(r >> 12) % 5].addr + ((unsigned)rand_r(&seed) % 0x1000);
		if (r & 0x200)
			mmio_write(vm, bar, size, v);
		else
			mmio_read(vm, bar, size, NULL);
		if ((r & 0x3FF) == 0x3FF)
			pci_msix_notify(&s->fn, (r >> 10) % (MSIX_VECTORS + 1));
		if ((r & 0x7FF) == 0x7FF)
			pci_intx_set(&s->fn, (r >> 11) & 1);
	}
	/* Still a working bus: identity intact, BARs placeable again. */
	assert_int_equal(cfg_read(vm, 3, 0, PCI_VENDOR_ID, 4), TEST_DEVICE << 16 | TEST_VENDOR);
	assert_int_equal(mmio_read(vm, ecam(0, 0, 0, 0), 4, NULL), HOSTBRIDGE_IDS);
	cfg_write(vm, 3, 0, 0x14, 4, (uint32_t)MMIO32_BASE + 0x400000);
	cfg_write(vm, 3, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	bool claimed;
	mmio_read(vm, MMIO32_BASE + 0x400000, 4, &claimed);
	assert_true(claimed);
}

/* ---- reset and snapshots ---- */

static void test_function_reset(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");
	uint64_t mem = bar_of(vm, 3, 1), table = bar_of(vm, 3, MSIX_BAR);
	bool claimed;

	cfg_write(vm, 3, 0, 0x14, 4, (uint32_t)(MMIO32_BASE + 0x200000));
	msix_program(vm, table, 0, MSI_ADDR, MSI_DATA, false);
	cfg_write(vm, 3, 0, s->fn.msix.cap + 2, 2, 0x8000);
	pci_intx_assert(&s->fn);
	devices_reset_all(vm);
	assert_int_equal(bar_of(vm, 3, 1), mem);
	mmio_read(vm, mem, 4, &claimed);
	assert_true(claimed);
	assert_false(pci_msix_enabled(&s->fn));
	assert_int_equal(mmio_read(vm, table + 12, 4, NULL), 1);
	assert_int_equal(mmio_read(vm, table, 4, NULL), 0);
	assert_int_equal(testvm_irq_level(s->fn.intx_gsi), 0);
	assert_int_equal(cfg_read(vm, 3, 0, PCI_COMMAND, 2) & 3, 3);
}

static void *save_device(struct vm *vm, const char *id, size_t *len)
{
	struct device *d = device_find(vm, id);
	struct state_writer *w = state_writer_new();
	uint8_t *buf;

	assert_int_equal(d->model->save(d, w), 0);
	assert_int_equal(state_writer_finish(w, &buf, len), 0);
	state_writer_free(w);
	return buf;
}

static int restore_device(struct vm *vm, const char *id, const void *buf, size_t len)
{
	struct device *d = device_find(vm, id);
	struct state_reader *r = state_reader_new(buf, len);
	int rc;

	assert_non_null(r);
	rc = d->model->restore(d, r, d->model->state_version);
	state_reader_free(r);
	return rc;
}

static void test_save_restore(void **state)
{
	struct vm *vm = *state, *vm2;
	struct tdev *s = tdev_at(vm, "pci.0.3.0"), *s2;
	uint64_t table = bar_of(vm, 3, MSIX_BAR), to = MMIO32_BASE + 0x300000, addr;
	uint32_t data;
	size_t len, blen;
	bool claimed;

	/* Guest-made state: a moved BAR, MSI-X programmed and enabled, a pending masked vector, INTx high. */
	cfg_write(vm, 3, 0, 0x14, 4, (uint32_t)to);
	cfg_write(vm, 3, 0, PCI_LATENCY_TIMER, 1, 0x20);
	msix_program(vm, table, 0, MSI_ADDR, MSI_DATA, false);
	msix_program(vm, table, 2, MSI_ADDR, MSI_DATA + 2, true);
	cfg_write(vm, 3, 0, s->fn.msix.cap + 2, 2, 0x8000);
	assert_int_equal(pci_msix_notify(&s->fn, 2), 0);
	pci_intx_assert(&s->fn);
	outl(vm, 0xCF8, conf1_addr(0, 3, 0, 0x10));
	uint8_t *buf = save_device(vm, "pci.0.3.0", &len);
	uint8_t *bbuf = save_device(vm, "platform.pci", &blen);

	/* A fresh machine built from the same configuration takes it all back. */
	vm2 = std_vm();
	s2 = tdev_at(vm2, "pci.0.3.0");
	testvm_clear_records();
	assert_int_equal(restore_device(vm2, "platform.pci", bbuf, blen), 0);
	assert_int_equal(restore_device(vm2, "pci.0.3.0", buf, len), 0);
	assert_int_equal(inl(vm2, 0xCF8), conf1_addr(0, 3, 0, 0x10));
	assert_int_equal(bar_of(vm2, 3, 1), to);
	mmio_read(vm2, to, 4, &claimed);
	assert_true(claimed);
	assert_int_equal(cfg_read(vm2, 3, 0, PCI_LATENCY_TIMER, 1), 0x20);
	assert_true(pci_msix_enabled(&s2->fn));
	assert_int_equal(vm_irq_msi_get(vm2, (unsigned)s2->fn.msix.vec[0].gsi, &addr, &data), 0);
	assert_int_equal(addr, MSI_ADDR);
	assert_int_equal(data, MSI_DATA);
	assert_int_equal(mmio_read(vm2, table + MSIX_PBA, 8, NULL), 1u << 2);
	assert_int_equal(testvm_irq_level(s2->fn.intx_gsi), 0); /* MSI-X on: INTx held low */
	assert_true(cfg_read(vm2, 3, 0, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	/* Unmasking the pending vector delivers it. */
	assert_true(mmio_write(vm2, table + 2 * 16 + 12, 4, 0));
	assert_int_equal(efd_count(pci_msix_eventfd(&s2->fn, 2)), 1);
	free_vm(vm2);
	free(buf);
	free(bbuf);
}

static void test_restore_keeps_identity(void **state)
{
	struct vm *vm = *state;
	struct tdev *s = tdev_at(vm, "pci.0.3.0");
	size_t len;
	uint8_t *buf;

	/* A snapshot whose read-only bytes were tampered with: IDs, BAR type bits, capability pointer. */
	s->fn.cfg[PCI_VENDOR_ID] ^= 0xFF;
	s->fn.cfg[0x14] |= 0x1;
	s->fn.cfg[PCI_CAPABILITY_LIST] = 0x44;
	buf = save_device(vm, "pci.0.3.0", &len);
	s->fn.cfg[PCI_VENDOR_ID] ^= 0xFF;
	s->fn.cfg[0x14] &= ~0x1;
	s->fn.cfg[PCI_CAPABILITY_LIST] = (uint8_t)s->vndr_cap;
	assert_int_equal(restore_device(vm, "pci.0.3.0", buf, len), 0);
	assert_int_equal(cfg_read(vm, 3, 0, PCI_VENDOR_ID, 2), TEST_VENDOR);
	assert_int_equal(cfg_read(vm, 3, 0, 0x14, 4) & 0xF, 0);
	assert_int_equal(cfg_read(vm, 3, 0, PCI_CAPABILITY_LIST, 1), s->vndr_cap);
	free(buf);
	/* A section without PCI state is refused. */
	struct state_writer *w = state_writer_new();
	state_put_u64(w, "other", 1);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);
	assert_int_equal(restore_device(vm, "pci.0.3.0", buf, len), -1);
	free(buf);
}

/* ---- the platform's chipset ---- */

/*
 * What OVMF does to the Q35 MCH and the ICH9 LPC bridge (PlatformPei, the
 * timer library, the boot manager) and what it must read back.
 */
static void test_q35_chipset(void **state)
{
	struct vm *vm = *state;
	struct device *hb = device_find(vm, "pci.0.0.0"), *lpc = device_find(vm, "pci.0.31.0");
	size_t len;
	uint8_t *buf;

	/* MCH: no interrupt pin; PCIEXBAR says what ECAM decodes. */
	assert_int_equal(cfg_read(vm, 0, 0, PCI_INTERRUPT_PIN, 1), 0);
	assert_int_equal(cfg_read(vm, 0, 0, 0x60, 4), 0xB0000001);
	assert_int_equal(cfg_read(vm, 0, 0, 0x64, 4), 0);
	/* PlatformPei: disable, high dword, then base 0xB0000000, 256 MiB, enabled. ECAM never moves. */
	cfg_write(vm, 0, 0, 0x60, 4, 0);
	cfg_write(vm, 0, 0, 0x64, 4, 0);
	assert_int_equal(cfg_read(vm, 0, 0, 0x60, 4), 0);
	assert_int_equal(mmio_read(vm, ecam(0, 0, 0, 0), 4, NULL), HOSTBRIDGE_IDS);
	cfg_write(vm, 0, 0, 0x60, 4, 0xB0000001);
	assert_int_equal(cfg_read(vm, 0, 0, 0x60, 4), 0xB0000001);
	assert_int_equal(mmio_read(vm, ecam(0, 31, 0, 0), 4, NULL), LPC_IDS);
	/* Another base: stored, ECAM stays. */
	cfg_write(vm, 0, 0, 0x60, 4, 0xE0000001);
	assert_int_equal(cfg_read(vm, 0, 0, 0x60, 4), 0xE0000001);
	assert_int_equal(mmio_read(vm, ecam(0, 0, 0, 0), 4, NULL), HOSTBRIDGE_IDS);
	/* The VBE shim's read-modify-write of PAM1. */
	cfg_write(vm, 0, 0, 0x91, 1, cfg_read(vm, 0, 0, 0x91, 1) | 3);
	assert_int_equal(cfg_read(vm, 0, 0, 0x91, 1), 3);

	/* LPC: the PM block already enabled at 0x600, so OVMF keeps it; its timer is at PMBASE + 8. */
	assert_int_equal(cfg_read(vm, 31, 0, 0x44, 1), 0x80);
	assert_int_equal(cfg_read(vm, 31, 0, 0x40, 4), 0x601);
	assert_int_equal((cfg_read(vm, 31, 0, 0x40, 4) & ~1u) + 8, PORT_ACPI_PM_TMR);
	/* Bits 15:7 are the base; bit 0 reads 1 whatever is written. */
	cfg_write(vm, 31, 0, 0x40, 4, 0xFFFFFFFF);
	assert_int_equal(cfg_read(vm, 31, 0, 0x40, 4), 0xFF81);
	cfg_write(vm, 31, 0, 0x40, 4, 0);
	assert_int_equal(cfg_read(vm, 31, 0, 0x40, 4), 0x1);
	cfg_write(vm, 31, 0, 0x44, 1, 0xFF);
	assert_int_equal(cfg_read(vm, 31, 0, 0x44, 1), 0x87);
	/* PIRQ routing: disabled at power-on, the boot manager's values stick. */
	assert_int_equal(cfg_read(vm, 31, 0, 0x60, 4), 0x80808080);
	assert_int_equal(cfg_read(vm, 31, 0, 0x68, 4), 0x80808080);
	cfg_write(vm, 31, 0, 0x60, 4, 0x0B0B0A0A);
	cfg_write(vm, 31, 0, 0x68, 4, 0x0B0B0A0A);
	assert_int_equal(cfg_read(vm, 31, 0, 0x60, 4), 0x0B0B0A0A);
	assert_int_equal(cfg_read(vm, 31, 0, 0x68, 4), 0x0B0B0A0A);
	/* RCBA: OVMF's write is dropped, so no driver looks for chipset registers behind it. */
	cfg_write(vm, 31, 0, 0xF0, 4, 0xFED1C001);
	assert_int_equal(cfg_read(vm, 31, 0, 0xF0, 4), 0);

	/* A snapshot carries the guest's values; a reset brings back the power-on ones. */
	buf = save_device(vm, "pci.0.31.0", &len);
	lpc->model->reset(lpc);
	hb->model->reset(hb);
	assert_int_equal(cfg_read(vm, 31, 0, 0x40, 4), 0x601);
	assert_int_equal(cfg_read(vm, 31, 0, 0x60, 4), 0x80808080);
	assert_int_equal(cfg_read(vm, 0, 0, 0x60, 4), 0xB0000001);
	assert_int_equal(cfg_read(vm, 0, 0, 0x91, 1), 0);
	assert_int_equal(restore_device(vm, "pci.0.31.0", buf, len), 0);
	assert_int_equal(cfg_read(vm, 31, 0, 0x40, 4), 0x1);
	assert_int_equal(cfg_read(vm, 31, 0, 0x60, 4), 0x0B0B0A0A);
	free(buf);
}

/* With `pcie` on q35 the capability stays clear of PCIEXBAR and PAM. */
static void test_q35_pcie_hostbridge(void **state)
{
	static const char *const cfg[] = { "pci.0.0.0.device=hostbridge", "pci.0.0.0.pcie=true", NULL };
	struct vm *vm = new_vm(cfg);
	unsigned cap;

	(void)state;
	assert_int_equal(attach(vm), 0);
	cap = pci_cap_find(pci_bus_function(pci_bus_of(vm), 0, 0), PCI_CAP_ID_EXP);
	assert_true(cap >= 0xA0);
	assert_int_equal(cfg_read(vm, 0, 0, 0x60, 4), 0xB0000001);
	free_vm(vm);
}

/* A snapshot from before q35 restores into hyve's old layout: old ids, ECAM and window, no chipset registers. */
static void test_legacy_platform(void **state)
{
	static const char *const cfg[] = { "pci.0.3.0.device=pcitest", "pci.0.31.0.device=lpc", NULL };
	struct vm *vm = testvm_new_platform(4ULL << 30, "legacy");
	bool claimed;

	(void)state;
	for (const char *const *c = cfg; *c; c++)
		assert_int_equal(config_set_assignment(vm->cfg, *c), 0);
	assert_int_equal(attach(vm), 0);
	assert_int_equal(vm->mem.regions[0].size, 0xC0000000ULL);
	assert_int_equal(cfg_read(vm, 0, 0, PCI_VENDOR_ID, 4), 0x12751275);
	assert_int_equal(cfg_read(vm, 31, 0, PCI_VENDOR_ID, 4), 0x12761275);
	assert_int_equal(mmio_read(vm, 0xE0000000ULL, 4, &claimed), 0x12751275);
	assert_true(claimed);
	mmio_read(vm, ECAM_BASE, 4, &claimed);
	assert_false(claimed);
	assert_int_equal(cfg_read(vm, 0, 0, 0x60, 4), 0);
	assert_int_equal(cfg_read(vm, 31, 0, 0x40, 4), 0);
	cfg_write(vm, 31, 0, 0x40, 4, 0xFFFFFFFF);
	assert_int_equal(cfg_read(vm, 31, 0, 0x40, 4), 0);
	assert_true(bar_of(vm, 3, 1) >= 0xC0000000ULL && bar_of(vm, 3, 1) < 0xE0000000ULL);
	free_vm(vm);
}

/* The user's ids still win over the platform's. */
static void test_hostbridge_ids_override(void **state)
{
	static const char *const cfg[] = { "pci.0.0.0.device=hostbridge", "pci.0.0.0.vendor=0x1234",
					   "pci.0.0.0.devid=0x5678", NULL };
	struct vm *vm = new_vm(cfg);

	(void)state;
	assert_int_equal(attach(vm), 0);
	assert_int_equal(cfg_read(vm, 0, 0, PCI_VENDOR_ID, 4), 0x56781234);
	free_vm(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_conf1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conf1_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ecam, setup, teardown),
		cmocka_unit_test(test_pcie_hostbridge),
		cmocka_unit_test(test_reset_register_shares_cf8),
		cmocka_unit_test_setup_teardown(test_initial_placement, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_bar_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_add_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capability_walk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_hooks, setup, teardown),
		cmocka_unit_test(test_intx),
		cmocka_unit_test_setup_teardown(test_msix_capability, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_table_and_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_odd_accesses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_init_errors, setup, teardown),
		cmocka_unit_test(test_msi_capability),
		cmocka_unit_test(test_msi_delivery),
		cmocka_unit_test(test_msi_reset_and_restore),
		cmocka_unit_test(test_msi_init_errors),
		cmocka_unit_test(test_bad_configurations),
		cmocka_unit_test(test_multifunction_and_no_hostbridge),
		cmocka_unit_test_setup_teardown(test_random_guest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_function_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_keeps_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_q35_chipset, setup, teardown),
		cmocka_unit_test(test_q35_pcie_hostbridge),
		cmocka_unit_test(test_legacy_platform),
		cmocka_unit_test(test_hostbridge_ids_override),
	};

	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
