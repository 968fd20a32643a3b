/*
 * sem_dup: dup/dup2/dup3/fcntl(F_DUPFD, F_DUPFD_CLOEXEC) share one socket
 * (data written on one fd is read on the other; closing one leaves the other
 * working; the connection ends when the last one closes), and close_range.
 * See sem.h.
 */
#include "sem.h"
#include <linux/close_range.h>

enum { DUP, DUP2, DUP3, F_DUP, F_DUP_CLOEXEC };

static int do_dup(int how, int fd, int *want_cloexec)
{
	*want_cloexec = 0;
	switch (how) {
	case DUP:
		return dup(fd);
	case DUP2: {
		int t = open("/dev/null", O_RDONLY); /* dup2 onto an open fd replaces it */
		return dup2(fd, t);
	}
	case DUP3: {
		*want_cloexec = 1;
		return dup3(fd, 900, O_CLOEXEC) == 900 ? 900 : -1;
	}
	case F_DUP: {
		int d = fcntl(fd, F_DUPFD, 500);
		return d >= 500 ? d : -1;
	}
	case F_DUP_CLOEXEC: {
		*want_cloexec = 1;
		int d = fcntl(fd, F_DUPFD_CLOEXEC, 600);
		return d >= 600 ? d : -1;
	}
	}
	return -1;
}

static int roundtrip(int w, int r, const char *msg)
{
	size_t n = strlen(msg);
	char b[64] = {0};
	if (send(w, msg, n, 0) != (ssize_t)n)
		return -1;
	if (read_full(r, b, n, 3000) != (ssize_t)n || memcmp(b, msg, n) != 0)
		return -2;
	return 0;
}

static void dup_shares(int how)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	int cx;
	int d = do_dup(how, fd, &cx);
	EXPECT(d >= 0 && d != fd, "dup: %d %s", d, E);
	EXPECT(!!(fcntl(d, F_GETFD) & FD_CLOEXEC) == cx, "FD_CLOEXEC on the copy is %d, want %d", !!(fcntl(d, F_GETFD) & FD_CLOEXEC), cx);
	EXPECT(!(fcntl(fd, F_GETFD) & FD_CLOEXEC), "FD_CLOEXEC appeared on the original");
	EXPECT(roundtrip(fd, d, "written on the original") == 0, "write on the original, read on the copy: %s", E);
	EXPECT(roundtrip(d, fd, "written on the copy") == 0, "write on the copy, read on the original: %s", E);
	/* shared file status flags */
	EXPECT(fcntl(d, F_SETFL, fcntl(d, F_GETFL) | O_NONBLOCK) == 0, "F_SETFL: %s", E);
	EXPECT(fcntl(fd, F_GETFL) & O_NONBLOCK, "O_NONBLOCK set on the copy is not seen on the original");
	char b[8];
	ssize_t r = recv(fd, b, sizeof b, 0);
	EXPECT(r < 0 && errno == EAGAIN, "recv on the original after O_NONBLOCK on the copy: %zd %s, want EAGAIN", r, r < 0 ? E : "");
	EXPECT(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0, "F_SETFL: %s", E);
	/* shared socket options */
	int v = 1, got = 0;
	socklen_t gl = sizeof got;
	EXPECT(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) == 0, "TCP_NODELAY: %s", E);
	EXPECT(getsockopt(d, IPPROTO_TCP, TCP_NODELAY, &got, &gl) == 0 && got == 1, "TCP_NODELAY set on the original reads %d on the copy", got);
	EXPECT(close(fd) == 0, "close of the original: %s", E);
	EXPECT(roundtrip(d, d, "after close of the original") == 0, "the copy after the original closed: %s", E);
	EXPECT(close(d) == 0, "close of the copy: %s", E);
}

static void t_dup(void) { dup_shares(DUP); }
static void t_dup2(void) { dup_shares(DUP2); }
static void t_dup3(void) { dup_shares(DUP3); }
static void t_fdup(void) { dup_shares(F_DUP); }
static void t_fdupcx(void) { dup_shares(F_DUP_CLOEXEC); }

static void last_close_ends(void)
{
	const char *t = tag("c");
	int fd = peer("count %s", t);
	EXPECT(fd >= 0, "connect: %s", E);
	int d = dup(fd);
	EXPECT(d >= 0, "dup: %s", E);
	EXPECT(send(fd, "12345", 5, 0) == 5 && send(d, "678", 3, 0) == 3, "send: %s", E);
	EXPECT(close(fd) == 0, "close: %s", E);
	const char *rec = report(t, 500);
	EXPECT(strcmp(rec, "pending") == 0, "after closing one of two fds the peer saw \"%s\", want the connection open", rec);
	EXPECT(send(d, "9", 1, 0) == 1, "send on the remaining fd: %s", E);
	EXPECT(close(d) == 0, "close: %s", E);
	rec = report(t, 3000);
	EXPECT(strcmp(rec, "eof 9") == 0, "after closing both the peer saw \"%s\", want \"eof 9\"", rec);
}

static void dup2_over_socket(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	int keep = dup(fd);
	int nul = open("/dev/null", O_WRONLY);
	EXPECT(keep >= 0 && nul >= 0, "dup/open: %s", E);
	EXPECT(dup2(nul, fd) == fd, "dup2(/dev/null, socket fd): %s", E);
	EXPECT(write(fd, "x", 1) == 1, "write to the fd now /dev/null: %s", E);
	struct sockaddr_in a;
	socklen_t al = sizeof a;
	int r = getsockname(fd, (struct sockaddr *)&a, &al);
	EXPECT(r < 0 && errno == ENOTSOCK, "getsockname on the fd now /dev/null: %d %s, want ENOTSOCK", r, r < 0 ? E : "");
	EXPECT(roundtrip(keep, keep, "still here") == 0, "the socket's other fd: %s", E);
	EXPECT(dup2(fd, fd) == fd, "dup2(fd, fd): %s", E);
	r = dup3(keep, keep, 0);
	EXPECT(r < 0 && errno == EINVAL, "dup3(fd, fd, 0): %d %s, want EINVAL", r, r < 0 ? E : "");
	close(fd);
	close(nul);
	close(keep);
}

static void dup2_socket_onto_socket(void)
{
	const char *t = tag("c");
	int a = peer("count %s", t);
	int b = peer("echo");
	EXPECT(a >= 0 && b >= 0, "connect: %s", E);
	EXPECT(send(a, "12", 2, 0) == 2, "send: %s", E);
	EXPECT(dup2(b, a) == a, "dup2(b, a): %s", E);
	const char *rec = report(t, 3000);
	EXPECT(strcmp(rec, "eof 2") == 0, "the connection replaced by dup2 saw \"%s\", want \"eof 2\" (dup2 closes it)", rec);
	EXPECT(roundtrip(a, b, "through the new a") == 0, "fd a now the echo connection: %s", E);
	close(a);
	close(b);
}

static void t_close_range(void)
{
	char t1[128], t2[128];
	snprintf(t1, sizeof t1, "%s", tag("1"));
	snprintf(t2, sizeof t2, "%s", tag("2"));
	const char *t2s = t2;
	int a = peer("count %s", t1);
	EXPECT(a >= 0, "connect: %s", E);
	int b = peer("count %s", t2s);
	EXPECT(b >= 0, "connect: %s", E);
	int lo = fcntl(a, F_DUPFD, 700), hi = fcntl(b, F_DUPFD, lo + 1);
	EXPECT(lo >= 700 && hi > lo, "F_DUPFD: %s", E);
	close(a);
	close(b);
	EXPECT(close_range(lo, hi, CLOSE_RANGE_CLOEXEC) == 0, "close_range(CLOEXEC): %s", E);
	EXPECT((fcntl(lo, F_GETFD) & FD_CLOEXEC) && (fcntl(hi, F_GETFD) & FD_CLOEXEC), "CLOSE_RANGE_CLOEXEC did not set FD_CLOEXEC");
	EXPECT(send(lo, "abc", 3, 0) == 3 && send(hi, "de", 2, 0) == 2, "the sockets after CLOSE_RANGE_CLOEXEC: %s", E);
	EXPECT(close_range(lo, ~0U, 0) == 0, "close_range: %s", E);
	EXPECT(fcntl(lo, F_GETFD) < 0 && errno == EBADF && fcntl(hi, F_GETFD) < 0 && errno == EBADF, "fds still open after close_range");
	const char *rec = report(t1, 3000);
	EXPECT(strcmp(rec, "eof 3") == 0, "the first connection saw \"%s\", want \"eof 3\"", rec);
	rec = report(t2s, 3000);
	EXPECT(strcmp(rec, "eof 2") == 0, "the second connection saw \"%s\", want \"eof 2\"", rec);
	/* the numbers are free again and a new socket there works */
	int s = peer("echo");
	EXPECT(s >= 0, "connect: %s", E);
	EXPECT(dup2(s, lo) == lo, "dup2 onto the closed number: %s", E);
	close(s);
	EXPECT(roundtrip(lo, lo, "reused number") == 0, "socket on the reused number: %s", E);
	close(lo);
}

static const struct check checks[] = {
	{ "dup_shares_socket", t_dup, 0 },
	{ "dup2_shares_socket", t_dup2, 0 },
	{ "dup3_cloexec_shares_socket", t_dup3, 0 },
	{ "fcntl_dupfd_shares_socket", t_fdup, 0 },
	{ "fcntl_dupfd_cloexec_shares_socket", t_fdupcx, 0 },
	{ "connection_ends_at_last_close", last_close_ends, 0 },
	{ "dup2_devnull_over_socket_fd", dup2_over_socket, 0 },
	{ "dup2_socket_onto_socket_closes_old", dup2_socket_onto_socket, 0 },
	{ "close_range_cloexec_and_close", t_close_range, 0 },
};
SEM_MAIN(checks)
