/*
 * sem_poll: poll, ppoll, select and pselect on accelerated sockets, alone and
 * mixed with kernel fds (a pipe). See sem.h.
 */
#include "sem.h"

static void usr1(int s) { (void)s; }

static void poll_basic(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	struct pollfd p = { fd, POLLIN, 0 };
	long t0 = now_ms();
	int r = poll(&p, 1, 200);
	long dt = now_ms() - t0;
	EXPECT(r == 0 && p.revents == 0, "poll(POLLIN) on an idle connection: %d revents %#x, want 0", r, p.revents);
	EXPECT(dt >= 150 && dt < 1500, "poll timed out after %ld ms, want about 200", dt);
	p = (struct pollfd){ fd, POLLOUT, 0 };
	EXPECT(poll(&p, 1, 0) == 1 && p.revents == POLLOUT, "poll(POLLOUT): revents %#x, want POLLOUT", p.revents);
	EXPECT(send(fd, "x", 1, 0) == 1, "send: %s", E);
	p = (struct pollfd){ fd, POLLIN | POLLOUT, 0 };
	long end = now_ms() + 3000;
	while (now_ms() < end && poll(&p, 1, 100) >= 0 && !(p.revents & POLLIN))
		;
	EXPECT(p.revents == (POLLIN | POLLOUT), "revents %#x with the echo pending, want POLLIN|POLLOUT", p.revents);
	p = (struct pollfd){ fd, POLLIN | POLLRDNORM, 0 };
	EXPECT(poll(&p, 1, 0) == 1 && p.revents == (POLLIN | POLLRDNORM), "POLLRDNORM: revents %#x", p.revents);
	close(fd);
}

static void poll_mixed_and_negative(void)
{
	int fd = peer("chunks 1 1 300");
	EXPECT(fd >= 0, "connect: %s", E);
	int pp[2];
	EXPECT(pipe(pp) == 0, "pipe: %s", E);
	struct pollfd p[3] = { { fd, POLLIN, 0 }, { -1, POLLIN, 0 }, { pp[0], POLLIN, 0 } };
	EXPECT(write(pp[1], "p", 1) == 1, "write pipe: %s", E);
	int r = poll(p, 3, 2000);
	EXPECT(r == 1 && p[0].revents == 0 && p[1].revents == 0 && p[2].revents == POLLIN,
	       "poll(socket idle, -1, pipe ready): %d revents %#x %#x %#x, want 1: 0 0 POLLIN", r, p[0].revents, p[1].revents, p[2].revents);
	char c;
	EXPECT(read(pp[0], &c, 1) == 1, "read pipe: %s", E);
	long t0 = now_ms();
	r = poll(p, 3, 3000);
	long dt = now_ms() - t0;
	EXPECT(r == 1 && p[0].revents == POLLIN && p[2].revents == 0, "poll until the socket's data: %d revents %#x %#x", r, p[0].revents, p[2].revents);
	EXPECT(dt >= 150, "poll returned after %ld ms; the data comes after 300", dt);
	EXPECT(write(pp[1], "p", 1) == 1, "write pipe: %s", E);
	r = poll(p, 3, 0);
	EXPECT(r == 2 && p[0].revents == POLLIN && p[2].revents == POLLIN, "both ready: %d revents %#x %#x, want 2", r, p[0].revents, p[2].revents);
	close(pp[0]);
	close(pp[1]);
	close(fd);
}

static void poll_closed_fd_pollnval(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	int hold = open("/dev/null", O_RDONLY); /* keeps the next numbers from landing on fd */
	close(fd);
	struct pollfd p = { fd, POLLIN, 0 };
	int r = poll(&p, 1, 0);
	EXPECT(r == 1 && p.revents == POLLNVAL, "poll on a closed socket fd: %d revents %#x, want POLLNVAL", r, p.revents);
	close(hold);
}

static void poll_eof_rdhup(void)
{
	int fd = peer("sendclose 10");
	EXPECT(fd >= 0, "connect: %s", E);
	sleep_ms(100);
	struct pollfd p = { fd, POLLIN | POLLRDHUP, 0 };
	EXPECT(poll(&p, 1, 3000) == 1 && p.revents == (POLLIN | POLLRDHUP), "after data and FIN: revents %#x, want POLLIN|POLLRDHUP", p.revents);
	char b[16];
	EXPECT(read(fd, b, sizeof b) == 10, "read: %s", E);
	EXPECT(poll(&p, 1, 0) == 1 && p.revents == (POLLIN | POLLRDHUP), "after reading the data: revents %#x, want POLLIN|POLLRDHUP (EOF is readable)", p.revents);
	EXPECT(read(fd, b, sizeof b) == 0, "read at EOF: %s", E);
	close(fd);
}

static void ppoll_sigmask(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	struct sigaction sa = { .sa_handler = usr1 };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, old, empty;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigemptyset(&empty);
	sigprocmask(SIG_BLOCK, &block, &old);
	struct pollfd p = { fd, POLLIN, 0 };
	struct timespec ts = { 0, 200000000 };
	long t0 = now_ms();
	int r = ppoll(&p, 1, &ts, &block);
	long dt = now_ms() - t0;
	EXPECT(r == 0 && dt >= 150, "ppoll timeout: %d after %ld ms, want 0 after about 200", r, dt);
	raise(SIGUSR1); /* pending while blocked */
	ts = (struct timespec){ 3, 0 };
	t0 = now_ms();
	r = ppoll(&p, 1, &ts, &empty);
	dt = now_ms() - t0;
	sigprocmask(SIG_SETMASK, &old, NULL);
	EXPECT(r < 0 && errno == EINTR && dt < 1000, "ppoll unblocking a pending signal: %d %s after %ld ms, want EINTR at once", r, r < 0 ? E : "", dt);
	EXPECT(send(fd, "x", 1, 0) == 1, "send: %s", E);
	ts = (struct timespec){ 3, 0 };
	r = ppoll(&p, 1, &ts, NULL);
	EXPECT(r == 1 && p.revents == POLLIN, "ppoll with the echo: %d revents %#x", r, p.revents);
	close(fd);
}

static void select_basic(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	fd_set rd, wr;
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	struct timeval tv = { 0, 200000 };
	long t0 = now_ms();
	int r = select(fd + 1, &rd, NULL, NULL, &tv);
	long dt = now_ms() - t0;
	EXPECT(r == 0 && !FD_ISSET(fd, &rd) && dt >= 150, "select(read) on an idle connection: %d after %ld ms, want 0 after about 200", r, dt);
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	FD_ZERO(&wr);
	FD_SET(fd, &wr);
	tv = (struct timeval){ 0, 0 };
	r = select(fd + 1, &rd, &wr, NULL, &tv);
	EXPECT(r == 1 && FD_ISSET(fd, &wr) && !FD_ISSET(fd, &rd), "select(read, write): %d, want only writable", r);
	EXPECT(send(fd, "x", 1, 0) == 1, "send: %s", E);
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	tv = (struct timeval){ 3, 0 };
	r = select(fd + 1, &rd, NULL, NULL, &tv);
	EXPECT(r == 1 && FD_ISSET(fd, &rd), "select(read) with the echo coming: %d", r);
	EXPECT(tv.tv_sec < 3 && (tv.tv_sec > 0 || tv.tv_usec > 0), "select left the timeout at %ld.%06ld; Linux writes back the time not slept",
	       (long)tv.tv_sec, (long)tv.tv_usec);
	close(fd);
}

static void select_mixed_pipe(void)
{
	int fd = peer("chunks 1 1 300");
	EXPECT(fd >= 0, "connect: %s", E);
	int pp[2];
	EXPECT(pipe(pp) == 0, "pipe: %s", E);
	int maxfd = (fd > pp[0] ? fd : pp[0]) + 1;
	fd_set rd;
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	FD_SET(pp[0], &rd);
	EXPECT(write(pp[1], "p", 1) == 1, "write: %s", E);
	struct timeval tv = { 2, 0 };
	int r = select(maxfd, &rd, NULL, NULL, &tv);
	EXPECT(r == 1 && FD_ISSET(pp[0], &rd) && !FD_ISSET(fd, &rd), "select(socket idle, pipe ready): %d", r);
	char c;
	EXPECT(read(pp[0], &c, 1) == 1, "read: %s", E);
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	FD_SET(pp[0], &rd);
	tv = (struct timeval){ 3, 0 };
	r = select(maxfd, &rd, NULL, NULL, &tv);
	EXPECT(r == 1 && FD_ISSET(fd, &rd) && !FD_ISSET(pp[0], &rd), "select until the socket's data: %d", r);
	close(pp[0]);
	close(pp[1]);
	close(fd);
}

static void select_closed_ebadf(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	int hold = open("/dev/null", O_RDONLY);
	close(fd);
	fd_set rd;
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	struct timeval tv = { 0, 0 };
	int r = select(fd + 1, &rd, NULL, NULL, &tv);
	EXPECT(r < 0 && errno == EBADF, "select on a closed socket fd: %d %s, want EBADF", r, r < 0 ? E : "");
	close(hold);
}

static void pselect_sigmask(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	struct sigaction sa = { .sa_handler = usr1 };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, old, empty;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigemptyset(&empty);
	sigprocmask(SIG_BLOCK, &block, &old);
	raise(SIGUSR1);
	fd_set rd;
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	struct timespec ts = { 3, 0 };
	long t0 = now_ms();
	int r = pselect(fd + 1, &rd, NULL, NULL, &ts, &empty);
	long dt = now_ms() - t0;
	sigprocmask(SIG_SETMASK, &old, NULL);
	EXPECT(r < 0 && errno == EINTR && dt < 1000, "pselect unblocking a pending signal: %d %s after %ld ms, want EINTR at once", r, r < 0 ? E : "", dt);
	EXPECT(send(fd, "x", 1, 0) == 1, "send: %s", E);
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	ts = (struct timespec){ 3, 0 };
	r = pselect(fd + 1, &rd, NULL, NULL, &ts, NULL);
	EXPECT(r == 1 && FD_ISSET(fd, &rd), "pselect with the echo: %d", r);
	close(fd);
}

static const struct check checks[] = {
	{ "poll_timeout_pollout_pollin", poll_basic, 0 },
	{ "poll_mixed_with_pipe_and_negative_fd", poll_mixed_and_negative, 0 },
	{ "poll_closed_fd_pollnval", poll_closed_fd_pollnval, 0 },
	{ "poll_eof_pollin_pollrdhup", poll_eof_rdhup, 0 },
	{ "ppoll_timeout_and_sigmask_eintr", ppoll_sigmask, 0 },
	{ "select_timeout_read_write_remaining_time", select_basic, 0 },
	{ "select_mixed_with_pipe", select_mixed_pipe, 0 },
	{ "select_closed_fd_ebadf", select_closed_ebadf, 0 },
	{ "pselect_sigmask_eintr", pselect_sigmask, 0 },
};
SEM_MAIN(checks)
