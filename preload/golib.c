/* Loading the Go part on demand.
 *
 * libustack.so is C: it decides which sockets could be accelerated and passes everything else
 * to libc. The Go part (the runtime, the shim and the stack: build/libustack-go.so, beside
 * libustack.so, or USTACK_GO_LIB) is loaded by the first socket that carries data (cand.c). A
 * process that moves no data on such a socket never starts a Go runtime (no threads, no heap, no
 * start-up cost), and a child forked before the runtime started can start its own. */
#include "goapi.h"
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ustack_goapi ustack_go;
char ustack_golib_path[4096];
static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;

static struct ustack_shared shared = {
	.fds = ustack_fds,
	.xsk_fd = &ustack_xsk_fd,
	.xsk_waiters = &ustack_xsk_waiters,
	.spin_us = &ustack_spin_us,
	.go_off = &ustack_go_off,
	.wake_fd = ustack_wake_fd,
	.owner_name = ustack_owner_name,
	.owner_pid = &ustack_owner_pid,
	.fork_gen = &ustack_fork_gen,
	.children_setup = ustack_children_setup,
	.children_alive = ustack_children_alive,
	.txkick = &ustack_txkick,
};

/* golib_path finds the Go part: USTACK_GO_LIB, else libustack-go.so beside this library. */
static int golib_path(char *buf, size_t n)
{
	const char *env = getenv("USTACK_GO_LIB");
	if (env && *env) {
		snprintf(buf, n, "%s", env);
		return 0;
	}
	Dl_info info;
	if (!dladdr((void *)&ustack_load_go, &info) || !info.dli_fname)
		return -1;
	const char *slash = strrchr(info.dli_fname, '/');
	int dir = slash ? (int)(slash - info.dli_fname) : 0;
	if (slash)
		snprintf(buf, n, "%.*s/libustack-go.so", dir, info.dli_fname);
	else
		snprintf(buf, n, "libustack-go.so");
	return 0;
}

static void warn(const char *what, const char *detail)
{
	char line[512];
	int len = snprintf(line, sizeof line, "ustack: warning: %s: %s; sockets stay on the kernel\n", what, detail);
	if (len > 0 && ustack_real.write(2, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1) < 0) {
		/* stderr is gone: nothing to tell */
	}
}

#define SYM(name) (ustack_go.name = dlsym(h, "ustack_" #name))

/* is_go_program reports whether the program is a Go executable (it has a .go.buildinfo section).
 * Its sockets use raw system calls, it gains nothing from us, and two Go runtimes must not
 * share sockets: ustack stays out of the way. Asked once, before the Go part would start. */
static int is_go_program(void)
{
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int found = 0;
	Elf64_Ehdr eh;
	Elf64_Shdr *sh = NULL;
	char *names = NULL;
	if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shnum == 0 ||
	    eh.e_shnum >= 4096 || eh.e_shstrndx >= eh.e_shnum)
		goto out;
	size_t shlen = (size_t)eh.e_shnum * sizeof *sh;
	sh = malloc(shlen);
	if (!sh || pread(fd, sh, shlen, (off_t)eh.e_shoff) != (ssize_t)shlen)
		goto out;
	const Elf64_Shdr *strs = &sh[eh.e_shstrndx];
	if (strs->sh_size == 0 || strs->sh_size > (1 << 20))
		goto out;
	names = malloc(strs->sh_size + 1);
	if (!names || pread(fd, names, strs->sh_size, (off_t)strs->sh_offset) != (ssize_t)strs->sh_size)
		goto out;
	names[strs->sh_size] = 0;
	for (int i = 0; i < eh.e_shnum && !found; i++)
		found = sh[i].sh_name < strs->sh_size && strcmp(names + sh[i].sh_name, ".go.buildinfo") == 0;
out:
	free(sh);
	free(names);
	close(fd);
	return found;
}

static int load_locked(void)
{
	if (is_go_program())
		return 0;
	char path[sizeof ustack_golib_path];
	if (golib_path(path, sizeof path) < 0) {
		warn("cannot find libustack-go.so", "set USTACK_GO_LIB");
		return 0;
	}
	/* signal.c recognises the runtime's own sigaction calls by this path, from now on */
	memcpy(ustack_golib_path, path, sizeof path);
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		ustack_golib_path[0] = 0;
		warn("cannot load the Go part", dlerror());
		return 0;
	}
	SYM(init); SYM(socket); SYM(adopt); SYM(bind); SYM(listen); SYM(accept); SYM(connect); SYM(connect_wait); SYM(shutdown);
	SYM(close); SYM(exit); SYM(dup); SYM(getsockname); SYM(getpeername); SYM(getsockopt); SYM(setsockopt);
	SYM(recvmsg); SYM(sendmsg); SYM(fcntl); SYM(ioctl); SYM(poll_check); SYM(epoll_ctl); SYM(epoll_check);
	SYM(epoll_close); SYM(epoll_adopt); SYM(is_go_thread); SYM(exec); SYM(move); SYM(resched);
	void **p = (void **)&ustack_go;
	for (size_t i = 0; i < sizeof ustack_go / sizeof *p; i++)
		if (!p[i]) {
			warn("the Go part does not match this libustack.so", path);
			return 0;
		}
	/* blocks until the Go runtime has started; the Go part reads USTACK_* and says whether
	 * acceleration is on */
	shared.is_go_thread = ustack_go.is_go_thread;
	if (ustack_go.init(&shared) != 0 || ustack_go_off)
		return 0;
	__atomic_store_n(&ustack_go_ready, 1, __ATOMIC_RELEASE);
	ustack_go_started();
	return 1;
}

int ustack_load_go(void)
{
	if (__atomic_load_n(&ustack_go_ready, __ATOMIC_ACQUIRE))
		return 1;
	if (ustack_go_off)
		return 0;
	pthread_mutex_lock(&load_mu);
	int ok = ustack_go_ready;
	if (!ok && !ustack_go_off) {
		ok = load_locked();
		if (!ok)
			ustack_go_off = 1;
	}
	pthread_mutex_unlock(&load_mu);
	return ok;
}

__thread long ustack_resched_ms __attribute__((tls_model("initial-exec")));

void ustack_go_tick_slow(long now_ms)
{
	long last = ustack_resched_ms;
	ustack_resched_ms = now_ms;
	/* a thread's first call only starts the clock */
	if (last != 0)
		ustack_go.resched();
}
