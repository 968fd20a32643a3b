/* Interposers for the data calls: read/write, recv/send families and the glibc _chk variants.
 * All funnel into two Go exports, ustack_recvmsg and ustack_sendmsg, over an iovec. */
#include "intercept.h"
#include <limits.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* advance drops the first n bytes from the iovec array *iov of *cnt entries (modified in place). */
static void advance(struct iovec **iov, int *cnt, size_t n)
{
	while (*cnt > 0 && n >= (*iov)->iov_len) {
		n -= (*iov)->iov_len;
		(*iov)++;
		(*cnt)--;
	}
	if (*cnt > 0 && n > 0) {
		(*iov)->iov_base = (char *)(*iov)->iov_base + n;
		(*iov)->iov_len -= n;
	}
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
	size_t t = 0;
	for (int i = 0; i < cnt; i++)
		t += iov[i].iov_len;
	return t;
}

/* recv_kernel and send_kernel make the call on the kernel socket: Go answered USTACK_PASS (the
 * shadow answers this one, or the socket was handed to the kernel while we were in the call). */
static ssize_t recv_kernel(int fd, const struct iovec *iov, int cnt, int flags, void *name, socklen_t *namelen, int *msgflags)
{
	struct msghdr m = { .msg_name = name, .msg_namelen = namelen ? *namelen : 0, .msg_iov = (struct iovec *)iov, .msg_iovlen = cnt };
	ssize_t r = ustack_real.recvmsg(fd, &m, flags);
	if (r >= 0) {
		if (namelen)
			*namelen = m.msg_namelen;
		if (msgflags)
			*msgflags = m.msg_flags;
	}
	return r;
}

static ssize_t send_kernel(int fd, const struct iovec *iov, int cnt, int flags, const void *name, socklen_t namelen)
{
	struct msghdr m = { .msg_name = (void *)name, .msg_namelen = name ? namelen : 0, .msg_iov = (struct iovec *)iov, .msg_iovlen = cnt };
	return ustack_real.sendmsg(fd, &m, flags);
}

/* recv_iov reads into iov like recvmsg(2): a blocking socket waits for the first byte (TCP: for
 * all of them with MSG_WAITALL) or for a datagram (UDP). name/namelen/msgflags may be NULL. */
static ssize_t recv_iov(int fd, const struct iovec *iov_in, int cnt, int flags, void *name, socklen_t *namelen, int *msgflags)
{
	if (cnt < 0 || cnt > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	struct iovec local[cnt > 0 ? cnt : 1];
	memcpy(local, iov_in, sizeof(struct iovec) * cnt);
	struct iovec *iov = local;
	size_t want = iov_total(iov, cnt), got = 0;
	int tmo = ustack_fds[fd].rcvtimeo_ms;
	for (;;) {
		long r = USTACK_BLOCKING_R(fd, POLLIN, tmo, got == 0, ustack_recvmsg(fd, iov, cnt, flags, name, namelen, msgflags));
		if (r == USTACK_PASS) {
			if (got > 0)
				return got;
			return recv_kernel(fd, iov, cnt, flags, name, namelen, msgflags);
		}
		if (r < 0)
			return got > 0 ? (ssize_t)got : ustack_ret(r);
		got += r;
		if (r == 0 || !(flags & MSG_WAITALL) || got >= want || (flags & (MSG_PEEK | MSG_TRUNC)) ||
		    ustack_kind(fd) == USTACK_KIND_UDP)
			return got;
		advance(&iov, &cnt, r);
	}
}

/* send_iov writes iov like sendmsg(2): a blocking socket returns only when everything is queued,
 * or when a signal or an error stops it after part of it (then the part is returned). */
static ssize_t send_iov(int fd, const struct iovec *iov_in, int cnt, int flags, const void *name, socklen_t namelen)
{
	if (cnt < 0 || cnt > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	struct iovec local[cnt > 0 ? cnt : 1];
	memcpy(local, iov_in, sizeof(struct iovec) * cnt);
	struct iovec *iov = local;
	size_t want = iov_total(iov, cnt), sent = 0;
	int tmo = ustack_fds[fd].sndtimeo_ms;
	for (;;) {
		long r = USTACK_BLOCKING_R(fd, POLLOUT, tmo, sent == 0, ustack_sendmsg(fd, iov, cnt, flags, (void *)name, namelen));
		if (r == USTACK_PASS) {
			if (sent > 0)
				return sent;
			return send_kernel(fd, iov, cnt, flags, name, namelen);
		}
		if (r < 0) {
			if (sent > 0)
				return sent;
			if (r == -EPIPE && !(flags & MSG_NOSIGNAL))
				raise(SIGPIPE);
			return ustack_ret(r);
		}
		sent += r;
		if (sent >= want || r == 0)
			return sent;
		advance(&iov, &cnt, r);
	}
}

ssize_t read(int fd, void *buf, size_t n)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.read(fd, buf, n));
	struct iovec v = { buf, n };
	return recv_iov(fd, &v, 1, 0, NULL, NULL, NULL);
}

ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		abort(); /* what glibc's __chk_fail does, without the message */
	return read(fd, buf, n);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.write(fd, buf, n));
	struct iovec v = { (void *)buf, n };
	return send_iov(fd, &v, 1, 0, NULL, 0);
}

ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.readv(fd, iov, cnt));
	return recv_iov(fd, iov, cnt, 0, NULL, NULL, NULL);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.writev(fd, iov, cnt));
	return send_iov(fd, iov, cnt, 0, NULL, 0);
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.recv(fd, buf, n, flags));
	struct iovec v = { buf, n };
	return recv_iov(fd, &v, 1, flags, NULL, NULL, NULL);
}

ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	if (n > buflen)
		abort();
	return recv(fd, buf, n, flags);
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.recvfrom(fd, buf, n, flags, addr, alen));
	struct iovec v = { buf, n };
	/* Go fills the source address of a datagram; a TCP socket reports none (*alen = 0) */
	return recv_iov(fd, &v, 1, flags, addr, addr ? alen : NULL, NULL);
}

ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr, socklen_t *alen)
{
	if (n > buflen)
		abort();
	return recvfrom(fd, buf, n, flags, addr, alen);
}

static ssize_t recvmsg_ours(int fd, struct msghdr *msg, int flags)
{
	socklen_t namelen = msg->msg_name ? msg->msg_namelen : 0;
	int mflags = 0;
	ssize_t r = recv_iov(fd, msg->msg_iov, (int)msg->msg_iovlen, flags, msg->msg_name, msg->msg_name ? &namelen : NULL, &mflags);
	if (r >= 0) {
		msg->msg_namelen = msg->msg_name ? namelen : 0;
		msg->msg_controllen = 0; /* no ancillary data yet */
		msg->msg_flags = mflags;
	}
	return r;
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.recvmsg(fd, msg, flags));
	return recvmsg_ours(fd, msg, flags);
}

int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags, struct timespec *tmo)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.recvmmsg(fd, v, n, flags, tmo));
	unsigned int i;
	for (i = 0; i < n; i++) {
		int f = flags & ~MSG_WAITFORONE;
		if (i > 0 && (flags & MSG_WAITFORONE))
			f |= MSG_DONTWAIT;
		ssize_t r = recvmsg_ours(fd, &v[i].msg_hdr, f);
		if (r < 0) {
			if (i > 0)
				break; /* the error waits for the next call, as on Linux */
			return -1;
		}
		v[i].msg_len = (unsigned int)r;
	}
	return (int)i;
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.send(fd, buf, n, flags));
	struct iovec v = { (void *)buf, n };
	return send_iov(fd, &v, 1, flags, NULL, 0);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t alen)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.sendto(fd, buf, n, flags, addr, alen));
	/* a connected TCP socket ignores the address, a UDP socket sends there */
	struct iovec v = { (void *)buf, n };
	return send_iov(fd, &v, 1, flags, addr, addr ? alen : 0);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.sendmsg(fd, msg, flags));
	return send_iov(fd, msg->msg_iov, (int)msg->msg_iovlen, flags, msg->msg_name, msg->msg_name ? msg->msg_namelen : 0);
}

int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags)
{
	USTACK_DATA_PROLOGUE(fd, ustack_real.sendmmsg(fd, v, n, flags));
	unsigned int i;
	for (i = 0; i < n; i++) {
		const struct msghdr *m = &v[i].msg_hdr;
		ssize_t r = send_iov(fd, m->msg_iov, (int)m->msg_iovlen, flags, m->msg_name, m->msg_name ? m->msg_namelen : 0);
		if (r < 0) {
			if (i > 0)
				break;
			return -1;
		}
		v[i].msg_len = (unsigned int)r;
	}
	return (int)i;
}

/* sendfile from a file to an accelerated socket: read into a buffer, send like send(2) (a
 * blocking socket takes all of it, a non-blocking one what fits). */
static ssize_t sendfile_impl(int out, int in, off_t *off, size_t count)
{
	USTACK_DATA_PROLOGUE(out, ustack_real.sendfile(out, in, off, count));
	char buf[65536];
	size_t done = 0;
	while (done < count) {
		size_t want = count - done < sizeof buf ? count - done : sizeof buf;
		ssize_t n = off ? pread(in, buf, want, *off + (off_t)done) : ustack_real.read(in, buf, want);
		if (n < 0) {
			if (done == 0)
				return -1;
			break;
		}
		if (n == 0)
			break;
		struct iovec v = { buf, (size_t)n };
		ssize_t w = send_iov(out, &v, 1, 0, NULL, 0);
		if (w < 0) {
			if (!off)
				lseek(in, -n, SEEK_CUR);
			if (done == 0)
				return -1;
			break;
		}
		done += w;
		if (w < n) {
			if (!off)
				lseek(in, -(n - w), SEEK_CUR);
			break;
		}
	}
	if (off)
		*off += done;
	return done;
}

ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	return sendfile_impl(out, in, off, count);
}

ssize_t sendfile64(int out, int in, off_t *off, size_t count)
{
	return sendfile_impl(out, in, off, count);
}
