#include "linux.h"

#include <asm/bootparam.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "boot/acpi.h"
#include "boot/bzimage.h"
#include "boot/e820.h"
#include "boot/layout.h"
#include "boot/mptable.h"
#include "core/config.h"
#include "core/device.h"
#include "core/display.h"
#include "core/log.h"
#include "core/options.h"
#include "core/vcpu.h"
#include "core/vm.h"

#define BOOT_CS 0x10
#define BOOT_DS 0x18
#define LOADER_TYPE_UNDEFINED 0xff
#define PAGE_SIZE 4096ULL
#define INITRD_ALIGN (2ULL << 20)

#define PTE_PRESENT 0x1ULL
#define PTE_WRITE 0x2ULL
#define PTE_LARGE 0x80ULL

#define CR0_PE 0x1ULL
#define CR0_ET 0x10ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

/*
 * The kernel and initrd files, opened once. With reboot=restart they stay
 * open (vm->linux_boot) so that a guest reset loads them again without
 * opening anything: the event loop that does it may not (core/sandbox.c).
 */
struct linux_boot {
	int kernel_fd, initrd_fd; /* initrd_fd -1: none */
	const char *kernel, *initrd; /* paths, for messages */
};

static int open_image(const char *path, const char *what)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0) {
		log_error("cannot open %s %s: %s", what, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_error("%s %s is not a regular file", what, path);
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads a whole open file from its start; NULL after logging. `what` names it in errors. */
static uint8_t *read_file(int fd, const char *path, const char *what, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t done = 0;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_error("%s %s is not a regular file", what, path);
		return NULL;
	}
	buf = malloc(st.st_size ? st.st_size : 1);
	while (buf && done < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + done, st.st_size - done, (off_t)done);
		if (n <= 0) {
			log_error("cannot read %s %s: %s", what, path, n < 0 ? strerror(errno) : "file shrank");
			free(buf);
			return NULL;
		}
		done += n;
	}
	*len = done;
	return buf;
}

static int load_kernel(struct vm *vm, const struct linux_boot *lb, struct boot_params *bp, uint64_t *kernel_end)
{
	const char *path = lb->kernel;
	size_t len;
	uint8_t *image = read_file(lb->kernel_fd, path, "kernel", &len), *dst;
	struct bzimage bz;
	const char *why;
	size_t header_len;
	int rc = -1;

	if (!image)
		return -1;
	if (bzimage_parse(image, len, &bz, &why) < 0) {
		log_error("kernel %s: %s", path, why);
		goto out;
	}
	*kernel_end = LAYOUT_KERNEL_LOAD + (bz.init_size > bz.kernel_size ? bz.init_size : bz.kernel_size);
	dst = mem_gpa_to_hva(&vm->mem, LAYOUT_KERNEL_LOAD, *kernel_end - LAYOUT_KERNEL_LOAD);
	if (!dst) {
		log_error("kernel %s needs %u bytes of RAM above 1 MiB: give the guest more memory", path,
			  bz.init_size);
		goto out;
	}
	memcpy(dst, bz.kernel, bz.kernel_size);
	/* The setup header runs from 0x1f1 to the end given by the jump at 0x200. */
	header_len = 0x202 + image[0x201] - 0x1f1;
	if (header_len > sizeof(bp->hdr))
		header_len = sizeof(bp->hdr);
	memcpy(&bp->hdr, image + 0x1f1, header_len);
	bp->hdr.cmdline_size = bz.cmdline_size;
	rc = 0;
out:
	free(image);
	return rc;
}

static int load_cmdline(struct vm *vm, const char *cmdline, struct boot_params *bp)
{
	size_t len = strlen(cmdline);
	uint32_t max = bp->hdr.cmdline_size ? bp->hdr.cmdline_size : 255;
	char *dst;

	if (len > max || len >= LAYOUT_CMDLINE_MAX) {
		log_error("kernel command line is %zu bytes; this kernel accepts at most %u", len, max);
		return -1;
	}
	dst = mem_gpa_to_hva(&vm->mem, LAYOUT_CMDLINE, len + 1);
	memcpy(dst, cmdline, len + 1);
	bp->hdr.cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE;
	return 0;
}

/* Places the initrd as high as the kernel allows, below the PCI hole. */
static int load_initrd(struct vm *vm, const struct linux_boot *lb, struct boot_params *bp, uint64_t kernel_end)
{
	const char *path = lb->initrd;
	uint64_t top = mem_lowmem_size(&vm->mem), gpa;
	size_t len;
	uint8_t *data = read_file(lb->initrd_fd, path, "initrd", &len);
	void *dst;

	if (!data)
		return -1;
	if (bp->hdr.initrd_addr_max && top > (uint64_t)bp->hdr.initrd_addr_max + 1)
		top = (uint64_t)bp->hdr.initrd_addr_max + 1;
	gpa = len <= top ? ((top - len) & ~(INITRD_ALIGN - 1)) : 0;
	if (len > top || gpa < kernel_end) {
		log_error("initrd %s (%zu bytes) does not fit in guest memory beside the kernel", path, len);
		free(data);
		return -1;
	}
	dst = mem_gpa_to_hva(&vm->mem, gpa, len);
	memcpy(dst, data, len);
	free(data);
	bp->hdr.ramdisk_image = (uint32_t)gpa;
	bp->hdr.ramdisk_size = (uint32_t)len;
	return 0;
}

static void fill_e820(struct vm *vm, struct boot_params *bp)
{
	struct e820_map map;

	e820_build(&vm->mem, vm->platform, &map);
	for (unsigned i = 0; i < map.count && i < E820_MAX_ENTRIES_ZEROPAGE; i++) {
		bp->e820_table[i].addr = map.entries[i].addr;
		bp->e820_table[i].size = map.entries[i].size;
		bp->e820_table[i].type = map.entries[i].type;
		bp->e820_entries = i + 1;
	}
}

/* Identity map of the low 4 GiB with 2 MiB pages, enough for the kernel's own setup. */
static void build_page_tables(struct vm *vm)
{
	uint64_t *pml4 = mem_gpa_to_hva(&vm->mem, LAYOUT_PML4, PAGE_SIZE);
	uint64_t *pdpt = mem_gpa_to_hva(&vm->mem, LAYOUT_PDPT, PAGE_SIZE);
	uint64_t *pd = mem_gpa_to_hva(&vm->mem, LAYOUT_PD, 4 * PAGE_SIZE);

	memset(pml4, 0, PAGE_SIZE);
	memset(pdpt, 0, PAGE_SIZE);
	pml4[0] = LAYOUT_PDPT | PTE_PRESENT | PTE_WRITE;
	for (unsigned i = 0; i < 4; i++)
		pdpt[i] = (LAYOUT_PD + i * PAGE_SIZE) | PTE_PRESENT | PTE_WRITE;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | PTE_PRESENT | PTE_WRITE | PTE_LARGE;
}

static void build_gdt(struct vm *vm)
{
	uint64_t *gdt = mem_gpa_to_hva(&vm->mem, LAYOUT_GDT, 4 * sizeof(uint64_t));

	gdt[0] = 0;
	gdt[1] = 0;
	gdt[BOOT_CS / 8] = 0x00af9b000000ffffULL; /* 64-bit code, present, DPL 0 */
	gdt[BOOT_DS / 8] = 0x00cf93000000ffffULL; /* flat data, present, DPL 0 */
}

static struct kvm_segment flat_segment(uint16_t selector, uint8_t type, bool code)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = selector, .type = type, .present = 1,
		.dpl = 0, .db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0, .g = 1,
	};
}

static int enter_long_mode(struct vcpu *bsp)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = LAYOUT_KERNEL_LOAD + 0x200, /* 64-bit entry: load address + 0x200 */
		.rsi = LAYOUT_BOOT_PARAMS,
		.rflags = 0x2,
	};

	if (ioctl(bsp->fd, KVM_GET_SREGS, &sregs) < 0)
		return -1;
	sregs.cs = flat_segment(BOOT_CS, 0xb, true);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_segment(BOOT_DS, 0x3, false);
	sregs.gdt.base = LAYOUT_GDT;
	sregs.gdt.limit = 4 * 8 - 1;
	sregs.cr3 = LAYOUT_PML4;
	sregs.cr4 |= CR4_PAE;
	sregs.cr0 |= CR0_PE | CR0_PG | CR0_ET;
	sregs.efer |= EFER_LME | EFER_LMA;
	if (ioctl(bsp->fd, KVM_SET_SREGS, &sregs) < 0 || ioctl(bsp->fd, KVM_SET_REGS, &regs) < 0)
		return -1;
	return 0;
}

/*
 * VGA text mode as a BIOS leaves it after mode 3, for vgacon: a colour VGA
 * (an EGA/VGA BIOS answer in ega_bx, not 0x10), the cell grid, the font
 * height and where the cursor is. vgacon finds the CRTC at 0x3D4 and the
 * text at 0xB8000; e820 already keeps 0x9F000-0xFFFFF out of RAM.
 */
static void fill_text_info(const struct display_screen *d, struct screen_info *si)
{
	si->orig_video_isVGA = VIDEO_TYPE_VGAC;
	si->orig_video_mode = 3;
	si->orig_video_cols = (uint8_t)d->cols;
	si->orig_video_lines = (uint8_t)d->rows;
	si->orig_video_points = (uint16_t)d->font_height;
	si->orig_video_ega_bx = 0x0003; /* 256 KiB of video memory, colour */
	si->orig_x = (uint8_t)d->cursor_x;
	si->orig_y = (uint8_t)d->cursor_y;
}

/* Describes the display for the kernel's boot console: text mode for vgacon, or the linear framebuffer for vesafb. */
static void fill_screen_info(struct vm *vm, struct boot_params *bp)
{
	struct display_screen d;
	struct screen_info *si = &bp->screen_info;

	if (display_screen(vm, &d) < 0)
		return;
	if (d.text) {
		fill_text_info(&d, si);
		return;
	}
	si->orig_video_isVGA = VIDEO_TYPE_VLFB;
	si->lfb_base = (uint32_t)d.base;
	si->ext_lfb_base = (uint32_t)(d.base >> 32);
	if (d.base >> 32)
		si->capabilities |= VIDEO_CAPABILITY_64BIT_BASE;
	si->lfb_size = (uint32_t)(d.size >> 16); /* 64 KiB units for VIDEO_TYPE_VLFB */
	si->lfb_width = (uint16_t)d.width;
	si->lfb_height = (uint16_t)d.height;
	si->lfb_depth = (uint16_t)d.bpp;
	si->lfb_linelength = (uint16_t)d.stride;
	si->red_size = 8, si->red_pos = 16;
	si->green_size = 8, si->green_pos = 8;
	si->blue_size = 8, si->blue_pos = 0;
	si->rsvd_size = 8, si->rsvd_pos = 24;
	si->pages = 1;
}

static const struct option_decl boot_options[] = {
	{ .name = "boot.kernel", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING | OPTION_BOOT_ONLY,
	  .help = "Linux bzImage to boot directly" },
	{ .name = "boot.initrd", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING | OPTION_BOOT_ONLY,
	  .help = "initial ramdisk" },
	{ .name = "boot.cmdline", .type = OPTION_STRING, .def = "", .flags = OPTION_BOOT_ONLY,
	  .help = "kernel command line" },
	{ 0 },
};
OPTIONS(boot_options)

void linux_boot_free(struct vm *vm)
{
	struct linux_boot *lb = vm->linux_boot;

	if (!lb)
		return;
	if (lb->kernel_fd >= 0)
		close(lb->kernel_fd);
	if (lb->initrd_fd >= 0)
		close(lb->initrd_fd);
	free(lb);
	vm->linux_boot = NULL;
}

int linux_boot_open(struct vm *vm)
{
	struct linux_boot *lb;

	if (!opt_str(vm->cfg, "boot.kernel")) {
		log_error("no kernel to boot: give one with --kernel FILE (boot.kernel)");
		return -1;
	}
	lb = calloc(1, sizeof(*lb));
	if (!lb)
		return -1;
	lb->kernel = opt_str(vm->cfg, "boot.kernel");
	lb->initrd = opt_str(vm->cfg, "boot.initrd");
	lb->initrd_fd = -1;
	vm->linux_boot = lb;
	lb->kernel_fd = open_image(lb->kernel, "kernel");
	if (lb->kernel_fd < 0)
		return -1;
	if (lb->initrd && (lb->initrd_fd = open_image(lb->initrd, "initrd")) < 0)
		return -1;
	return 0;
}

int linux_boot_load(struct vm *vm)
{
	const struct linux_boot *lb = vm->linux_boot;
	const char *cmdline = opt_str(vm->cfg, "boot.cmdline");
	struct boot_params *bp = mem_gpa_to_hva(&vm->mem, LAYOUT_BOOT_PARAMS, sizeof(*bp));
	uint64_t kernel_end, rsdp;
	struct acpi_machine machine;

	if (!lb)
		return -1;
	memset(bp, 0, sizeof(*bp));
	if (load_kernel(vm, lb, bp, &kernel_end) < 0 || load_cmdline(vm, cmdline ? cmdline : "", bp) < 0 ||
	    (lb->initrd_fd >= 0 && load_initrd(vm, lb, bp, kernel_end) < 0))
		return -1;
	bp->hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
	bp->hdr.loadflags |= CAN_USE_HEAP;
	bp->hdr.heap_end_ptr = 0xfe00;
	bp->hdr.vid_mode = 0xffff;
	fill_e820(vm, bp);
	fill_screen_info(vm, bp);
	acpi_machine_of(vm, &machine);
	if (acpi_build(&machine, &rsdp) < 0 || mptable_build(&vm->mem, vm->ncpus) < 0)
		return -1;
	bp->acpi_rsdp_addr = rsdp;
	build_page_tables(vm);
	build_gdt(vm);
	if (enter_long_mode(&vm->vcpus[0]) < 0) {
		log_error("cannot set the boot vCPU's registers: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int linux_boot_setup(struct vm *vm)
{
	int rc = linux_boot_open(vm) < 0 ? -1 : linux_boot_load(vm);

	/* Only a machine that restarts in this process loads them again. */
	if (!vm->reset)
		linux_boot_free(vm);
	return rc;
}
