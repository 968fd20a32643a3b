/* Interposers for fcntl and ioctl: O_NONBLOCK, FIONBIO and FIONREAD reach Go, the rest the shadow. */
#include "intercept.h"
#include <fcntl.h>
#include <stdarg.h>
#include <sys/ioctl.h>

void ustack_share_fd(int oldfd, int newfd);

static int fcntl_impl(int fd, int cmd, void *arg)
{
	USTACK_ENSURE();
	if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && ustack_kind(fd) != USTACK_KIND_NONE) {
		int r = ustack_real.fcntl(fd, cmd, arg);
		if (r >= 0)
			ustack_share_fd(fd, r);
		return r;
	}
	USTACK_PROLOGUE(fd, ustack_real.fcntl(fd, cmd, arg));
	long r = ustack_fcntl(fd, cmd, (long)arg);
	if (r == USTACK_PASS)
		return ustack_real.fcntl(fd, cmd, arg);
	return ustack_ret(r);
}

int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_impl(fd, cmd, arg);
}

/* programs built with _FILE_OFFSET_BITS=64 call fcntl64 */
int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_impl(fd, cmd, arg);
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	USTACK_PROLOGUE(fd, ustack_real.ioctl(fd, req, arg));
	long r = ustack_ioctl(fd, req, arg);
	if (r == USTACK_PASS)
		return ustack_real.ioctl(fd, req, arg);
	return ustack_ret(r);
}
