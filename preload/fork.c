/* A fork child's way to the sockets it inherited (see shim/forkserve.go): the Go runtime does not
 * survive fork, so the child asks the process that owns the stack to move the socket to the
 * kernel with its state, waits for the answer, and from then on uses the kernel socket. */
#include "ustack.h"
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

char ustack_owner_name[sizeof(((struct sockaddr_un *)0)->sun_path)];
int ustack_owner_pid;
volatile uint32_t ustack_fork_gen;

/* How long a child waits for the owner; a connection still in its handshake makes it wait. */
#define MOVE_TIMEOUT_MS 10000

/* ustack_child_move asks the owner to move fd's socket to the kernel. It answers 0 when fd is a
 * kernel socket now (moved, or the owner is gone: it moved its shared sockets when it exited),
 * -errno when the socket could not move and stays out of this process's reach. */
int ustack_child_move(int fd)
{
	if (!ustack_sock(fd))
		return 0;
	int r = 0;
	uint64_t cookie = 0;
	socklen_t clen = sizeof cookie;
	if (ustack_real.getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &clen) < 0 || ustack_owner_name[0] == 0) {
		r = -EBADFD;
		goto out;
	}
	int s = ustack_real.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		r = -errno;
		goto out;
	}
	/* autobind: the owner answers to an abstract name of our own */
	sa_family_t fam = AF_UNIX;
	struct sockaddr_un to = { .sun_family = AF_UNIX };
	size_t nlen = strlen(ustack_owner_name);
	memcpy(to.sun_path + 1, ustack_owner_name + 1, nlen - 1); /* '@' stands for the leading NUL */
	uint8_t req[16] = { 0 };
	int32_t fd32 = fd;
	memcpy(req, &fd32, 4);
	memcpy(req + 8, &cookie, 8);
	if (ustack_real.bind(s, (struct sockaddr *)&fam, sizeof fam) < 0 ||
	    ustack_real.sendto(s, req, sizeof req, 0, (struct sockaddr *)&to,
			       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + nlen)) < 0) {
		/* ECONNREFUSED: nobody has the name, the owner is gone */
		r = errno == ECONNREFUSED || errno == ENOENT ? 0 : -errno;
		ustack_real.close(s);
		goto out;
	}
	long deadline = ustack_now_ms() + MOVE_TIMEOUT_MS;
	r = -ETIMEDOUT;
	while (ustack_now_ms() < deadline) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		int n = ustack_real.poll(&p, 1, 100);
		if (n > 0) {
			int32_t ans;
			if (ustack_real.recv(s, &ans, sizeof ans, MSG_DONTWAIT) == (ssize_t)sizeof ans) {
				r = ans == -ESTALE ? 0 : ans; /* the owner closed it: ours is the only copy */
				break;
			}
		}
		if (kill(ustack_owner_pid, 0) < 0 && errno == ESRCH) {
			r = 0; /* the owner exited meanwhile, after moving what it shared */
			break;
		}
	}
	ustack_real.close(s);
out:
	if (r == 0)
		__atomic_store_n(&ustack_fds[fd].kind, USTACK_KIND_NONE, __ATOMIC_RELEASE);
	return r;
}

/* The fork children that may hold the owner's sockets: each registers its pid in a page shared by
 * the whole process tree (made when the stack starts), so the owner can tell when they are all
 * gone and a socket made before the forks is its alone again. */
#define USTACK_CHILD_SLOTS 1023
struct ustack_children {
	int32_t overflow; /* a child found no free slot: assume one lives */
	int32_t pid[USTACK_CHILD_SLOTS];
};
static struct ustack_children *children;

void ustack_children_setup(void)
{
	if (children)
		return;
	void *p = mmap(NULL, sizeof *children, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED)
		children = p;
}

/* ustack_child_register notes a child just forked. The parent registers it before fork returns
 * (fork below), so a close that follows at once sees it; a child's own children are registered
 * by the child, in the same page. */
static void ustack_child_register(int32_t pid)
{
	if (!children)
		return;
	for (int i = 0; i < USTACK_CHILD_SLOTS; i++) {
		int32_t zero = 0;
		if (__atomic_compare_exchange_n(&children->pid[i], &zero, pid, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			return;
	}
	__atomic_store_n(&children->overflow, 1, __ATOMIC_SEQ_CST);
}

static pid_t (*real_fork)(void);

pid_t fork(void)
{
	if (!__atomic_load_n(&real_fork, __ATOMIC_ACQUIRE))
		__atomic_store_n(&real_fork, (pid_t(*)(void))dlsym(RTLD_NEXT, "fork"), __ATOMIC_RELEASE);
	pid_t pid = real_fork();
	if (pid > 0)
		ustack_child_register(pid);
	return pid;
}

/* A vfork child shares the parent's memory and runs on until it execs: once the Go part runs, the
 * interposers it calls (close, dup2, execve) would drive the parent's stack from a process that
 * is not the parent, and no fork handler tells it apart. Then vfork is a fork (POSIX allows it;
 * glibc's posix_spawn does not come here), and a fork child knows what it is. Before, it stays a
 * vfork (shells use it for every command): a tail call, so that the child returns from glibc's
 * vfork straight to our caller, as it must (checked by tests/exports_test.go). */
pid_t vfork(void)
{
	if (__atomic_load_n(&ustack_go_ready, __ATOMIC_ACQUIRE))
		return fork();
	return __vfork();
}

/* alive reports whether pid is a process that has not exited (a zombie has). */
static int alive(int32_t pid)
{
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return 0;
	char path[32], buf[256];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno != ENOENT;
	ssize_t n = ustack_real.read(fd, buf, sizeof buf - 1);
	ustack_real.close(fd);
	if (n <= 0)
		return 1;
	buf[n] = 0;
	const char *paren = strrchr(buf, ')'); /* "pid (comm) S ...": comm may hold anything */
	return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

/* ustack_children_alive reports whether a fork child (or one of its own) may still run; it
 * forgets those that are gone. */
int ustack_children_alive(void)
{
	if (!children)
		return 0;
	if (__atomic_load_n(&children->overflow, __ATOMIC_SEQ_CST))
		return 1;
	int any = 0;
	for (int i = 0; i < USTACK_CHILD_SLOTS; i++) {
		int32_t pid = __atomic_load_n(&children->pid[i], __ATOMIC_SEQ_CST);
		if (pid == 0)
			continue;
		if (alive(pid))
			any = 1;
		else
			__atomic_compare_exchange_n(&children->pid[i], &pid, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	}
	return any;
}
