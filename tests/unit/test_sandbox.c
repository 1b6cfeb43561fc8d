/*
 * The sandbox's filters (src/core/sandbox.c), installed for real: each case
 * forks a child that prepares the sandbox from a configuration, confines
 * itself as one thread kind and makes system calls; the parent checks how
 * the child ended and what it wrote on stderr. A forbidden call must end
 * the child with status 4 and the line naming the call and the kind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/config.h"
#include "core/sandbox.h"

/*
 * Children end with the raw exit_group(2): a sanitizer's exit() or _exit()
 * would first do its own exit-time work (a leak check), which no list allows.
 */
static _Noreturn void child_exit(int code)
{
	syscall(SYS_exit_group, code);
	__builtin_unreachable();
}

/* Child exit codes for calls that came back when they should (not); 4 is the sandbox's. */
#define CHILD_OK 0
#define CHILD_UNEXPECTED 10
#define CHILD_TIMEOUT_MS 20000

struct outcome {
	int status; /* exit status, or 128 + signal */
	char err[2048];
};

typedef void (*child_fn)(void);

static void *thread_returns(void *arg)
{
	return arg;
}

/*
 * Builds a configuration from "key=value" pairs, prepares the sandbox and
 * enters kind (-1: none). As in hyve, a thread has been created before
 * anything is confined (glibc sets up its thread signals on the first one).
 */
static void child_prepare(const char *const *keys, int kind)
{
	struct config *cfg = config_new();
	pthread_t t;

	if (pthread_create(&t, NULL, thread_returns, NULL) != 0 || pthread_join(t, NULL) != 0)
		child_exit(CHILD_UNEXPECTED);

	for (const char *const *k = keys; k && *k; k++)
		if (config_set_assignment(cfg, *k) < 0)
			child_exit(CHILD_UNEXPECTED);
	if (sandbox_prepare(cfg) < 0)
		child_exit(5);
	config_free(cfg);
	if (kind >= 0 && sandbox_enter((enum sandbox_kind)kind) < 0)
		child_exit(6);
}

static pid_t parent_pid; /* the test process, as its children see it */

static struct outcome run_child(const char *const *keys, int kind, child_fn fn)
{
	struct outcome o = { .status = -1 };
	int pipefd[2], wstatus;
	bool ended = false;
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(pipefd), 0);
	parent_pid = getpid();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pipefd[0]);
		dup2(pipefd[1], STDERR_FILENO);
		child_prepare(keys, kind);
		fn();
		child_exit(CHILD_OK);
	}
	close(pipefd[1]);
	/* A child that hangs (e.g. a sanitizer's exit-time helper killed by a filter) fails, after a while. */
	for (int waited = 0; !ended && waited < CHILD_TIMEOUT_MS; waited += 100) {
		struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
		if (poll(&p, 1, 100) != 1)
			continue;
		n = read(pipefd[0], o.err + got, sizeof(o.err) - 1 - got);
		if (n <= 0)
			ended = true; /* the child and everything it started have closed stderr */
		else
			got += (size_t)n;
	}
	o.err[got] = '\0';
	close(pipefd[0]);
	if (!ended) {
		kill(pid, SIGKILL);
		waitpid(pid, &wstatus, 0);
		snprintf(o.err + got, sizeof(o.err) - got, " (hung: killed after %d ms)", CHILD_TIMEOUT_MS);
		o.status = -2;
		return o;
	}
	assert_int_equal(waitpid(pid, &wstatus, 0), pid);
	o.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
	return o;
}

static void expect_trap(struct outcome o, const char *kind, const char *call)
{
	char want[128];

	snprintf(want, sizeof(want), "hyve: sandbox: %s thread made a forbidden system call: %s (", kind, call);
	if (o.status != 4 || !strstr(o.err, want))
		fail_msg("expected exit 4 with \"%s\"; got status %d, stderr: %s", want, o.status, o.err);
}

static void expect_ok(struct outcome o)
{
	if (o.status != CHILD_OK)
		fail_msg("expected the child to finish; got status %d, stderr: %s", o.status, o.err);
}

static const char *const defaults[] = { NULL };

/* ---- calls ---- */

static void call_socket(void)
{
	syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
	child_exit(CHILD_UNEXPECTED);
}

static void open_existing_file(void)
{
	open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	child_exit(CHILD_UNEXPECTED);
}

static void map_executable(void)
{
	mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	child_exit(CHILD_UNEXPECTED);
}

/*
 * clone() as fork() makes it, but as the raw call: ThreadSanitizer's fork()
 * interceptor prepares its runtime around the call and cannot survive the
 * SIGSYS report from inside it.
 */
static void fork_process(void)
{
	long pid = syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, NULL, NULL, 0UL);

	if (pid == 0)
		child_exit(0);
	child_exit(CHILD_UNEXPECTED);
}

static void signal_parent(void)
{
	/* tgkill to another process: the rule only lets a thread signal its own process */
	syscall(SYS_tgkill, parent_pid, parent_pid, 0);
	child_exit(CHILD_UNEXPECTED);
}

static void kvm_run_ioctl(void)
{
	ioctl(-1, KVM_RUN, 0);
	child_exit(CHILD_UNEXPECTED);
}

static void make_a_pipe(void)
{
	int fds[2];

	syscall(SYS_pipe2, fds, O_CLOEXEC);
	child_exit(CHILD_UNEXPECTED);
}

/* Without a filter the same open simply works. */
static void open_existing_file_unconfined(void)
{
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

	child_exit(fd >= 0 ? CHILD_OK : CHILD_UNEXPECTED);
}

/* What a vCPU does: its ioctls reach the kernel (EBADF here), output is written, time is read. */
static void vcpu_allowed(void)
{
	struct timespec ts;
	char byte = 'x';

	if (ioctl(-1, KVM_RUN, 0) != -1 || errno != EBADF || ioctl(-1, KVM_GET_MP_STATE, NULL) != -1 ||
	    ioctl(-1, KVM_IRQ_LINE, NULL) != -1 || ioctl(-1, TUNSETOFFLOAD, 0) != -1 || errno != EBADF)
		child_exit(CHILD_UNEXPECTED);
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0 || write(STDERR_FILENO, &byte, 0) != 0)
		child_exit(CHILD_UNEXPECTED);
	/* malloc may map memory; freeing it may unmap or advise */
	void *big = malloc(1 << 20);
	if (!big)
		child_exit(CHILD_UNEXPECTED);
	memset(big, 1, 1 << 20);
	free(big);
	child_exit(CHILD_OK);
}

/* With reboot=restart the loop puts vCPUs and interrupt controllers back to power-on state: those ioctls reach the kernel. */
static void main_resets_kvm_state(void)
{
	if (ioctl(-1, KVM_SET_REGS, NULL) != -1 || errno != EBADF || ioctl(-1, KVM_SET_SREGS, NULL) != -1 ||
	    ioctl(-1, KVM_SET_MP_STATE, NULL) != -1 || ioctl(-1, KVM_SET_IRQCHIP, NULL) != -1 ||
	    ioctl(-1, KVM_SET_PIT2, NULL) != -1 || errno != EBADF)
		child_exit(CHILD_UNEXPECTED);
	child_exit(CHILD_OK);
}

static char new_file[64];

/* The loop may create new files (snapshots, screenshots) and remove them, nothing else. */
static void main_new_file(void)
{
	int fd = open(new_file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0 || write(fd, "x", 1) != 1 || fsync(fd) != 0 || close(fd) != 0 || unlink(new_file) != 0)
		child_exit(CHILD_UNEXPECTED);
	child_exit(CHILD_OK);
}

/* Threads may be created (the snapshot writer), processes not. */
static void main_thread_then_fork(void)
{
	pthread_t t;
	void *ret = NULL;

	if (pthread_create(&t, NULL, thread_returns, (void *)1) != 0 || pthread_join(t, &ret) != 0 || ret != (void *)1)
		child_exit(CHILD_UNEXPECTED);
	fork_process();
}

/* A snapshot writer is created by the confined loop: both lists apply, the loop's accept4 no longer does. */
static void *snapshot_thread(void *arg)
{
	(void)arg;
	if (sandbox_enter(SANDBOX_SNAPSHOT) < 0)
		child_exit(6);
	syscall(SYS_accept4, -1, NULL, NULL, 0);
	child_exit(CHILD_UNEXPECTED);
}

static void main_starts_snapshot_writer(void)
{
	pthread_t t;

	if (syscall(SYS_accept4, -1, NULL, NULL, 0) != -1 || errno != EBADF)
		child_exit(CHILD_UNEXPECTED); /* allowed to the loop */
	if (pthread_create(&t, NULL, snapshot_thread, NULL) != 0)
		child_exit(CHILD_UNEXPECTED);
	pthread_join(t, NULL);
	child_exit(CHILD_UNEXPECTED);
}

static void io_reads_randomness(void)
{
	char buf[16];

	if (getrandom(buf, sizeof(buf), 0) != sizeof(buf))
		child_exit(CHILD_UNEXPECTED);
	child_exit(CHILD_OK);
}

static void nothing(void)
{
}

/* The loop's thread ends hyve with exit(): atexit work (and a sanitizer's leak check) must be allowed. */
static void main_exits(void)
{
	exit(CHILD_OK);
}

/* ---- cases ---- */

static void every_kind_traps_a_forbidden_call(void **state)
{
	static const char *const kinds[] = { "main", "vcpu", "io", "snapshot", "verifier" };
	(void)state;

	for (int k = 0; k < SANDBOX_KINDS; k++) {
		assert_string_equal(sandbox_kind_name((enum sandbox_kind)k), kinds[k]);
		expect_trap(run_child(defaults, k, call_socket), kinds[k], "socket");
	}
}

static void vcpu_runs_its_ioctls(void **state)
{
	(void)state;
	expect_ok(run_child(defaults, SANDBOX_VCPU, vcpu_allowed));
}

static void vcpu_opens_nothing(void **state)
{
	(void)state;
	expect_trap(run_child(defaults, SANDBOX_VCPU, open_existing_file), "vcpu", "openat");
	expect_trap(run_child(defaults, SANDBOX_VCPU, make_a_pipe), "vcpu", "pipe2");
}

static void io_has_no_kvm_run(void **state)
{
	(void)state;
	expect_trap(run_child(defaults, SANDBOX_IO, kvm_run_ioctl), "io", "ioctl");
	expect_ok(run_child(defaults, SANDBOX_IO, io_reads_randomness));
}

static void no_kind_maps_executable_memory(void **state)
{
	(void)state;
	for (int k = 0; k < SANDBOX_KINDS; k++)
		expect_trap(run_child(defaults, k, map_executable), sandbox_kind_name((enum sandbox_kind)k), "mmap");
}

static void signals_stay_in_the_process(void **state)
{
	(void)state;
	expect_trap(run_child(defaults, SANDBOX_VCPU, signal_parent), "vcpu", "tgkill");
	expect_trap(run_child(defaults, SANDBOX_MAIN, signal_parent), "main", "tgkill");
}

static void main_creates_but_never_opens_files(void **state)
{
	(void)state;
	snprintf(new_file, sizeof(new_file), "/tmp/hyve-sandbox-test-%d", (int)getpid());
	unlink(new_file);
	expect_ok(run_child(defaults, SANDBOX_MAIN, main_new_file));
	expect_trap(run_child(defaults, SANDBOX_MAIN, open_existing_file), "main", "openat");
}

static void main_sets_kvm_state_only_to_restart(void **state)
{
	static const char *const restart[] = { "reboot=restart", NULL };
	static const char *const exit_on_reset[] = { "reboot=exit", NULL };
	(void)state;

	expect_ok(run_child(restart, SANDBOX_MAIN, main_resets_kvm_state));
	expect_trap(run_child(defaults, SANDBOX_MAIN, main_resets_kvm_state), "main", "ioctl");
	expect_trap(run_child(exit_on_reset, SANDBOX_MAIN, main_resets_kvm_state), "main", "ioctl");
	/* vCPU threads never reset anything themselves */
	expect_trap(run_child(restart, SANDBOX_VCPU, main_resets_kvm_state), "vcpu", "ioctl");
}

static void main_makes_threads_not_processes(void **state)
{
	(void)state;
	expect_trap(run_child(defaults, SANDBOX_MAIN, main_thread_then_fork), "main", "clone");
}

static void snapshot_writer_stacks_on_main(void **state)
{
	(void)state;
	expect_trap(run_child(defaults, SANDBOX_MAIN, main_starts_snapshot_writer), "snapshot", "accept4");
}

static void main_thread_exits_cleanly(void **state)
{
	(void)state;
	expect_ok(run_child(defaults, SANDBOX_MAIN, main_exits));
}

static void selftest_key_makes_the_kind_trap(void **state)
{
	static const char *const keys[] = { "sandbox.selftest=verifier", NULL };
	(void)state;

	expect_trap(run_child(keys, SANDBOX_VERIFIER, nothing), "verifier", "socket");
	/* the other kinds are not affected */
	expect_ok(run_child(keys, SANDBOX_IO, nothing));
}

static void disabled_sandbox_confines_nothing(void **state)
{
	static const char *const off[] = { "sandbox.enable=false", NULL };
	(void)state;

	expect_ok(run_child(off, SANDBOX_VCPU, open_existing_file_unconfined));
}

static void bad_keys_are_refused(void **state)
{
	static const char *const unknown_user[] = { "sandbox.user=no-such-user-for-hyve", NULL };
	static const char *const bad_kind[] = { "sandbox.selftest=gpu", NULL };
	static const char *const selftest_off[] = { "sandbox.selftest=vcpu", "sandbox.enable=false", NULL };
	static const char *const bad_bool[] = { "sandbox.enable=perhaps", NULL };
	struct outcome o;
	(void)state;

	o = run_child(unknown_user, -1, nothing);
	assert_int_equal(o.status, 5);
	assert_non_null(strstr(o.err, "sandbox.user=no-such-user-for-hyve: no such user"));
	o = run_child(bad_kind, -1, nothing);
	assert_int_equal(o.status, 5);
	assert_non_null(strstr(o.err, "sandbox.selftest=gpu"));
	assert_int_equal(run_child(selftest_off, -1, nothing).status, 5);
	assert_int_equal(run_child(bad_bool, -1, nothing).status, 5);
}

/* ---- the privilege drop (as root) ---- */

static uid_t nobody_uid;
static gid_t nobody_gid;

static bool find_nobody(void)
{
	struct passwd *pw = getpwnam("nobody");

	if (!pw)
		return false;
	nobody_uid = pw->pw_uid;
	nobody_gid = pw->pw_gid;
	return true;
}

/* The uid line of a thread's status ("Uid:\tR\tE\tS\tFS"). */
static bool task_has_uid(pid_t tid, uid_t uid)
{
	char path[64], line[256];
	unsigned r, e, s, f;
	bool found = false;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
	fp = fopen(path, "r");
	if (!fp)
		return false;
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "Uid: %u %u %u %u", &r, &e, &s, &f) == 4)
			found = r == uid && e == uid && s == uid && f == uid;
	fclose(fp);
	return found;
}

static pthread_mutex_t io_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t io_cond = PTHREAD_COND_INITIALIZER;
static int io_stage; /* 1: confined, 2: may end */
static pid_t io_tid;

/* Stands for an I/O thread: confined before the drop, which glibc then makes it take part in. */
static void *early_io_thread(void *arg)
{
	(void)arg;
	if (sandbox_enter(SANDBOX_IO) < 0)
		child_exit(6);
	pthread_mutex_lock(&io_lock);
	io_tid = (pid_t)syscall(SYS_gettid);
	io_stage = 1;
	pthread_cond_broadcast(&io_cond);
	while (io_stage != 2)
		pthread_cond_wait(&io_cond, &io_lock);
	pthread_mutex_unlock(&io_lock);
	return NULL;
}

static void drop_with_confined_io_thread(void)
{
	pthread_t t;
	uid_t r, e, s;

	if (pthread_create(&t, NULL, early_io_thread, NULL) != 0)
		child_exit(CHILD_UNEXPECTED);
	pthread_mutex_lock(&io_lock);
	while (io_stage != 1)
		pthread_cond_wait(&io_cond, &io_lock);
	pthread_mutex_unlock(&io_lock);
	if (sandbox_drop_privileges() < 0)
		child_exit(20);
	if (getresuid(&r, &e, &s) != 0 || r != nobody_uid || e != nobody_uid || s != nobody_uid ||
	    getegid() != nobody_gid)
		child_exit(21);
	if (!task_has_uid(io_tid, nobody_uid))
		child_exit(22);
	if (syscall(SYS_setresuid, 0, 0, 0) == 0 || errno != EPERM)
		child_exit(23); /* no way back */
	pthread_mutex_lock(&io_lock);
	io_stage = 2;
	pthread_cond_broadcast(&io_cond);
	pthread_mutex_unlock(&io_lock);
	pthread_join(t, NULL);
	child_exit(CHILD_OK);
}

static void drop_to_user_reaches_every_thread(void **state)
{
	static const char *const keys[] = { "sandbox.user=nobody", NULL };
	(void)state;

	if (geteuid() != 0 || !find_nobody()) {
		print_message("not root or no user nobody: the privilege drop is not exercised here\n");
		skip();
	}
	expect_ok(run_child(keys, -1, drop_with_confined_io_thread));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_kind_traps_a_forbidden_call),
		cmocka_unit_test(vcpu_runs_its_ioctls),
		cmocka_unit_test(vcpu_opens_nothing),
		cmocka_unit_test(io_has_no_kvm_run),
		cmocka_unit_test(no_kind_maps_executable_memory),
		cmocka_unit_test(signals_stay_in_the_process),
		cmocka_unit_test(main_creates_but_never_opens_files),
		cmocka_unit_test(main_makes_threads_not_processes),
		cmocka_unit_test(main_sets_kvm_state_only_to_restart),
		cmocka_unit_test(snapshot_writer_stacks_on_main),
		cmocka_unit_test(main_thread_exits_cleanly),
		cmocka_unit_test(selftest_key_makes_the_kind_trap),
		cmocka_unit_test(disabled_sandbox_confines_nothing),
		cmocka_unit_test(bad_keys_are_refused),
		cmocka_unit_test(drop_to_user_reaches_every_thread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
