/*
 * sem_epoll: epoll on accelerated sockets: level- and edge-triggered,
 * EPOLLONESHOT, EPOLLRDHUP, EPOLLERR/EPOLLHUP on a reset, an epoll fd inside
 * another, one socket in several sets, closing a socket still in a set,
 * listening sockets, epoll_ctl errors, epoll_pwait/epoll_pwait2. See sem.h.
 */
#include "sem.h"

static int add(int ep, int fd, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.fd = fd };
	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
}

/* wait1 waits at most ms for one event; returns the count and fills *e. */
static int wait1(int ep, struct epoll_event *e, int ms)
{
	int r;
	while ((r = epoll_wait(ep, e, 1, ms)) < 0 && errno == EINTR)
		;
	return r;
}

/* echo_pending sends s on an echo connection and waits for it to come back. */
static int echo_pending(int fd, const char *s)
{
	int n = strlen(s);
	if (send(fd, s, n, 0) != n)
		return -1;
	long end = now_ms() + 3000;
	int q = 0;
	while (now_ms() < end && ioctl(fd, FIONREAD, &q) == 0 && q < n)
		sleep_ms(2);
	return q >= n ? 0 : -1;
}

static void level(void)
{
	int fd = peer("echo"), ep = epoll_create1(EPOLL_CLOEXEC);
	EXPECT(fd >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(add(ep, fd, EPOLLIN) == 0, "EPOLL_CTL_ADD: %s", E);
	struct epoll_event e;
	EXPECT(wait1(ep, &e, 100) == 0, "event on an idle connection");
	EXPECT(echo_pending(fd, "abc") == 0, "echo did not arrive");
	EXPECT(wait1(ep, &e, 1000) == 1 && e.events == EPOLLIN && e.data.fd == fd, "level: first wait events %#x fd %d", e.events, e.data.fd);
	EXPECT(wait1(ep, &e, 1000) == 1 && e.events == EPOLLIN, "level: data unread, the second wait must report EPOLLIN again");
	char b[8];
	EXPECT(read(fd, b, sizeof b) == 3, "read: %s", E);
	EXPECT(wait1(ep, &e, 100) == 0, "level: event %#x after reading everything", e.events);
	close(ep);
	close(fd);
}

static void edge(void)
{
	int fd = peer("echo"), ep = epoll_create1(0);
	EXPECT(fd >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(fcntl(fd, F_SETFL, O_NONBLOCK) == 0, "F_SETFL: %s", E);
	EXPECT(add(ep, fd, EPOLLIN | EPOLLET) == 0, "EPOLL_CTL_ADD: %s", E);
	struct epoll_event e;
	EXPECT(echo_pending(fd, "abc") == 0, "echo did not arrive");
	EXPECT(wait1(ep, &e, 1000) == 1 && (e.events & EPOLLIN), "edge: first wait %#x", e.events);
	int r = wait1(ep, &e, 100);
	EXPECT(r == 0, "edge: second wait with no new data reported %#x", e.events);
	EXPECT(echo_pending(fd, "abcdef") == 0, "second echo did not arrive");
	EXPECT(wait1(ep, &e, 1000) == 1 && (e.events & EPOLLIN), "edge: new data (buffer not drained) must trigger again");
	char b[16];
	ssize_t n = read(fd, b, sizeof b);
	EXPECT(n == 9, "read: %zd %s, want the 9 bytes", n, n < 0 ? E : "");
	EXPECT(read(fd, b, sizeof b) < 0 && errno == EAGAIN, "read until EAGAIN");
	EXPECT(wait1(ep, &e, 100) == 0, "edge: event %#x after draining", e.events);
	close(ep);
	close(fd);
}

static void edge_out(void)
{
	int fd = peer("echo"), ep = epoll_create1(0);
	EXPECT(fd >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(add(ep, fd, EPOLLOUT | EPOLLET) == 0, "EPOLL_CTL_ADD: %s", E);
	struct epoll_event e;
	EXPECT(wait1(ep, &e, 1000) == 1 && e.events == EPOLLOUT, "edge EPOLLOUT: first wait %#x", e.events);
	EXPECT(wait1(ep, &e, 100) == 0, "edge EPOLLOUT: second wait reported %#x", e.events);
	close(ep);
	close(fd);
}

static void oneshot(void)
{
	int fd = peer("echo"), ep = epoll_create1(0);
	EXPECT(fd >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(add(ep, fd, EPOLLIN | EPOLLONESHOT) == 0, "EPOLL_CTL_ADD: %s", E);
	struct epoll_event e;
	EXPECT(echo_pending(fd, "a") == 0, "echo did not arrive");
	EXPECT(wait1(ep, &e, 1000) == 1 && e.events == EPOLLIN, "oneshot: first wait %#x", e.events);
	EXPECT(wait1(ep, &e, 100) == 0, "oneshot: reported again before EPOLL_CTL_MOD");
	EXPECT(echo_pending(fd, "b") == 0, "echo did not arrive");
	EXPECT(wait1(ep, &e, 100) == 0, "oneshot: new data reported before EPOLL_CTL_MOD");
	e = (struct epoll_event){ .events = EPOLLIN | EPOLLONESHOT, .data.fd = fd };
	EXPECT(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e) == 0, "EPOLL_CTL_MOD: %s", E);
	EXPECT(wait1(ep, &e, 1000) == 1 && e.events == EPOLLIN, "oneshot: after EPOLL_CTL_MOD %#x", e.events);
	EXPECT(wait1(ep, &e, 100) == 0, "oneshot: reported twice after rearming");
	close(ep);
	close(fd);
}

static void rdhup(void)
{
	int fd = peer("sendclose 3"), ep = epoll_create1(0);
	EXPECT(fd >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(add(ep, fd, EPOLLIN | EPOLLRDHUP) == 0, "EPOLL_CTL_ADD: %s", E);
	sleep_ms(100);
	struct epoll_event e;
	EXPECT(wait1(ep, &e, 1000) == 1 && e.events == (EPOLLIN | EPOLLRDHUP), "after data+FIN: %#x, want EPOLLIN|EPOLLRDHUP", e.events);
	close(ep);
	close(fd);
}

static void reset_err_hup(void)
{
	int fd = peer("rst"), ep = epoll_create1(0);
	EXPECT(fd >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(add(ep, fd, EPOLLOUT) == 0, "EPOLL_CTL_ADD: %s", E); /* ERR and HUP are reported unasked */
	struct epoll_event e;
	long end = now_ms() + 3000;
	e.events = 0;
	while (now_ms() < end && wait1(ep, &e, 100) >= 0 && !(e.events & EPOLLERR))
		;
	EXPECT(e.events & EPOLLERR, "no EPOLLERR within 3 s of the peer's RST (%#x)", e.events);
	sleep_ms(50); /* the reset is reported while the kernel is still closing the socket: let it settle */
	e.events = 0;
	EXPECT(wait1(ep, &e, 1000) == 1, "level-triggered EPOLLERR not reported again");
	EXPECT(e.events == (EPOLLOUT | EPOLLERR | EPOLLHUP), "after the peer's RST: %#x, want EPOLLOUT|EPOLLERR|EPOLLHUP", e.events);
	close(ep);
	close(fd);
}

static void nested(void)
{
	int fd = peer("echo"), inner = epoll_create1(0), outer = epoll_create1(0);
	EXPECT(fd >= 0 && inner >= 0 && outer >= 0, "setup: %s", E);
	EXPECT(add(inner, fd, EPOLLIN) == 0, "add socket to inner: %s", E);
	EXPECT(add(outer, inner, EPOLLIN) == 0, "add inner epoll to outer: %s", E);
	struct epoll_event e;
	EXPECT(wait1(outer, &e, 100) == 0, "outer reported %#x with nothing pending", e.events);
	EXPECT(wait_fd(inner, POLLIN, 0) == 0, "inner epoll fd polls readable with nothing pending");
	EXPECT(echo_pending(fd, "x") == 0, "echo did not arrive");
	EXPECT(wait1(outer, &e, 1000) == 1 && e.events == EPOLLIN && e.data.fd == inner, "outer: %#x fd %d, want EPOLLIN from the inner epoll fd", e.events, e.data.fd);
	EXPECT(wait_fd(inner, POLLIN, 0) == POLLIN, "poll on the inner epoll fd: not readable");
	EXPECT(wait1(inner, &e, 0) == 1 && e.data.fd == fd && e.events == EPOLLIN, "inner: %#x fd %d", e.events, e.data.fd);
	close(outer);
	close(inner);
	close(fd);
}

/* A set a thread has slept in keeps the AF_XDP fd in its wake epoll (preload/epoll.c). Once the set
 * is inside another set, frames for sockets that are not its members must not make it look
 * readable there: epoll(7) says an epoll fd is readable when one of its members is ready. */
static void nested_after_sleep(void)
{
	int fd = peer("echo"), other = peer("chunks 30 100 15"), inner = epoll_create1(0), outer = epoll_create1(0);
	EXPECT(fd >= 0 && other >= 0 && inner >= 0 && outer >= 0, "setup: %s", E);
	EXPECT(add(inner, fd, EPOLLIN) == 0, "add socket to inner: %s", E);
	struct epoll_event e;
	EXPECT(wait1(inner, &e, 50) == 0, "inner reported %#x with nothing pending", e.events);
	EXPECT(add(outer, inner, EPOLLIN) == 0, "add inner epoll to outer: %s", E);
	EXPECT(wait1(outer, &e, 300) == 0, "outer reported the inner set (%#x) while only a socket outside it received", e.events);
	EXPECT(echo_pending(fd, "x") == 0, "echo did not arrive");
	EXPECT(wait1(outer, &e, 1000) == 1 && e.data.fd == inner, "outer: %#x fd %d, want the inner epoll fd", e.events, e.data.fd);
	close(outer);
	close(inner);
	close(other);
	close(fd);
}

static void several_sets(void)
{
	int fd = peer("echo"), a = epoll_create1(0), b = epoll_create1(0);
	EXPECT(fd >= 0 && a >= 0 && b >= 0, "setup: %s", E);
	EXPECT(add(a, fd, EPOLLIN) == 0 && add(b, fd, EPOLLIN | EPOLLOUT) == 0, "EPOLL_CTL_ADD: %s", E);
	struct epoll_event e;
	EXPECT(wait1(b, &e, 1000) == 1 && e.events == EPOLLOUT, "set b before data: %#x, want EPOLLOUT", e.events);
	EXPECT(wait1(a, &e, 100) == 0, "set a before data: %#x", e.events);
	EXPECT(echo_pending(fd, "x") == 0, "echo did not arrive");
	EXPECT(wait1(a, &e, 1000) == 1 && e.events == EPOLLIN, "set a: %#x", e.events);
	EXPECT(wait1(b, &e, 1000) == 1 && e.events == (EPOLLIN | EPOLLOUT), "set b: %#x", e.events);
	EXPECT(epoll_ctl(a, EPOLL_CTL_DEL, fd, NULL) == 0, "EPOLL_CTL_DEL from a: %s", E);
	EXPECT(wait1(a, &e, 100) == 0, "set a after DEL: %#x", e.events);
	EXPECT(wait1(b, &e, 1000) == 1 && e.events == (EPOLLIN | EPOLLOUT), "set b after DEL from a: %#x", e.events);
	close(a);
	close(b);
	close(fd);
}

static void close_in_set(void)
{
	int fd = peer("echo"), ep = epoll_create1(0);
	EXPECT(fd >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(add(ep, fd, EPOLLIN) == 0, "EPOLL_CTL_ADD: %s", E);
	EXPECT(echo_pending(fd, "x") == 0, "echo did not arrive");
	struct epoll_event e;
	EXPECT(wait1(ep, &e, 1000) == 1, "no event before close");
	int num = fd;
	close(fd);
	EXPECT(wait1(ep, &e, 200) == 0, "event %#x for a socket closed while in the set", e.events);
	/* the number can be reused and added again */
	int s = peer("echo");
	EXPECT(s >= 0, "connect: %s", E);
	if (s != num) {
		EXPECT(dup2(s, num) == num, "dup2: %s", E);
		close(s);
	}
	EXPECT(add(ep, num, EPOLLIN) == 0, "EPOLL_CTL_ADD of a new socket on the closed one's number: %s", E);
	EXPECT(echo_pending(num, "y") == 0, "echo did not arrive");
	EXPECT(wait1(ep, &e, 1000) == 1 && e.data.fd == num && e.events == EPOLLIN, "new socket: %#x", e.events);
	close(ep);
	close(num);
}

static void close_with_dup_in_set(void)
{
	/* epoll registers the open file: closing one fd while a dup keeps the
	 * socket open leaves the registration, which still reports. */
	int fd = peer("echo"), ep = epoll_create1(0);
	EXPECT(fd >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(add(ep, fd, EPOLLIN) == 0, "EPOLL_CTL_ADD: %s", E);
	int d = dup(fd);
	EXPECT(d >= 0, "dup: %s", E);
	int num = fd;
	close(fd);
	EXPECT(echo_pending(d, "x") == 0, "echo did not arrive on the dup");
	struct epoll_event e;
	EXPECT(wait1(ep, &e, 1000) == 1 && e.data.fd == num && e.events == EPOLLIN,
	       "after closing the registered fd (a dup still open): events %#x, want EPOLLIN with the old data", e.events);
	close(d);
	EXPECT(wait1(ep, &e, 200) == 0, "event after the last fd closed");
	close(ep);
}

static void listening(void)
{
	int port;
	int l = listener(local_addr.sin_addr.s_addr, 4, &port), ep = epoll_create1(0);
	EXPECT(l >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(add(ep, l, EPOLLIN | EPOLLET) == 0, "EPOLL_CTL_ADD: %s", E);
	struct epoll_event e;
	EXPECT(wait1(ep, &e, 100) == 0, "listener reported %#x with no connection", e.events);
	int d = peer("dial %d 1 0", port);
	EXPECT(d >= 0, "peer: %s", E);
	EXPECT(wait1(ep, &e, 3000) == 1 && e.events == EPOLLIN, "listener: %#x, want EPOLLIN for a pending connection", e.events);
	int c = accept(l, NULL, NULL);
	EXPECT(c >= 0, "accept: %s", E);
	close(c);
	close(d);
	close(ep);
	close(l);
}

static void *dial_loopback_later(void *arg)
{
	int port = *(int *)arg;
	sleep_ms(100);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (c >= 0 && connect(c, (struct sockaddr *)&lo, sizeof lo) < 0) {
		close(c);
		c = -1;
	}
	return (void *)(long)c;
}

/* A connection that comes through the kernel (loopback) to a listener in the set wakes a thread
 * asleep in epoll_wait (under ustack: the listener's kernel shadow is watched by the set). */
static void listening_loopback_wakes_sleeper(void)
{
	int port;
	int l = listener(htonl(INADDR_ANY), 4, &port), ep = epoll_create1(0);
	EXPECT(l >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(add(ep, l, EPOLLIN) == 0, "EPOLL_CTL_ADD: %s", E);
	struct epoll_event e;
	EXPECT(wait1(ep, &e, 50) == 0, "listener reported %#x with no connection", e.events);
	pthread_t t;
	EXPECT(pthread_create(&t, NULL, dial_loopback_later, &port) == 0, "pthread_create");
	int r = wait1(ep, &e, 5000);
	void *dialed;
	pthread_join(t, &dialed);
	EXPECT((long)dialed >= 0, "connect to 127.0.0.1:%d failed", port);
	EXPECT(r == 1 && e.events == EPOLLIN, "a loopback connection while asleep: %d events %#x, want EPOLLIN before the 5 s time-out", r, r == 1 ? e.events : 0);
	int c = accept(l, NULL, NULL);
	EXPECT(c >= 0, "accept: %s", E);
	close(c);
	close((int)(long)dialed);
	close(ep);
	close(l);
}

/* Input that came through the kernel (loopback) to a UDP socket and to a listener in an
 * edge-triggered set: the one report is followed by reads and accepts until EAGAIN that get all
 * of it (under ustack the look that reported the shadow must not make the reads skip it). */
static void loopback_input_drains_after_one_edge(void)
{
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0), port;
	int l = listener(htonl(INADDR_ANY), 4, &port), ep = epoll_create1(0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof a;
	EXPECT(u >= 0 && l >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(bind(u, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(u, (struct sockaddr *)&a, &al) == 0, "bind: %s", E);
	EXPECT(fcntl(l, F_SETFL, O_NONBLOCK) == 0, "F_SETFL: %s", E);
	EXPECT(add(ep, u, EPOLLIN | EPOLLET) == 0 && add(ep, l, EPOLLIN | EPOLLET) == 0, "EPOLL_CTL_ADD: %s", E);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_port = a.sin_port, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	EXPECT(sendto(s, "one", 3, 0, (struct sockaddr *)&lo, sizeof lo) == 3 && sendto(s, "two", 3, 0, (struct sockaddr *)&lo, sizeof lo) == 3,
	       "sendto 127.0.0.1: %s", E);
	int c[2];
	lo.sin_port = htons(port);
	for (int i = 0; i < 2; i++) {
		c[i] = socket(AF_INET, SOCK_STREAM, 0);
		EXPECT(c[i] >= 0 && connect(c[i], (struct sockaddr *)&lo, sizeof lo) == 0, "connect to 127.0.0.1:%d: %s", port, E);
	}
	struct epoll_event e[4];
	int seen = 0;
	long end = now_ms() + 3000;
	while (seen != 3 && now_ms() < end) { /* both report, maybe in separate waits */
		int r = epoll_wait(ep, e, 4, 100);
		for (int i = 0; i < r; i++)
			seen |= e[i].data.fd == u ? 1 : e[i].data.fd == l ? 2 : 0;
	}
	EXPECT(seen == 3, "reports: udp %d listener %d, want both", seen & 1, seen >> 1);
	char b[16];
	int dgrams = 0, conns = 0;
	while (recv(u, b, sizeof b, 0) == 3)
		dgrams++;
	EXPECT(errno == EAGAIN, "recv: %s, want EAGAIN after the datagrams", E);
	int k;
	while ((k = accept(l, NULL, NULL)) >= 0) {
		conns++;
		close(k);
	}
	EXPECT(errno == EAGAIN, "accept: %s, want EAGAIN after the connections", E);
	EXPECT(dgrams == 2 && conns == 2, "after one report each: %d datagrams and %d connections, want 2 and 2", dgrams, conns);
	close(c[0]);
	close(c[1]);
	close(s);
	close(ep);
	close(l);
	close(u);
}

/* A reply sent while handling what epoll_wait returned goes out even when the thread then does
 * other work instead of waiting again (under ustack the kick waits for the end of the batch,
 * and the poller makes it within a millisecond). A busy ping-pong first: ustack defers kicks
 * only while the application is busy. */
static void reply_goes_while_the_loop_works(void)
{
	int fd = peer("echo"), ep = epoll_create1(0);
	EXPECT(fd >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(add(ep, fd, EPOLLIN) == 0, "EPOLL_CTL_ADD: %s", E);
	struct epoll_event e;
	char b[64];
	EXPECT(send(fd, "p", 1, 0) == 1, "send: %s", E);
	for (int i = 0; i < 2000; i++) {
		EXPECT(wait1(ep, &e, 3000) == 1, "round %d: no echo within 3 s", i);
		EXPECT(recv(fd, b, sizeof b, 0) == 1, "round %d: recv: %s", i, E);
		EXPECT(send(fd, "p", 1, 0) == 1, "round %d: send: %s", i, E);
	}
	EXPECT(wait1(ep, &e, 3000) == 1, "last round: no echo within 3 s");
	EXPECT(recv(fd, b, sizeof b, 0) == 1, "last round: recv: %s", E);
	EXPECT(send(fd, "q", 1, 0) == 1, "send: %s", E);
	sleep_ms(1000); /* other work: no call into the socket layer */
	ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
	EXPECT(r == 1 && b[0] == 'q', "the echo of a reply sent before 1 s of other work: %zd %s, want it to have come back",
	       r, r < 0 ? E : "");
	close(ep);
	close(fd);
}

static void ctl_errors(void)
{
	int fd = peer("echo"), ep = epoll_create1(0);
	EXPECT(fd >= 0 && ep >= 0, "setup: %s", E);
	struct epoll_event e = { .events = EPOLLIN };
	int r = epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
	EXPECT(r < 0 && errno == ENOENT, "MOD of an unregistered socket: %d %s, want ENOENT", r, r < 0 ? E : "");
	r = epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
	EXPECT(r < 0 && errno == ENOENT, "DEL of an unregistered socket: %d %s, want ENOENT", r, r < 0 ? E : "");
	EXPECT(add(ep, fd, EPOLLIN) == 0, "ADD: %s", E);
	r = add(ep, fd, EPOLLIN);
	EXPECT(r < 0 && errno == EEXIST, "second ADD: %d %s, want EEXIST", r, r < 0 ? E : "");
	r = add(ep, ep, EPOLLIN);
	EXPECT(r < 0 && errno == EINVAL, "ADD of the epoll fd to itself: %d %s, want EINVAL", r, r < 0 ? E : "");
	close(ep);
	close(fd);
}

static void usr1(int s) { (void)s; }

static void pwait(void)
{
	int fd = peer("echo"), ep = epoll_create1(0);
	EXPECT(fd >= 0 && ep >= 0, "setup: %s", E);
	EXPECT(add(ep, fd, EPOLLIN) == 0, "ADD: %s", E);
	struct sigaction sa = { .sa_handler = usr1 };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, old, empty;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigemptyset(&empty);
	sigprocmask(SIG_BLOCK, &block, &old);
	raise(SIGUSR1);
	struct epoll_event e;
	long t0 = now_ms();
	int r = epoll_pwait(ep, &e, 1, 3000, &empty);
	long dt = now_ms() - t0;
	sigprocmask(SIG_SETMASK, &old, NULL);
	EXPECT(r < 0 && errno == EINTR && dt < 1000, "epoll_pwait unblocking a pending signal: %d %s after %ld ms, want EINTR at once", r, r < 0 ? E : "", dt);
	struct timespec ts = { 0, 200000000 };
	t0 = now_ms();
	r = epoll_pwait2(ep, &e, 1, &ts, NULL);
	dt = now_ms() - t0;
	EXPECT(r == 0 && dt >= 150 && dt < 1500, "epoll_pwait2 timeout: %d %s after %ld ms, want 0 after about 200", r, r < 0 ? E : "", dt);
	EXPECT(echo_pending(fd, "x") == 0, "echo did not arrive");
	ts = (struct timespec){ 1, 0 };
	r = epoll_pwait2(ep, &e, 1, &ts, NULL);
	EXPECT(r == 1 && e.events == EPOLLIN, "epoll_pwait2 with data: %d %s events %#x", r, r < 0 ? E : "", e.events);
	close(ep);
	close(fd);
}

static const struct check checks[] = {
	{ "epoll_level_triggered", level, 0 },
	{ "epoll_edge_triggered_epollin", edge, 0 },
	{ "epoll_edge_triggered_epollout", edge_out, 0 },
	{ "epoll_oneshot_and_rearm", oneshot, 0 },
	{ "epoll_rdhup", rdhup, 0 },
	{ "epoll_reset_err_hup", reset_err_hup, 0 },
	{ "epoll_fd_inside_epoll_fd", nested, 0 },
	{ "epoll_fd_nested_after_a_sleep_in_it", nested_after_sleep, 0 },
	{ "epoll_same_socket_in_two_sets", several_sets, 0 },
	{ "epoll_close_socket_still_in_set", close_in_set, 0 },
	{ "epoll_close_registered_fd_dup_still_open", close_with_dup_in_set, 0 },
	{ "epoll_listening_socket", listening, 0 },
	{ "epoll_listening_loopback_connection_wakes_a_sleeper", listening_loopback_wakes_sleeper, 0 },
	{ "epoll_reply_goes_while_the_event_loop_works", reply_goes_while_the_loop_works, 0 },
	{ "epoll_loopback_input_drains_after_one_edge", loopback_input_drains_after_one_edge, 0 },
	{ "epoll_ctl_errors", ctl_errors, 0 },
	{ "epoll_pwait_sigmask_epoll_pwait2", pwait, 0 },
};
SEM_MAIN(checks)
