/* Interposers for socket set-up and tear-down calls. */
#include "intercept.h"
#include <linux/close_range.h>
#include <netinet/in.h>
#include <unistd.h>

int socket(int domain, int type, int protocol)
{
	USTACK_ENSURE();
	int fd = ustack_real.socket(domain, type, protocol);
	if (fd < 0 || fd >= USTACK_FDMAX || ustack_go_off)
		return fd;
	if (domain != AF_INET && domain != AF_INET6)
		return fd;
	int base = type & 0xf;
	int inet = (base == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP)) ||
		   (base == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP));
	if (!inet || ustack_forked_child) {
		if (ustack_log_debug)
			ustack_debugf("socket stays with the kernel fd=%d why=\"%s\"", fd,
				      ustack_forked_child ? "made in a fork child, which has no stack" :
							   "neither TCP nor UDP");
		return fd;
	}
	if (__atomic_load_n(&ustack_go_ready, __ATOMIC_ACQUIRE))
		ustack_socket(fd, domain, type);
	else
		ustack_cand_new(fd, type); /* the Go part starts when it carries data (cand.c) */
	return fd;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	USTACK_PROLOGUE(fd, ustack_real.bind(fd, addr, len));
	long r = ustack_bind(fd, (void *)addr, len);
	if (r == USTACK_PASS)
		return ustack_real.bind(fd, addr, len);
	return ustack_ret(r);
}

int listen(int fd, int backlog)
{
	USTACK_PROLOGUE(fd, ustack_real.listen(fd, backlog));
	long r = ustack_listen(fd, backlog);
	if (r == USTACK_PASS)
		return ustack_real.listen(fd, backlog);
	return ustack_ret(r);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.accept4(fd, addr, len, flags));
	long r = USTACK_BLOCKING(fd, POLLIN, ustack_fds[fd].rcvtimeo_ms, ustack_accept(fd, addr, len, flags));
	if (r == USTACK_PASS)
		return ustack_real.accept4(fd, addr, len, flags);
	return ustack_ret(r);
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return accept4(fd, addr, len, 0);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.connect(fd, addr, len));
	long r = ustack_connect(fd, (void *)addr, len);
	if (r == USTACK_PASS)
		return ustack_real.connect(fd, addr, len);
	if (r == USTACK_WAIT)
		r = USTACK_BLOCKING(fd, POLLOUT, ustack_fds[fd].sndtimeo_ms, ustack_connect_wait(fd));
	if (r == -EAGAIN) /* SO_SNDTIMEO ran out: the kernel says EINPROGRESS */
		r = -EINPROGRESS;
	return ustack_ret(r);
}

int shutdown(int fd, int how)
{
	USTACK_PROLOGUE(fd, ustack_real.shutdown(fd, how));
	long r = ustack_shutdown(fd, how);
	if (r == USTACK_PASS)
		return ustack_real.shutdown(fd, how);
	return ustack_ret(r);
}

/* ustack_release lets go of fd's accelerated state before the fd number goes away. */
static void ustack_release(int fd)
{
	int k = ustack_kind(fd);
	if (k == USTACK_KIND_NONE)
		return;
	if (k == USTACK_KIND_CAND) {
		ustack_cand_drop(fd);
		return;
	}
	if (ustack_forked_child) {
		/* our copy of the table only; the parent's sockets are untouched */
		__atomic_store_n(&ustack_fds[fd].kind, USTACK_KIND_NONE, __ATOMIC_RELEASE);
		return;
	}
	if (k == USTACK_KIND_TCP || k == USTACK_KIND_UDP)
		ustack_close(fd);
	else if (k == USTACK_KIND_EPOLL)
		ustack_epoll_close(fd);
}

int close(int fd)
{
	USTACK_ENSURE();
	ustack_release(fd);
	return ustack_real.close(fd);
}

int close_range(unsigned int first, unsigned int last, int flags)
{
	USTACK_ENSURE();
	if (!ustack_real.close_range) {
		errno = ENOSYS;
		return -1;
	}
	if (!(flags & CLOSE_RANGE_CLOEXEC))
		for (unsigned int fd = first; fd <= last && fd < USTACK_FDMAX; fd++)
			ustack_release((int)fd);
	return ustack_real.close_range(first, last, flags);
}

/* ustack_share_fd makes newfd, just made a kernel duplicate of oldfd, share oldfd's accelerated
 * socket or epoll set. */
void ustack_share_fd(int oldfd, int newfd)
{
	if (newfd < 0 || newfd >= USTACK_FDMAX || ustack_kind(oldfd) == USTACK_KIND_NONE)
		return;
	if (ustack_kind(oldfd) == USTACK_KIND_CAND) {
		ustack_cand_dup(oldfd, newfd);
		return;
	}
	if (ustack_forked_child) {
		/* no Go here: the copy answers EBADFD like the original */
		struct ustack_fd e = ustack_fds[oldfd];
		int kind = e.kind;
		e.kind = USTACK_KIND_NONE;
		ustack_fds[newfd] = e;
		__atomic_store_n(&ustack_fds[newfd].kind, kind, __ATOMIC_RELEASE);
		return;
	}
	ustack_dup(oldfd, newfd);
}

int dup(int oldfd)
{
	USTACK_ENSURE();
	int r = ustack_real.dup(oldfd);
	if (r >= 0)
		ustack_share_fd(oldfd, r);
	return r;
}

int dup2(int oldfd, int newfd)
{
	USTACK_ENSURE();
	if (oldfd == newfd)
		return ustack_real.dup2(oldfd, newfd);
	ustack_release(newfd);
	int r = ustack_real.dup2(oldfd, newfd);
	if (r >= 0)
		ustack_share_fd(oldfd, r);
	return r;
}

int dup3(int oldfd, int newfd, int flags)
{
	USTACK_ENSURE();
	if (oldfd != newfd)
		ustack_release(newfd);
	int r = ustack_real.dup3(oldfd, newfd, flags);
	if (r >= 0)
		ustack_share_fd(oldfd, r);
	return r;
}

int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
	USTACK_PROLOGUE(fd, ustack_real.getsockname(fd, addr, len));
	long r = ustack_getsockname(fd, addr, len);
	if (r == USTACK_PASS)
		return ustack_real.getsockname(fd, addr, len);
	return ustack_ret(r);
}

int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
	USTACK_PROLOGUE(fd, ustack_real.getpeername(fd, addr, len));
	long r = ustack_getpeername(fd, addr, len);
	if (r == USTACK_PASS)
		return ustack_real.getpeername(fd, addr, len);
	return ustack_ret(r);
}

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	USTACK_PROLOGUE(fd, ustack_real.getsockopt(fd, level, name, val, len));
	long r = ustack_getsockopt(fd, level, name, val, len);
	if (r == USTACK_PASS)
		return ustack_real.getsockopt(fd, level, name, val, len);
	return ustack_ret(r);
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	int load = ustack_kind(fd) == USTACK_KIND_CAND && ustack_cand_setsockopt(fd, level, name);
	USTACK_PROLOGUE_LOAD(fd, ustack_real.setsockopt(fd, level, name, val, len), load);
	long r = ustack_setsockopt(fd, level, name, (void *)val, len);
	if (r == USTACK_PASS)
		return ustack_real.setsockopt(fd, level, name, val, len);
	return ustack_ret(r);
}
