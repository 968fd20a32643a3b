/*
 * sem_msgflags: recv/send flags MSG_PEEK, MSG_WAITALL, MSG_DONTWAIT and
 * MSG_NOSIGNAL on a connected TCP socket. See sem.h for how to run it.
 */
#include "sem.h"

static void peek(void)
{
	int fd = peer("send 100");
	EXPECT(fd >= 0, "connect: %s", E);
	/* wait until all 100 bytes are in */
	long end = now_ms() + 3000;
	int avail = 0;
	while (now_ms() < end && (ioctl(fd, FIONREAD, &avail) < 0 || avail < 100))
		sleep_ms(5);
	unsigned char b[200];
	ssize_t r = recv(fd, b, 10, MSG_PEEK);
	EXPECT(r == 10 && pat_ok(b, 0, 10), "first MSG_PEEK of 10: %zd (%s)", r, r < 0 ? E : "data");
	r = recv(fd, b, 30, MSG_PEEK);
	EXPECT(r == 30 && pat_ok(b, 0, 30), "second MSG_PEEK of 30: %zd, want the same first 30 bytes again", r);
	r = recv(fd, b, sizeof b, MSG_PEEK);
	EXPECT(r == 100 && pat_ok(b, 0, 100), "MSG_PEEK of all: %zd, want 100", r);
	r = read_full(fd, b, 40, 3000);
	EXPECT(r == 40 && pat_ok(b, 0, 40), "read after peek: %zd bytes, want pattern bytes 0..39", r);
	r = recv(fd, b, 10, MSG_PEEK | MSG_DONTWAIT);
	EXPECT(r == 10 && pat_ok(b, 40, 10), "MSG_PEEK after reading 40: %zd, want bytes 40..49", r);
	r = read_full(fd, b, 60, 3000);
	EXPECT(r == 60 && pat_ok(b, 40, 60), "read the rest: %zd", r);
	r = recv(fd, b, 10, MSG_PEEK | MSG_DONTWAIT);
	EXPECT(r < 0 && errno == EAGAIN, "MSG_PEEK|MSG_DONTWAIT on an empty queue: %zd %s, want EAGAIN", r, r < 0 ? E : "");
	close(fd);
}

static void peek_blocks_until_data(void)
{
	int fd = peer("chunks 1 20 300");
	EXPECT(fd >= 0, "connect: %s", E);
	long t0 = now_ms();
	unsigned char b[64];
	ssize_t r = recv(fd, b, sizeof b, MSG_PEEK);
	long dt = now_ms() - t0;
	EXPECT(r == 20 && pat_ok(b, 0, 20), "blocking MSG_PEEK: %zd (%s)", r, r < 0 ? E : "data");
	EXPECT(dt >= 200, "blocking MSG_PEEK returned after %ld ms, before the data was sent (300 ms)", dt);
	r = recv(fd, b, sizeof b, 0);
	EXPECT(r == 20 && pat_ok(b, 0, 20), "recv after peek: %zd", r);
	close(fd);
}

static void waitall(void)
{
	int fd = peer("chunks 4 1000 100");
	EXPECT(fd >= 0, "connect: %s", E);
	static unsigned char b[4000];
	long t0 = now_ms();
	ssize_t r = recv(fd, b, sizeof b, MSG_WAITALL);
	long dt = now_ms() - t0;
	EXPECT(r == 4000, "recv(4000, MSG_WAITALL) returned %zd (%s), want 4000 in one call", r, r < 0 ? E : "short");
	EXPECT(pat_ok(b, 0, 4000), "data differs from the pattern");
	EXPECT(dt >= 300, "MSG_WAITALL returned after %ld ms; the 4 chunks take 400 ms", dt);
	close(fd);
}

static void waitall_short_at_eof(void)
{
	int fd = peer("sendclose 500");
	EXPECT(fd >= 0, "connect: %s", E);
	unsigned char b[1000];
	ssize_t r = recv(fd, b, sizeof b, MSG_WAITALL);
	EXPECT(r == 500 && pat_ok(b, 0, 500), "recv(1000, MSG_WAITALL) with 500 then FIN: %zd (%s), want 500", r, r < 0 ? E : "");
	r = recv(fd, b, sizeof b, MSG_WAITALL);
	EXPECT(r == 0, "then recv: %zd, want 0 (EOF)", r);
	close(fd);
}

static void waitall_readv_recvmsg(void)
{
	int fd = peer("chunks 3 700 80");
	EXPECT(fd >= 0, "connect: %s", E);
	unsigned char a[1000], b[1100];
	struct iovec iov[2] = { { a, sizeof a }, { b, sizeof b } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t r = recvmsg(fd, &m, MSG_WAITALL);
	EXPECT(r == 2100, "recvmsg(2 iovecs, 2100, MSG_WAITALL): %zd (%s)", r, r < 0 ? E : "short");
	EXPECT(pat_ok(a, 0, 1000) && pat_ok(b, 1000, 1100), "data differs from the pattern");
	close(fd);
}

static void dontwait_recv(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	char b[16];
	ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
	EXPECT(r < 0 && errno == EAGAIN, "recv(MSG_DONTWAIT) on an empty blocking socket: %zd %s, want EAGAIN", r, r < 0 ? E : "");
	EXPECT(!(fcntl(fd, F_GETFL) & O_NONBLOCK), "MSG_DONTWAIT made the socket O_NONBLOCK");
	EXPECT(send(fd, "abc", 3, MSG_DONTWAIT) == 3, "send(MSG_DONTWAIT): %s", E);
	EXPECT(wait_fd(fd, POLLIN, 3000) & POLLIN, "no echo within 3 s");
	r = recv(fd, b, sizeof b, MSG_DONTWAIT);
	EXPECT(r >= 1 && memcmp(b, "abc", r) == 0, "recv(MSG_DONTWAIT) with data: %zd (%s)", r, r < 0 ? E : "");
	close(fd);
}

static void dontwait_send_fills(void)
{
	int fd = peer("hold 8000");
	EXPECT(fd >= 0, "connect: %s", E);
	static char buf[65536];
	long total = 0;
	ssize_t r;
	long end = now_ms() + 5000;
	while ((r = send(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0 && now_ms() < end)
		total += r;
	EXPECT(r < 0 && errno == EAGAIN, "send(MSG_DONTWAIT) to a peer that does not read: %zd %s after %ld bytes, want EAGAIN",
	       r, r < 0 ? E : "", total);
	EXPECT(total > 0, "nothing was sent before EAGAIN");
	EXPECT(!(wait_fd(fd, POLLOUT, 0) & POLLOUT), "POLLOUT while send returns EAGAIN");
	close(fd);
}

static void nosignal(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	on_signal(SIGPIPE, 0);
	sig_count = 0;
	EXPECT(shutdown(fd, SHUT_WR) == 0, "shutdown: %s", E);
	ssize_t r = send(fd, "x", 1, MSG_NOSIGNAL);
	EXPECT(r < 0 && errno == EPIPE, "send(MSG_NOSIGNAL) after SHUT_WR: %zd %s, want EPIPE", r, r < 0 ? E : "");
	EXPECT(sig_count == 0, "SIGPIPE delivered %d times despite MSG_NOSIGNAL", (int)sig_count);
	close(fd);
}

static const struct check checks[] = {
	{ "msg_peek", peek, 0 },
	{ "msg_peek_blocks_until_data", peek_blocks_until_data, 0 },
	{ "msg_waitall", waitall, 0 },
	{ "msg_waitall_short_at_eof", waitall_short_at_eof, 0 },
	{ "msg_waitall_recvmsg_iovecs", waitall_readv_recvmsg, 0 },
	{ "msg_dontwait_recv", dontwait_recv, 0 },
	{ "msg_dontwait_send_fills_to_eagain", dontwait_send_fills, 0 },
	{ "msg_nosignal", nosignal, 0 },
};
SEM_MAIN(checks)
