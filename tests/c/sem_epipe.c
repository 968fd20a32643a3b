/*
 * sem_epipe: SIGPIPE and EPIPE when writing to a shut-down or reset
 * connection, MSG_NOSIGNAL, and how a reset shows in poll. See sem.h.
 */
#include "sem.h"

static void shutwr_write_sigpipe(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	on_signal(SIGPIPE, 0);
	sig_count = 0;
	EXPECT(shutdown(fd, SHUT_WR) == 0, "shutdown: %s", E);
	ssize_t r = write(fd, "x", 1);
	EXPECT(r < 0 && errno == EPIPE, "write after SHUT_WR: %zd %s, want EPIPE", r, r < 0 ? E : "");
	EXPECT(sig_count == 1, "SIGPIPE delivered %d times, want 1", (int)sig_count);
	r = send(fd, "x", 1, 0);
	EXPECT(r < 0 && errno == EPIPE && sig_count == 2, "send after SHUT_WR: %zd %s, SIGPIPEs %d; want EPIPE and a second SIGPIPE",
	       r, r < 0 ? E : "", (int)sig_count);
	close(fd);
}

static void shutwr_default_action_kills(void)
{
	/* SIGPIPE's default action terminates: run the write in a forked child
	 * whose socket is its own (the child makes it). */
	fflush(NULL);
	pid_t pid = fork();
	EXPECT(pid >= 0, "fork: %s", E);
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);
		int fd = tcp_socket();
		struct sockaddr_in l = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		/* loopback: a fork child's own sockets are kernel sockets under ustack */
		int ls = tcp_socket();
		socklen_t ll = sizeof l;
		if (fd < 0 || ls < 0 || bind(ls, (struct sockaddr *)&l, sizeof l) < 0 || listen(ls, 1) < 0 ||
		    getsockname(ls, (struct sockaddr *)&l, &ll) < 0 || connect(fd, (struct sockaddr *)&l, sizeof l) < 0)
			_exit(10);
		shutdown(fd, SHUT_WR);
		if (write(fd, "x", 1) < 0)
			_exit(11);
		_exit(12);
	}
	int st;
	EXPECT(waitpid(pid, &st, 0) == pid, "waitpid: %s", E);
	EXPECT(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE, "child %s %d, want killed by SIGPIPE",
	       WIFSIGNALED(st) ? "signal" : "exit", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

static void shutwr_nosignal(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	on_signal(SIGPIPE, 0);
	sig_count = 0;
	EXPECT(shutdown(fd, SHUT_WR) == 0, "shutdown: %s", E);
	ssize_t r = send(fd, "x", 1, MSG_NOSIGNAL);
	EXPECT(r < 0 && errno == EPIPE, "send(MSG_NOSIGNAL): %zd %s, want EPIPE", r, r < 0 ? E : "");
	struct iovec iov = { "x", 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	r = sendmsg(fd, &m, MSG_NOSIGNAL);
	EXPECT(r < 0 && errno == EPIPE, "sendmsg(MSG_NOSIGNAL): %zd %s, want EPIPE", r, r < 0 ? E : "");
	EXPECT(sig_count == 0, "SIGPIPE delivered %d times", (int)sig_count);
	close(fd);
}

/* reset_conn returns a connection the peer has reset, after the RST arrived. */
static int reset_conn(void)
{
	int fd = peer("rst");
	if (fd < 0) {
		failf("connect: %s", E);
		return -1;
	}
	int rev = wait_fd(fd, POLLIN, 3000);
	if (rev <= 0) {
		failf("no event within 3 s of the peer's RST");
		close(fd);
		return -1;
	}
	return fd;
}

static void reset_poll(void)
{
	int fd = reset_conn();
	if (fd < 0)
		return;
	sleep_ms(50);
	int rev = wait_fd(fd, POLLIN | POLLOUT | POLLRDHUP, 0);
	int want = POLLIN | POLLOUT | POLLERR | POLLHUP | POLLRDHUP;
	EXPECT(rev == want, "revents %#x after a RST, want %#x (POLLIN|POLLOUT|POLLERR|POLLHUP|POLLRDHUP)", rev, want);
	close(fd);
}

static void reset_first_write_econnreset(void)
{
	int fd = reset_conn();
	if (fd < 0)
		return;
	on_signal(SIGPIPE, 0);
	sig_count = 0;
	ssize_t r = write(fd, "x", 1);
	EXPECT(r < 0 && errno == ECONNRESET, "first write after a RST: %zd %s, want ECONNRESET", r, r < 0 ? E : "");
	EXPECT(sig_count == 0, "SIGPIPE on the ECONNRESET write");
	r = write(fd, "x", 1);
	EXPECT(r < 0 && errno == EPIPE, "second write after a RST: %zd %s, want EPIPE", r, r < 0 ? E : "");
	EXPECT(sig_count == 1, "SIGPIPEs %d after the EPIPE write, want 1", (int)sig_count);
	close(fd);
}

static void reset_read_then_write(void)
{
	int fd = reset_conn();
	if (fd < 0)
		return;
	on_signal(SIGPIPE, 0);
	sig_count = 0;
	char b[8];
	ssize_t r = recv(fd, b, sizeof b, 0);
	EXPECT(r < 0 && errno == ECONNRESET, "recv after a RST: %zd %s, want ECONNRESET", r, r < 0 ? E : "");
	r = recv(fd, b, sizeof b, 0);
	EXPECT(r == 0, "second recv after a RST: %zd %s, want 0", r, r < 0 ? E : "");
	r = send(fd, "x", 1, MSG_NOSIGNAL);
	EXPECT(r < 0 && errno == EPIPE, "send(MSG_NOSIGNAL) after the reset was read: %zd %s, want EPIPE", r, r < 0 ? E : "");
	EXPECT(sig_count == 0, "SIGPIPE despite MSG_NOSIGNAL");
	r = write(fd, "x", 1);
	EXPECT(r < 0 && errno == EPIPE && sig_count == 1, "write: %zd %s, SIGPIPEs %d; want EPIPE and one SIGPIPE",
	       r, r < 0 ? E : "", (int)sig_count);
	int err = -1;
	socklen_t l = sizeof err;
	EXPECT(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err == 0, "SO_ERROR %d after the error was read, want 0", err);
	close(fd);
}

static void reset_so_error(void)
{
	int fd = reset_conn();
	if (fd < 0)
		return;
	int err = -1;
	socklen_t l = sizeof err;
	EXPECT(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0, "getsockopt: %s", E);
	EXPECT(err == ECONNRESET, "SO_ERROR %d (%s) after a RST, want ECONNRESET", err, strerror(err));
	char b[8];
	ssize_t r = recv(fd, b, sizeof b, 0);
	EXPECT(r == 0, "recv after SO_ERROR consumed the reset: %zd %s, want 0", r, r < 0 ? E : "");
	close(fd);
}

static const struct check checks[] = {
	{ "shutwr_write_epipe_sigpipe", shutwr_write_sigpipe, 0 },
	{ "shutwr_sigpipe_default_action_kills", shutwr_default_action_kills, 0 },
	{ "shutwr_msg_nosignal_epipe_no_signal", shutwr_nosignal, 0 },
	{ "reset_poll_revents", reset_poll, 0 },
	{ "reset_first_write_econnreset_then_epipe_sigpipe", reset_first_write_econnreset, 0 },
	{ "reset_recv_econnreset_then_eof_then_epipe", reset_read_then_write, 0 },
	{ "reset_so_error_econnreset", reset_so_error, 0 },
};
SEM_MAIN(checks)
