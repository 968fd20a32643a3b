/*
 * sem_fortify: the glibc fortified entry points (_FORTIFY_SOURCE=2 turns
 * read/recv/recvfrom/poll with a buffer of known size into __read_chk,
 * __recv_chk, __recvfrom_chk, __poll_chk) on accelerated sockets. See sem.h.
 */
#undef _FORTIFY_SOURCE
#define _FORTIFY_SOURCE 2
#include "sem.h"

static volatile size_t vlen = 5; /* not a compile-time constant: forces the _chk call */

static void chk_calls(void)
{
	int fd = peer("send 20");
	EXPECT(fd >= 0, "connect: %s", E);
	unsigned char b[16];
	struct pollfd p = { fd, POLLIN, 0 };
	int r = poll(&p, vlen / 5, 3000); /* __poll_chk */
	EXPECT(r == 1 && p.revents == POLLIN, "poll (__poll_chk): %d revents %#x", r, p.revents);
	sleep_ms(50);
	ssize_t n = read(fd, b, vlen); /* __read_chk */
	EXPECT(n == 5 && pat_ok(b, 0, 5), "read (__read_chk): %zd %s", n, n < 0 ? E : "");
	n = recv(fd, b, vlen, 0); /* __recv_chk */
	EXPECT(n == 5 && pat_ok(b, 5, 5), "recv (__recv_chk): %zd %s", n, n < 0 ? E : "");
	struct sockaddr_in from;
	socklen_t fl = sizeof from;
	n = recvfrom(fd, b, vlen, 0, (struct sockaddr *)&from, &fl); /* __recvfrom_chk */
	EXPECT(n == 5 && pat_ok(b, 10, 5), "recvfrom (__recvfrom_chk): %zd %s", n, n < 0 ? E : "");
	n = recv(fd, b, vlen, MSG_DONTWAIT);
	EXPECT(n == 5 && pat_ok(b, 15, 5), "recv (__recv_chk, MSG_DONTWAIT): %zd %s", n, n < 0 ? E : "");
	n = recv(fd, b, vlen, MSG_DONTWAIT);
	EXPECT(n < 0 && errno == EAGAIN, "recv (__recv_chk) on an empty queue: %zd %s, want EAGAIN", n, n < 0 ? E : "");
	close(fd);
}

static const struct check checks[] = {
	{ "fortified_read_recv_recvfrom_poll_chk", chk_calls, 0 },
};
SEM_MAIN(checks)
