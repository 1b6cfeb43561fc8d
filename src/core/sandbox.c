/*
 * Confinement: per-thread seccomp allow-lists, the privilege drop, and the
 * SIGSYS report. See sandbox.h for the order of the steps and
 * docs/security.md ("Confinement") for the lists in prose.
 *
 * Filters are per thread (no TSYNC): each thread installs its own kind's
 * filter on itself. A thread inherits the filter of the thread that
 * created it, and its own is stacked on top (both must allow a call).
 * Threads are created so that this stays simple:
 * - vCPU threads, virtio I/O threads and the restore verifier are created
 *   by the main thread before it confines itself, so they carry only their
 *   own list;
 * - the snapshot writer is created on request by the confined main
 *   thread, so it carries the main list and its own; the main list is
 *   therefore kept a superset of the snapshot writer's (what the writer
 *   needs, the loop can do anyway: create new files, KVM state queries).
 *   Creating a long-lived writer up front instead would only spare the
 *   main list clone() and rename(); the loop needs the rest anyway
 *   (screenshots create files).
 * - I/O threads and the verifier exist before the privilege drop.
 *   glibc's setresuid()/setresgid()/setgroups() make every thread run the
 *   same system call (its SIGSETXID broadcast), so those lists allow
 *   exactly the drop's calls with the drop's ids. After the drop they
 *   cannot do anything more: without CAP_SETUID/CAP_SETGID the kernel
 *   refuses every other change.
 *
 * The filters are compiled once, by sandbox_prepare() on the main thread,
 * into BPF programs kept in memory; sandbox_enter() is then one seccomp()
 * call, which needs no allocation and no libseccomp on the calling thread.
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <pwd.h>
/* libseccomp's SCMP_Ax() macros leave datum_b out when a comparison needs one datum; clang warns. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wmissing-field-initializers"
#endif
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "chardev.h"
#include "config.h"
#include "log.h"

/* Whether a sanitizer runtime (AddressSanitizer or ThreadSanitizer) is linked in (meson -Db_sanitize=...). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZER_RUNTIME 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZER_RUNTIME 1
#endif
#endif
#ifndef SANITIZER_RUNTIME
#define SANITIZER_RUNTIME 0
#endif

/* System call numbers the SIGSYS report can name (x86-64 has fewer than 512). */
#define NAMED_SYSCALLS 512

static const char *const kind_names[SANDBOX_KINDS] = {
	[SANDBOX_MAIN] = "main",
	[SANDBOX_VCPU] = "vcpu",
	[SANDBOX_IO] = "io",
	[SANDBOX_SNAPSHOT] = "snapshot",
	[SANDBOX_VERIFIER] = "verifier",
};

static struct {
	bool enabled;       /* filters were compiled; sandbox_enter() installs them */
	bool has_user;
	char user[256];
	uid_t uid;
	gid_t gid;
	pid_t pid;          /* tgkill() may only signal our own threads */
	int selftest;       /* a kind, or -1 */
	bool restarts;      /* reboot=restart: the event loop resets vCPUs and interrupt controllers */
	struct sock_fprog prog[SANDBOX_KINDS];
	const char *names[NAMED_SYSCALLS]; /* for the SIGSYS report, resolved before any filter */
} sb = { .selftest = -1 };

/* The calling thread's kind, for the SIGSYS report; -1 while it has none of its own. */
static __thread int thread_kind = -1;

const char *sandbox_kind_name(enum sandbox_kind kind)
{
	return (unsigned)kind < SANDBOX_KINDS ? kind_names[kind] : "unknown";
}

/* ---- the SIGSYS report (async-signal-safe: no stdio, no allocation, no locks) ---- */

static size_t append(char *buf, size_t len, size_t cap, const char *s)
{
	while (*s && len + 1 < cap)
		buf[len++] = *s++;
	buf[len] = '\0';
	return len;
}

static size_t append_uint(char *buf, size_t len, size_t cap, unsigned long v)
{
	char digits[24];
	size_t n = 0;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && n < sizeof(digits));
	while (n && len + 1 < cap)
		buf[len++] = digits[--n];
	buf[len] = '\0';
	return len;
}

/*
 * A filter trapped a call: name it and the thread's kind on stderr, put the
 * terminal back (stdio may be a raw-mode serial console) and end with
 * status 4. Every kind's list allows what this needs: write(2),
 * ioctl(0, TCSETS) and exit_group(2).
 */
static void report_forbidden_call(int sig, siginfo_t *si, void *ucontext)
{
	char msg[192];
	size_t n = 0;
	int nr = si->si_syscall;
	const char *name = nr >= 0 && nr < NAMED_SYSCALLS && sb.names[nr] ? sb.names[nr] : "unknown";
	ssize_t written;

	(void)sig;
	(void)ucontext;
	n = append(msg, n, sizeof(msg), "hyve: sandbox: ");
	n = append(msg, n, sizeof(msg), thread_kind >= 0 ? kind_names[thread_kind] : "unnamed");
	n = append(msg, n, sizeof(msg), " thread made a forbidden system call: ");
	n = append(msg, n, sizeof(msg), name);
	n = append(msg, n, sizeof(msg), " (");
	n = append_uint(msg, n, sizeof(msg), (unsigned long)nr);
	n = append(msg, n, sizeof(msg), ")\r\n");
	written = write(STDERR_FILENO, msg, n);
	(void)written;
	chardev_restore_terminal();
	/* The raw call: a sanitizer's _exit() would first do its exit-time work, on no list. */
	syscall(SYS_exit_group, HYVE_EXIT_ERROR);
}

static int install_reporter(void)
{
	struct sigaction sa = { .sa_sigaction = report_forbidden_call, .sa_flags = SA_SIGINFO };
	sigset_t sys;

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return -1;
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	return pthread_sigmask(SIG_UNBLOCK, &sys, NULL) == 0 ? 0 : -1;
}

static void resolve_names(void)
{
	for (int nr = 0; nr < NAMED_SYSCALLS; nr++)
		if (!sb.names[nr])
			sb.names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
}

/* ---- allow-lists ---- */

struct builder {
	scmp_filter_ctx ctx;
	int rc;
};

static void rule(struct builder *b, uint32_t action, int nr, unsigned nargs, const struct scmp_arg_cmp *args)
{
	int rc = seccomp_rule_add_array(b->ctx, action, nr, nargs, args);

	if (rc < 0 && b->rc == 0) {
		char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
		log_error("sandbox: cannot add a rule for %s: %s", name ? name : "?", strerror(-rc));
		free(name);
		b->rc = -1;
	}
}

static void allow(struct builder *b, int nr)
{
	rule(b, SCMP_ACT_ALLOW, nr, 0, NULL);
}

static void allow_if(struct builder *b, int nr, struct scmp_arg_cmp a)
{
	rule(b, SCMP_ACT_ALLOW, nr, 1, &a);
}

static void allow_if2(struct builder *b, int nr, struct scmp_arg_cmp a, struct scmp_arg_cmp c)
{
	const struct scmp_arg_cmp args[2] = { a, c };

	rule(b, SCMP_ACT_ALLOW, nr, 2, args);
}

static void allow_all(struct builder *b, const int *nrs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		allow(b, nrs[i]);
}

/* The kernel reads an ioctl request as 32 bits; so does the rule. */
static void allow_ioctls(struct builder *b, const unsigned long *requests, size_t n)
{
	for (size_t i = 0; i < n; i++)
		allow_if(b, SCMP_SYS(ioctl), SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, requests[i]));
}

#define ALLOW_ALL(b, list) allow_all(b, list, sizeof(list) / sizeof(list[0]))
#define ALLOW_IOCTLS(b, list) allow_ioctls(b, list, sizeof(list) / sizeof(list[0]))

/*
 * Every thread: locks, signals' return, its own end, the clock, memory
 * without new executable mappings, and what the SIGSYS report needs.
 */
static void allow_every_thread(struct builder *b)
{
	static const int calls[] = {
		SCMP_SYS(futex), SCMP_SYS(restart_syscall), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask),
		SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(getpid), SCMP_SYS(gettid),
		SCMP_SYS(sched_yield), SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep),
		/* the vDSO answers these unless the host's clock source cannot be read from user space */
		SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday), SCMP_SYS(time),
		/* malloc; munmap/madvise also end a thread (its stack is released) */
		SCMP_SYS(munmap), SCMP_SYS(madvise), SCMP_SYS(brk), SCMP_SYS(mremap),
		/* log lines on stderr, eventfd signals, serial output */
		SCMP_SYS(write),
	};

	ALLOW_ALL(b, calls);
	allow_if(b, SCMP_SYS(mmap), SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	allow_if(b, SCMP_SYS(mprotect), SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	/* vCPU kicks (vm_request_exit() may run on any thread), abort(): only this process's threads */
	allow_if(b, SCMP_SYS(tgkill), SCMP_A0(SCMP_CMP_EQ, (uint64_t)sb.pid));
	/* the SIGSYS report restores the terminal */
	allow_if2(b, SCMP_SYS(ioctl), SCMP_A0(SCMP_CMP_EQ, STDIN_FILENO), SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, TCSETS));
}

/*
 * What device models do at run time from whichever thread drives them
 * (vCPU, I/O thread, event loop, snapshot writer): interrupt lines and MSIs,
 * routing and irqfds when the guest reprograms MSI/MSI-X, ioeventfds and
 * memory slots when it moves a BAR, dirty logs of display memory, and the
 * tap's offloads when virtio-net features change.
 */
static const unsigned long device_ioctls[] = {
	KVM_IRQ_LINE, KVM_SIGNAL_MSI, KVM_SET_GSI_ROUTING, KVM_IRQFD, KVM_IOEVENTFD,
	KVM_SET_USER_MEMORY_REGION, KVM_GET_DIRTY_LOG, TUNSETOFFLOAD,
};

/* Reading a running VM's KVM state for a snapshot (kvm_state.c). */
static const unsigned long snapshot_ioctls[] = {
	KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_MSRS, KVM_GET_MSR_INDEX_LIST, KVM_GET_CPUID2,
	KVM_GET_VCPU_EVENTS, KVM_GET_DEBUGREGS, KVM_GET_XSAVE, KVM_GET_LAPIC, KVM_GET_MP_STATE,
	KVM_GET_XCRS, KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_CLOCK,
};

/* glibc's SIGSETXID broadcast of the privilege drop reaches threads that exist before it. */
static void allow_drop_broadcast(struct builder *b)
{
	if (!sb.has_user)
		return;
	const struct scmp_arg_cmp gid[3] = { SCMP_A0(SCMP_CMP_EQ, sb.gid), SCMP_A1(SCMP_CMP_EQ, sb.gid),
					     SCMP_A2(SCMP_CMP_EQ, sb.gid) };
	const struct scmp_arg_cmp uid[3] = { SCMP_A0(SCMP_CMP_EQ, sb.uid), SCMP_A1(SCMP_CMP_EQ, sb.uid),
					     SCMP_A2(SCMP_CMP_EQ, sb.uid) };
	allow(b, SCMP_SYS(setgroups));
	rule(b, SCMP_ACT_ALLOW, SCMP_SYS(setresgid), 3, gid);
	rule(b, SCMP_ACT_ALLOW, SCMP_SYS(setresuid), 3, uid);
}

/*
 * Only files that did not exist (snapshots, screenshots: O_CREAT|O_EXCL, as
 * mkstemp() opens them) and directories opened read-only (to fsync a
 * snapshot's folder). No existing file can be opened for reading or writing.
 */
static void allow_new_files(struct builder *b)
{
	allow_if(b, SCMP_SYS(openat), SCMP_A2(SCMP_CMP_MASKED_EQ, O_CREAT | O_EXCL, O_CREAT | O_EXCL));
	allow_if(b, SCMP_SYS(openat),
		 SCMP_A2(SCMP_CMP_MASKED_EQ, O_DIRECTORY | O_ACCMODE | O_CREAT, O_DIRECTORY | O_RDONLY));
}

static void allow_vcpu(struct builder *b)
{
	static const unsigned long vcpu_ioctls[] = { KVM_RUN, KVM_GET_MP_STATE, KVM_GET_REGS };
	static const int calls[] = {
		SCMP_SYS(read),       /* MSI-X pending bits from eventfds */
		SCMP_SYS(sendto),     /* serial output to a socket client */
		SCMP_SYS(epoll_ctl),  /* serial output waiting for a slow client */
		SCMP_SYS(timerfd_settime), SCMP_SYS(timerfd_gettime), /* RTC periodic and alarm interrupts */
		SCMP_SYS(pwrite64), SCMP_SYS(fdatasync), /* firmware flash written through to its VARS file */
	};

	ALLOW_IOCTLS(b, vcpu_ioctls);
	ALLOW_IOCTLS(b, device_ioctls);
	ALLOW_ALL(b, calls);
}

static void allow_io(struct builder *b)
{
	static const int calls[] = {
		SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl), SCMP_SYS(read),
		SCMP_SYS(pread64), SCMP_SYS(preadv), SCMP_SYS(pwrite64), SCMP_SYS(pwritev), /* virtio-blk */
		SCMP_SYS(fdatasync), SCMP_SYS(fsync), SCMP_SYS(fallocate),                    /* flush, discard, zeroes */
		SCMP_SYS(readv), SCMP_SYS(writev),                                            /* virtio-net's tap */
		SCMP_SYS(getrandom),                                                          /* virtio-rnd */
	};

	ALLOW_ALL(b, calls);
	ALLOW_IOCTLS(b, device_ioctls);
	allow_drop_broadcast(b);
}

static void allow_snapshot(struct builder *b)
{
	static const int calls[] = {
		SCMP_SYS(pwrite64), SCMP_SYS(pread64), SCMP_SYS(read), SCMP_SYS(ftruncate),
		SCMP_SYS(fdatasync), SCMP_SYS(fsync), SCMP_SYS(close), SCMP_SYS(rename), SCMP_SYS(unlink),
		SCMP_SYS(getrandom), /* mkostemp()'s name */
		SCMP_SYS(newfstatat), /* virtio-blk records its disk's size */
		/* a live snapshot: pages the guest zeroed become holes again; the file read back for checksums */
		SCMP_SYS(fallocate), SCMP_SYS(lseek),
	};
	/* a live snapshot turns dirty logging of the RAM slots on and off and reads the logs */
	static const unsigned long live_ioctls[] = { KVM_SET_USER_MEMORY_REGION, KVM_GET_DIRTY_LOG };

	ALLOW_ALL(b, calls);
	allow_new_files(b);
	ALLOW_IOCTLS(b, snapshot_ioctls);
	ALLOW_IOCTLS(b, live_ioctls);
}

static void allow_verifier(struct builder *b)
{
	allow(b, SCMP_SYS(pread64));
	allow(b, SCMP_SYS(lseek)); /* SEEK_DATA: holes in a RAM record are zeros, not read */
	allow_drop_broadcast(b);
}

/*
 * reboot=restart only (core/reset.h): a guest reset puts every vCPU, the
 * in-kernel interrupt controllers and the PIT back to their power-on state
 * from the event loop, and a direct boot sets the boot vCPU's registers
 * again. Reads and writes of KVM state, nothing that opens or maps: without
 * it, a guest reset ends the process instead and the loop needs none.
 */
static const unsigned long reset_ioctls[] = {
	KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_MSRS, KVM_SET_VCPU_EVENTS, KVM_SET_DEBUGREGS,
	KVM_SET_XSAVE, KVM_SET_LAPIC, KVM_SET_MP_STATE, KVM_SET_XCRS, KVM_SET_IRQCHIP, KVM_SET_PIT2,
};

static void allow_main(struct builder *b)
{
	static const int calls[] = {
		SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
		SCMP_SYS(poll), /* a reply that must leave before the VM ends */
		SCMP_SYS(read), SCMP_SYS(close),
		SCMP_SYS(accept4), SCMP_SYS(recvfrom), SCMP_SYS(sendto), /* on sockets opened at set-up */
		/*
		 * cd-insert: the loop cannot open an existing image, so hyvectl opens it
		 * and sends the descriptor over the control socket (recvmsg); the CD
		 * drive takes the image's shared lock (flock) and size (fstat; glibc's
		 * fstat is newfstatat, allowed below) as it inserts it.
		 */
		SCMP_SYS(recvmsg), SCMP_SYS(flock), SCMP_SYS(fstat),
		SCMP_SYS(timerfd_settime), SCMP_SYS(timerfd_gettime), /* VNC refresh, RTC pause and resume */
		SCMP_SYS(getrandom),          /* VNC authentication challenges */
		SCMP_SYS(geteuid), SCMP_SYS(getuid), /* the control socket's peer check */
		/* screenshots and, for the snapshot writer it starts, snapshots */
		SCMP_SYS(newfstatat), SCMP_SYS(pwrite64), SCMP_SYS(pread64),
		SCMP_SYS(ftruncate), SCMP_SYS(fdatasync), SCMP_SYS(fsync), SCMP_SYS(rename),
		/* removing its own sockets at exit (control, VNC and serial UNIX sockets) */
		SCMP_SYS(unlink),
		/* starting a snapshot writer thread */
		SCMP_SYS(set_robust_list), SCMP_SYS(rseq),
		/* a live snapshot's writer (its filter adds to this one): holes punched again, the file read back */
		SCMP_SYS(fallocate), SCMP_SYS(lseek),
	};

	ALLOW_ALL(b, calls);
	allow_new_files(b);
	ALLOW_IOCTLS(b, device_ioctls);
	ALLOW_IOCTLS(b, snapshot_ioctls);
	if (sb.restarts)
		ALLOW_IOCTLS(b, reset_ioctls);
	/* the snapshot writer names itself */
	allow_if(b, SCMP_SYS(prctl), SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
	allow_if(b, SCMP_SYS(fcntl), SCMP_A1(SCMP_CMP_EQ, F_GETFL));
	allow_if(b, SCMP_SYS(fcntl), SCMP_A1(SCMP_CMP_EQ, F_GETFD));
	/* cd-insert of a host block device (a real drive's disc): its size */
	allow_if(b, SCMP_SYS(ioctl), SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, BLKGETSIZE64));
	allow_if2(b, SCMP_SYS(getsockopt), SCMP_A1(SCMP_CMP_EQ, SOL_SOCKET), SCMP_A2(SCMP_CMP_EQ, SO_PEERCRED));
	allow_if2(b, SCMP_SYS(setsockopt), SCMP_A1(SCMP_CMP_EQ, IPPROTO_TCP), SCMP_A2(SCMP_CMP_EQ, TCP_NODELAY));
	/* threads only (CLONE_THREAD), never a new process; clone3's flags are out of a filter's reach, so glibc falls back to clone */
	allow_if(b, SCMP_SYS(clone), SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD | CLONE_VM, CLONE_THREAD | CLONE_VM));
	rule(b, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0, NULL);
	/* a snapshot writer confines itself further */
	allow_if2(b, SCMP_SYS(seccomp), SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER), SCMP_A1(SCMP_CMP_EQ, 0));
}

/*
 * Sanitizer builds only (tests/run checks hyve with ASan and UBSan, unit tests run under TSan too): the
 * runtime gives every thread an alternate signal stack and reads its CPU
 * affinity as it starts, and queries the stack on large allocations.
 */
static void allow_sanitizer_every_thread(struct builder *b)
{
	allow(b, SCMP_SYS(sigaltstack));
	allow(b, SCMP_SYS(sched_getaffinity));
}

/*
 * Sanitizer builds only: at exit, on the main thread, LeakSanitizer stops
 * every thread from a helper it clones (a process sharing our memory, not
 * a thread), which attaches to them with ptrace, opens, rewinds and reads
 * /proc/self/task and installs its own signal handlers. hyve itself never
 * needs any of this. (The helper blocks every signal: a call missing here
 * kills it silently and leaves hyve waiting for it at exit.)
 */
static void allow_leak_check(struct builder *b)
{
	static const int calls[] = {
		SCMP_SYS(ptrace), SCMP_SYS(wait4), SCMP_SYS(getppid), SCMP_SYS(rt_sigaction), SCMP_SYS(prctl),
		SCMP_SYS(getdents), SCMP_SYS(getdents64), SCMP_SYS(lseek),
	};

	ALLOW_ALL(b, calls);
	allow_if(b, SCMP_SYS(clone), SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD | CLONE_VM, CLONE_VM));
	allow_if(b, SCMP_SYS(open), SCMP_A1(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT, O_RDONLY));
}

static void (*const builders[SANDBOX_KINDS])(struct builder *) = {
	[SANDBOX_MAIN] = allow_main,
	[SANDBOX_VCPU] = allow_vcpu,
	[SANDBOX_IO] = allow_io,
	[SANDBOX_SNAPSHOT] = allow_snapshot,
	[SANDBOX_VERIFIER] = allow_verifier,
};

/* Compiles kind's list into a BPF program (libseccomp exports it to a memfd, read back here). */
static int compile(enum sandbox_kind kind, struct sock_fprog *prog)
{
	struct builder b = { .ctx = seccomp_init(SCMP_ACT_TRAP) };
	struct sock_filter *code = NULL;
	int fd = -1, rc = -1;
	off_t size;

	if (!b.ctx) {
		log_error("sandbox: cannot set up a seccomp filter");
		return -1;
	}
	/* no_new_privs is set once, process-wide, by sandbox_prepare() */
	if (seccomp_attr_set(b.ctx, SCMP_FLTATR_CTL_NNP, 0) < 0 ||
	    seccomp_attr_set(b.ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0)
		b.rc = -1;
	allow_every_thread(&b);
	builders[kind](&b);
	if (SANITIZER_RUNTIME) {
		allow_sanitizer_every_thread(&b);
		if (kind == SANDBOX_MAIN)
			allow_leak_check(&b);
	}
	if (b.rc < 0)
		goto out;
	fd = memfd_create("hyve-seccomp", MFD_CLOEXEC);
	if (fd < 0 || seccomp_export_bpf(b.ctx, fd) < 0 || (size = lseek(fd, 0, SEEK_END)) <= 0 ||
	    size % sizeof(*code) || size / sizeof(*code) > BPF_MAXINSNS || !(code = malloc((size_t)size)) ||
	    pread(fd, code, (size_t)size, 0) != size) {
		log_error("sandbox: cannot compile the %s thread's filter", kind_names[kind]);
		free(code);
		goto out;
	}
	prog->filter = code;
	prog->len = (unsigned short)(size / sizeof(*code));
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	seccomp_release(b.ctx);
	return rc;
}

/* ---- configuration ---- */

/* `-o sandbox=off` arrives here as sandbox.enable: the command line resolves the alias. */
static int read_enable(const struct config *cfg, bool *enable)
{
	return config_get_bool(cfg, "sandbox.enable", true, enable);
}

static int read_selftest(const struct config *cfg)
{
	const char *v = config_get(cfg, "sandbox.selftest");

	sb.selftest = -1;
	if (!v)
		return 0;
	for (int k = 0; k < SANDBOX_KINDS; k++)
		if (strcmp(v, kind_names[k]) == 0) {
			sb.selftest = k;
			return 0;
		}
	log_error("sandbox.selftest=%s: use main, vcpu, io, snapshot or verifier", v);
	return -1;
}

/* A user name, or a numeric uid; its primary group comes from the passwd entry. */
static int resolve_user(const char *name)
{
	struct passwd pw, *found = NULL;
	char buf[4096];
	char *end;
	unsigned long id = strtoul(name, &end, 10);
	int rc;

	if (*name && !*end)
		rc = getpwuid_r((uid_t)id, &pw, buf, sizeof(buf), &found);
	else
		rc = getpwnam_r(name, &pw, buf, sizeof(buf), &found);
	if (rc != 0 || !found) {
		log_error("sandbox.user=%s: no such user%s%s", name, rc ? ": " : "", rc ? strerror(rc) : "");
		return -1;
	}
	if (strlen(pw.pw_name) >= sizeof(sb.user)) {
		log_error("sandbox.user=%s: the user name is too long", name);
		return -1;
	}
	snprintf(sb.user, sizeof(sb.user), "%s", pw.pw_name);
	sb.uid = pw.pw_uid;
	sb.gid = pw.pw_gid;
	sb.has_user = true;
	if (geteuid() != 0 && (sb.uid != geteuid() || sb.gid != getegid())) {
		log_error("sandbox.user=%s: switching to another user needs hyve to start as root", name);
		return -1;
	}
	return 0;
}

static void free_programs(void)
{
	for (int k = 0; k < SANDBOX_KINDS; k++) {
		free(sb.prog[k].filter);
		sb.prog[k] = (struct sock_fprog){ 0 };
	}
}

int sandbox_prepare(const struct config *cfg)
{
	const char *user = config_get(cfg, "sandbox.user");
	bool enable = true;

	sandbox_reset();
	if (read_enable(cfg, &enable) < 0 || read_selftest(cfg) < 0)
		return -1;
	/* The key is declared and checked in core/reset.c. */
	sb.restarts = config_get(cfg, "reboot") && strcmp(config_get(cfg, "reboot"), "restart") == 0;
	if (user && resolve_user(user) < 0)
		return -1;
	if (sb.selftest >= 0 && !enable) {
		log_error("sandbox.selftest=%s: the sandbox is off (sandbox.enable=false)", kind_names[sb.selftest]);
		return -1;
	}
	/* Nothing this process executes later may gain privileges; seccomp needs it without CAP_SYS_ADMIN. */
	if ((enable || sb.has_user) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		log_error("sandbox: cannot set no_new_privs: %s", strerror(errno));
		return -1;
	}
	if (!enable)
		return 0;
	sb.pid = getpid();
	/* glibc reads /etc/localtime on its first time conversion (the RTC's, on a vCPU): now, while it may. */
	tzset();
	resolve_names();
	if (install_reporter() < 0) {
		log_error("sandbox: cannot install the SIGSYS handler: %s", strerror(errno));
		return -1;
	}
	for (int k = 0; k < SANDBOX_KINDS; k++)
		if (compile((enum sandbox_kind)k, &sb.prog[k]) < 0) {
			free_programs();
			return -1;
		}
	sb.enabled = true;
	return 0;
}

void sandbox_reset(void)
{
	free_programs();
	sb.enabled = false;
	sb.has_user = false;
	sb.selftest = -1;
}

/* ---- the privilege drop ---- */

bool sandbox_user(uid_t *uid, gid_t *gid)
{
	if (!sb.has_user)
		return false;
	*uid = sb.uid;
	*gid = sb.gid;
	return true;
}

/* The switch must be whole: every id is the user's, and no way back to root is left. */
static int check_dropped(void)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || ru != sb.uid || eu != sb.uid ||
	    su != sb.uid || rg != sb.gid || eg != sb.gid || sg != sb.gid)
		return -1;
	if (sb.uid == 0)
		return 0;
	/* Raw calls: this thread alone (glibc would ask every thread, and their lists only allow the drop's ids). */
	if (syscall(SYS_setresuid, 0, 0, 0) == 0 || syscall(SYS_setresgid, 0, 0, 0) == 0 ||
	    syscall(SYS_setgroups, 0, NULL) == 0)
		return -1;
	return 0;
}

int sandbox_drop_privileges(void)
{
	if (!sb.has_user)
		return 0;
	if (geteuid() == sb.uid && getegid() == sb.gid && getuid() == sb.uid && getgid() == sb.gid)
		return 0; /* already that user (resolve_user() refused anything else without root) */
	if (initgroups(sb.user, sb.gid) < 0 || setresgid(sb.gid, sb.gid, sb.gid) < 0 ||
	    setresuid(sb.uid, sb.uid, sb.uid) < 0) {
		log_error("sandbox.user=%s: cannot switch to the user: %s", sb.user, strerror(errno));
		return -1;
	}
	if (check_dropped() < 0) {
		log_error("sandbox.user=%s: the switch to the user is incomplete", sb.user);
		return -1;
	}
	log_info("running as user %s (uid %u, gid %u)", sb.user, (unsigned)sb.uid, (unsigned)sb.gid);
	return 0;
}

/* ---- confining a thread ---- */

/* sandbox.selftest: a call no kind allows, made right after the filter is in place. */
static void selftest(enum sandbox_kind kind)
{
	long fd = syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);

	if (fd >= 0)
		close((int)fd);
	log_error("sandbox: self-test: the %s thread could call socket(); it is not confined", kind_names[kind]);
	chardev_restore_terminal();
	_exit(HYVE_EXIT_ERROR);
}

int sandbox_enter(enum sandbox_kind kind)
{
	if (!sb.enabled || (unsigned)kind >= SANDBOX_KINDS)
		return 0;
	thread_kind = kind;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &sb.prog[kind]) < 0) {
		log_error("sandbox: cannot confine the %s thread: %s", kind_names[kind], strerror(errno));
		return -1;
	}
	if (sb.selftest == (int)kind)
		selftest(kind);
	return 0;
}
