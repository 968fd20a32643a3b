/* Resolution of the real libc symbols, process state shared with Go, fork handling. */
#include "ustack.h"
#include "goapi.h"
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

struct ustack_fd ustack_fds[USTACK_FDMAX];
volatile int ustack_xsk_fd = -1;
int ustack_xsk_waiters;
int ustack_spin_us;
volatile int ustack_go_ready;
volatile int ustack_go_off;
volatile int ustack_forked_child;
struct ustack_real ustack_real;

#define RESOLVE(name) ustack_real.name = dlsym(RTLD_NEXT, #name)

/* A fork child that did not exec has lost the Go runtime's threads: calling into Go would hang.
 * From here on every interposer goes to libc; an inherited accelerated socket is first moved to the
 * kernel by the process that owns the stack (fork.c). */
static void ustack_atfork_child(void)
{
	/* a child of a process that never started the Go part can start its own */
	if (ustack_go_ready) {
		ustack_forked_child = 1;
		/* the AF_XDP socket is the owner's alone: a child's copy would keep its rings alive
		 * after the owner is gone, and the frames steered there with them (a daemon's parent
		 * exits after making the listeners: they would go nowhere) */
		int xsk = ustack_xsk_fd;
		ustack_xsk_fd = -1;
		if (xsk >= 0)
			ustack_real.close(xsk);
	}
}

/* Every socket made before a fork may be held by the child too (shim: sockBase.born). */
static void ustack_atfork_parent(void)
{
	__atomic_add_fetch(&ustack_fork_gen, 1, __ATOMIC_SEQ_CST);
}

void ustack_resolve(void)
{
	RESOLVE(bind); RESOLVE(listen); RESOLVE(accept); RESOLVE(accept4); RESOLVE(connect);
	RESOLVE(shutdown); RESOLVE(close); RESOLVE(dup); RESOLVE(dup2); RESOLVE(dup3); RESOLVE(getsockname);
	RESOLVE(getpeername); RESOLVE(getsockopt); RESOLVE(setsockopt); RESOLVE(read); RESOLVE(write);
	RESOLVE(readv); RESOLVE(writev); RESOLVE(recv); RESOLVE(recvfrom); RESOLVE(recvmsg);
	RESOLVE(send); RESOLVE(sendto); RESOLVE(sendmsg); RESOLVE(recvmmsg); RESOLVE(sendmmsg); RESOLVE(fcntl); RESOLVE(ioctl);
	RESOLVE(poll); RESOLVE(ppoll); RESOLVE(select); RESOLVE(pselect); RESOLVE(epoll_create);
	RESOLVE(epoll_create1); RESOLVE(epoll_ctl); RESOLVE(epoll_wait); RESOLVE(epoll_pwait); RESOLVE(epoll_pwait2);
	RESOLVE(sigaction); RESOLVE(close_range); RESOLVE(sendfile);
	/* socket last: its pointer doubles as the "resolved" flag of USTACK_ENSURE */
	__atomic_store_n(&ustack_real.socket, (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket"), __ATOMIC_RELEASE);
}

/* At exit the connections may still have data to deliver, and the stack dies with the process:
 * they move to the kernel, which delivers it (Go's Engine.Drain). */
static void ustack_atexit(void)
{
	if (ustack_go_ready && !ustack_go_off && !ustack_forked_child && ustack_xsk_fd >= 0)
		ustack_exit();
}

/* The constructor does as little as it can: every process started under LD_PRELOAD pays for it.
 * The real symbols are resolved by the first interposed call (USTACK_ENSURE); the fork and exit
 * handlers are registered when the Go part starts (ustack_go_started). */
__attribute__((constructor)) static void ustack_c_init(void)
{
	const char *off = getenv("USTACK_DISABLE");
	if (off && strcmp(off, "1") == 0)
		ustack_go_off = 1;
	const char *lvl = getenv("USTACK_LOG");
	if (lvl && strcmp(lvl, "debug") == 0)
		ustack_log_debug = 1;
}

int ustack_log_debug;

/* ustack_debugf writes a line as the Go part's log does (stderr or USTACK_LOG_FILE), for the
 * decisions the C front makes alone. Callers check ustack_log_debug first. */
void ustack_debugf(const char *fmt, ...)
{
	char line[256];
	int n = snprintf(line, sizeof line, "ustack: debug: ");
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof line - 2)
		n = sizeof line - 2;
	line[n++] = '\n';
	int fd = 2;
	const char *path = getenv("USTACK_LOG_FILE");
	if (path && *path)
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		ssize_t w = write(fd, line, n);
		(void)w;
		if (fd != 2)
			close(fd);
	}
}

void ustack_go_started(void)
{
	pthread_atfork(NULL, ustack_atfork_parent, ustack_atfork_child);
	atexit(ustack_atexit);
}

int ustack_ret(long r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return (int)r;
}

long ustack_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

long ustack_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000L + ts.tv_nsec / 1000L;
}
