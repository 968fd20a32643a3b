/*
 * sem_signal: a signal handler interrupting a blocking call on an accelerated
 * socket. Without SA_RESTART recv/accept/send return EINTR (or a partial
 * count); with SA_RESTART recv and accept resume and complete; epoll_wait
 * and poll are never restarted, and a socket with SO_RCVTIMEO returns EINTR
 * even with SA_RESTART (signal(7)). The signal comes from a helper thread,
 * either to the blocked thread (pthread_kill) or to the process (kill). See sem.h.
 */
#include "sem.h"

struct shot {
	pthread_t target;
	int delay_ms;
	int process; /* kill(getpid()) rather than pthread_kill */
};

static void *shooter(void *arg)
{
	struct shot *s = arg;
	sleep_ms(s->delay_ms);
	if (s->process)
		kill(getpid(), SIGUSR1);
	else
		pthread_kill(s->target, SIGUSR1);
	return NULL;
}

static pthread_t shoot_t;
static struct shot shot_arg;

/* shoot sends SIGUSR1 to this thread (or the process) after ms. */
static void shoot(int ms, int process)
{
	shot_arg = (struct shot){ pthread_self(), ms, process };
	pthread_create(&shoot_t, NULL, shooter, &shot_arg);
}

static void shot_done(void) { pthread_join(shoot_t, NULL); }

static void recv_eintr(int process)
{
	int fd = peer("hold 5000");
	EXPECT(fd >= 0, "connect: %s", E);
	on_signal(SIGUSR1, 0);
	sig_count = 0;
	shoot(200, process);
	char b[8];
	long t0 = now_ms();
	ssize_t r = recv(fd, b, sizeof b, 0);
	long dt = now_ms() - t0;
	shot_done();
	EXPECT(r < 0 && errno == EINTR, "blocking recv: %zd %s after %ld ms, want EINTR", r, r < 0 ? E : "", dt);
	EXPECT(sig_count == 1, "handler ran %d times", (int)sig_count);
	EXPECT(dt >= 150 && dt < 1500, "recv returned after %ld ms; the signal came at 200", dt);
	close(fd);
}
static void recv_eintr_thread(void) { recv_eintr(0); }
static void recv_eintr_process(void) { recv_eintr(1); }

static void recv_restart(int process)
{
	int fd = peer("chunks 1 5 700");
	EXPECT(fd >= 0, "connect: %s", E);
	on_signal(SIGUSR1, SA_RESTART);
	sig_count = 0;
	shoot(200, process);
	unsigned char b[8];
	long t0 = now_ms();
	ssize_t r = recv(fd, b, sizeof b, 0);
	long dt = now_ms() - t0;
	shot_done();
	EXPECT(r == 5 && pat_ok(b, 0, 5), "blocking recv with SA_RESTART: %zd %s after %ld ms, want the 5 bytes", r, r < 0 ? E : "", dt);
	EXPECT(sig_count == 1, "handler ran %d times", (int)sig_count);
	EXPECT(dt >= 500, "recv returned after %ld ms; the data comes at 700", dt);
	close(fd);
}
static void recv_restart_thread(void) { recv_restart(0); }
static void recv_restart_process(void) { recv_restart(1); }

static void read_eintr(void)
{
	int fd = peer("hold 5000");
	EXPECT(fd >= 0, "connect: %s", E);
	on_signal(SIGUSR1, 0);
	sig_count = 0;
	shoot(200, 0);
	char b[8];
	ssize_t r = read(fd, b, sizeof b);
	shot_done();
	EXPECT(r < 0 && errno == EINTR && sig_count == 1, "blocking read: %zd %s, handler %d; want EINTR", r, r < 0 ? E : "", (int)sig_count);
	close(fd);
}

static void waitall_restart(void)
{
	int fd = peer("chunks 2 100 400");
	EXPECT(fd >= 0, "connect: %s", E);
	on_signal(SIGUSR1, SA_RESTART);
	sig_count = 0;
	shoot(600, 0); /* after the first chunk, before the second */
	unsigned char b[200];
	ssize_t r = recv(fd, b, sizeof b, MSG_WAITALL);
	shot_done();
	/* Linux returns the part already received when a signal interrupts a recv that copied data. */
	EXPECT(r == 100 && pat_ok(b, 0, 100), "recv(200, MSG_WAITALL) interrupted after 100 bytes: %zd %s, want 100", r, r < 0 ? E : "");
	EXPECT(sig_count == 1, "handler ran %d times", (int)sig_count);
	close(fd);
}

static void accept_eintr(void)
{
	int port;
	int l = listener(local_addr.sin_addr.s_addr, 4, &port);
	EXPECT(l >= 0, "listen: %s", E);
	on_signal(SIGUSR1, 0);
	sig_count = 0;
	shoot(200, 0);
	int c = accept(l, NULL, NULL);
	shot_done();
	EXPECT(c < 0 && errno == EINTR && sig_count == 1, "blocking accept: %d %s, handler %d; want EINTR", c, c < 0 ? E : "", (int)sig_count);
	close(l);
}

static void accept_restart(void)
{
	int port;
	int l = listener(local_addr.sin_addr.s_addr, 4, &port);
	EXPECT(l >= 0, "listen: %s", E);
	int d = peer("dial %d 1 700", port);
	EXPECT(d >= 0, "peer: %s", E);
	on_signal(SIGUSR1, SA_RESTART);
	sig_count = 0;
	shoot(200, 0);
	long t0 = now_ms();
	int c = accept(l, NULL, NULL);
	long dt = now_ms() - t0;
	shot_done();
	EXPECT(c >= 0, "blocking accept with SA_RESTART: %s after %ld ms, want the connection", E, dt);
	EXPECT(sig_count == 1 && dt >= 500, "handler %d, accept after %ld ms (connection at 700)", (int)sig_count, dt);
	close(c);
	close(d);
	close(l);
}

static void epoll_eintr_even_restart(void)
{
	int fd = peer("hold 5000"), ep = epoll_create1(0);
	EXPECT(fd >= 0 && ep >= 0, "setup: %s", E);
	struct epoll_event e = { .events = EPOLLIN, .data.fd = fd };
	EXPECT(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0, "ADD: %s", E);
	on_signal(SIGUSR1, SA_RESTART);
	sig_count = 0;
	shoot(200, 0);
	int r = epoll_wait(ep, &e, 1, 3000);
	shot_done();
	EXPECT(r < 0 && errno == EINTR && sig_count == 1, "epoll_wait with an SA_RESTART handler: %d %s, handler %d; want EINTR (never restarted)",
	       r, r < 0 ? E : "", (int)sig_count);
	close(ep);
	close(fd);
}

static void poll_eintr_even_restart(void)
{
	int fd = peer("hold 5000");
	EXPECT(fd >= 0, "connect: %s", E);
	on_signal(SIGUSR1, SA_RESTART);
	sig_count = 0;
	shoot(200, 0);
	struct pollfd p = { fd, POLLIN, 0 };
	int r = poll(&p, 1, 3000);
	shot_done();
	EXPECT(r < 0 && errno == EINTR && sig_count == 1, "poll with an SA_RESTART handler: %d %s, handler %d; want EINTR (never restarted)",
	       r, r < 0 ? E : "", (int)sig_count);
	fd_set rd;
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	struct timeval tv = { 3, 0 };
	sig_count = 0;
	shoot(200, 0);
	r = select(fd + 1, &rd, NULL, NULL, &tv);
	shot_done();
	EXPECT(r < 0 && errno == EINTR && sig_count == 1, "select with an SA_RESTART handler: %d %s; want EINTR (never restarted)", r, r < 0 ? E : "");
	close(fd);
}

static void rcvtimeo_eintr_even_restart(void)
{
	int fd = peer("hold 5000");
	EXPECT(fd >= 0, "connect: %s", E);
	struct timeval tv = { 3, 0 };
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO: %s", E);
	on_signal(SIGUSR1, SA_RESTART);
	sig_count = 0;
	shoot(200, 0);
	char b[8];
	long t0 = now_ms();
	ssize_t r = recv(fd, b, sizeof b, 0);
	long dt = now_ms() - t0;
	shot_done();
	EXPECT(r < 0 && errno == EINTR && dt < 1500, "recv with SO_RCVTIMEO and an SA_RESTART handler: %zd %s after %ld ms; want EINTR at the signal",
	       r, r < 0 ? E : "", dt);
	close(fd);
}

static void send_interrupted(void)
{
	int fd = peer("hold 8000");
	EXPECT(fd >= 0, "connect: %s", E);
	on_signal(SIGUSR1, 0);
	sig_count = 0;
	static char buf[64 << 20];
	shoot(500, 0);
	long t0 = now_ms();
	ssize_t r = send(fd, buf, sizeof buf, 0);
	long dt = now_ms() - t0;
	shot_done();
	EXPECT(sig_count == 1, "handler ran %d times", (int)sig_count);
	EXPECT((r > 0 && r < (ssize_t)sizeof buf) || (r < 0 && errno == EINTR),
	       "64 MiB blocking send to a peer that does not read, interrupted: %zd %s after %ld ms; want a partial count or EINTR", r, r < 0 ? E : "", dt);
	EXPECT(r > 0, "send returned EINTR though it had queued data (Linux returns the count)");
	close(fd);
}

static const struct check checks[] = {
	{ "recv_eintr_thread_signal", recv_eintr_thread, 0 },
	{ "recv_eintr_process_signal", recv_eintr_process, 0 },
	{ "recv_sa_restart_resumes_thread_signal", recv_restart_thread, 0 },
	{ "recv_sa_restart_resumes_process_signal", recv_restart_process, 0 },
	{ "read_eintr", read_eintr, 0 },
	{ "recv_waitall_interrupted_returns_partial", waitall_restart, 0 },
	{ "accept_eintr", accept_eintr, 0 },
	{ "accept_sa_restart_resumes", accept_restart, 0 },
	{ "epoll_wait_eintr_even_with_sa_restart", epoll_eintr_even_restart, 0 },
	{ "poll_select_eintr_even_with_sa_restart", poll_eintr_even_restart, 0 },
	{ "recv_so_rcvtimeo_eintr_even_with_sa_restart", rcvtimeo_eintr_even_restart, 0 },
	{ "send_blocked_interrupted_returns_partial", send_interrupted, 15 },
};
SEM_MAIN(checks)
