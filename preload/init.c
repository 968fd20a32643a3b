/* Resolution of the real libc symbols, process state shared with Go, fork handling. */
#include "ustack.h"
#include "_cgo_export.h"
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
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
	ustack_forked_child = 1;
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

/* is_go_program reports whether the program is a Go executable (it has a .go.buildinfo section).
 * Its sockets use raw system calls, it gains nothing from us, and two Go runtimes must not
 * share sockets: ustack stays out of the way. */
static int is_go_program(void)
{
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int found = 0;
	Elf64_Ehdr eh;
	if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
	    eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_shentsize == sizeof(Elf64_Shdr) && eh.e_shnum > 0 &&
	    eh.e_shnum < 4096 && eh.e_shstrndx < eh.e_shnum) {
		Elf64_Shdr strs;
		if (pread(fd, &strs, sizeof strs, eh.e_shoff + (off_t)eh.e_shstrndx * sizeof strs) == (ssize_t)sizeof strs) {
			for (int i = 0; i < eh.e_shnum && !found; i++) {
				Elf64_Shdr sh;
				char name[16];
				if (pread(fd, &sh, sizeof sh, eh.e_shoff + (off_t)i * sizeof sh) != (ssize_t)sizeof sh)
					break;
				if (sh.sh_name >= strs.sh_size)
					continue;
				ssize_t n = pread(fd, name, sizeof name, strs.sh_offset + sh.sh_name);
				found = n >= 14 && memcmp(name, ".go.buildinfo", 14) == 0;
			}
		}
	}
	close(fd);
	return found;
}

__attribute__((constructor)) static void ustack_c_init(void)
{
	ustack_resolve();
	if (is_go_program())
		ustack_go_off = 1;
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
