/*
 * sem_noneigh: connect to an on-link address that has no neighbour.
 * See sem.h for how to run it.
 *
 * The addresses are LOCAL_IP's /24 with a last octet from 200 up: nothing in the
 * topology uses them, so ARP asks three times, one second apart, and gives up. Each
 * connect takes an address that has no entry at all in the kernel's neighbour table
 * (/proc/net/arp lists INCOMPLETE and FAILED entries too), so that no entry left
 * by an earlier check, or by the kernel run of this program in the same
 * namespace, changes the next one.
 *
 * The first check, the control, connects to the peer (a resolved neighbour on
 * the same interface).
 *
 * What the kernel does (Linux 6.x, mcast_solicit 3, retrans_time 1 s), and so
 * what these checks expect:
 *   - a non-blocking connect returns -1 EINPROGRESS at once (tens of us): the
 *     SYN waits in the neighbour's queue;
 *   - nothing is reported for about 3 s; then ARP fails, the kernel answers the
 *     queued SYN with an ICMP host unreachable to itself and the connection
 *     fails: poll(POLLOUT) gives exactly POLLOUT|POLLERR|POLLHUP, SO_ERROR is
 *     EHOSTUNREACH once, then 0; a connect after that is -1 ECONNABORTED;
 *   - a blocking connect fails with EHOSTUNREACH after about 3 s;
 *   - a signal whose handler has no SA_RESTART interrupts a blocking connect
 *     with EINTR; the connection attempt goes on: a non-blocking connect then
 *     says EALREADY and the failure comes ~3 s after the first connect as
 *     above, and a blocking connect waits for it and returns EHOSTUNREACH.
 * (A second connect to an address whose entry is FAILED asks ARP again and
 * also takes ~3 s on this kernel; fresh addresses keep that out of the picture.)
 *
 * The SIGALRM checks time the signal with setitimer, as a program would; the
 * harness's watchdog (alarm, the same timer) is a thread meanwhile.
 */
#include "sem.h"

/* ARP gives up after mcast_solicit (3) probes retrans_time (1 s) apart: the
 * kernel reports the failure ~3.05 s after the connect. */
#define FAIL_MIN_MS 2000
#define FAIL_MAX_MS 5000

static int so_error(int fd)
{
	int err = -1;
	socklen_t l = sizeof err;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
		return -errno;
	return err;
}

static const char *errname(int e)
{
	switch (e) {
	case 0: return "0";
	case EINPROGRESS: return "EINPROGRESS";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ENETUNREACH: return "ENETUNREACH";
	case ETIMEDOUT: return "ETIMEDOUT";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ECONNABORTED: return "ECONNABORTED";
	case EALREADY: return "EALREADY";
	case EISCONN: return "EISCONN";
	case EINTR: return "EINTR";
	case EAGAIN: return "EAGAIN";
	default: return strerror(e);
	}
}

/* in_arp_table reports whether ip (dotted) has any entry in the kernel's
 * neighbour table of this namespace. */
static int in_arp_table(const char *ip)
{
	FILE *f = fopen("/proc/net/arp", "r");
	if (!f)
		return 0;
	char line[256], first[64];
	int found = 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "%63s", first) == 1 && strcmp(first, ip) == 0)
			found = 1;
	fclose(f);
	return found;
}

/* fresh_addr sets *a to an address of LOCAL_IP's /24 that nothing uses and
 * that has no neighbour entry; a different one at each call. 0, or -1 (and
 * the check failed) when none is left. */
static int fresh_addr(struct sockaddr_in *a)
{
	static int next = 200;
	while (next < 255) {
		*a = local_addr;
		a->sin_port = htons(peer_port);
		((unsigned char *)&a->sin_addr)[3] = (unsigned char)next++;
		if (a->sin_addr.s_addr == local_addr.sin_addr.s_addr || a->sin_addr.s_addr == peer_addr.sin_addr.s_addr)
			continue;
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		if (!in_arp_table(ip))
			return 0;
	}
	failf("no address of %s/24 without a neighbour entry left in .200-.254", local_ip);
	return -1;
}

static double now_msf(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* How long the last non-blocking connect call took (nb_start), for messages. */
static double connect_call_ms = -1;

static int set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* nb_start opens a non-blocking socket and connects it to a fresh address;
 * it expects -1 EINPROGRESS. Returns the fd (-1: the check failed), the
 * connect's duration in *ms and the start time in *t0. */
static int nb_start(struct sockaddr_in *to, double *ms, double *t0)
{
	if (fresh_addr(to) < 0)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		failf("socket: %s", E);
		return -1;
	}
	*t0 = now_msf();
	int r = connect(fd, (struct sockaddr *)to, sizeof *to);
	int e = errno;
	*ms = now_msf() - *t0;
	connect_call_ms = *ms;
	if (r == 0 || e != EINPROGRESS) {
		failf("non-blocking connect to %s (no neighbour): %d %s after %.3f ms, want -1 EINPROGRESS",
		      addr_str(to), r, r < 0 ? errname(e) : "", *ms);
		close(fd);
		return -1;
	}
	return fd;
}

/* wait_failure waits (at most FAIL_MAX_MS + 5 s from t0) for the connect to
 * fail and checks what the kernel reports: POLLOUT|POLLERR|POLLHUP between
 * FAIL_MIN_MS and FAIL_MAX_MS after t0, SO_ERROR EHOSTUNREACH, then 0. */
static int wait_failure(int fd, const struct sockaddr_in *to, double t0)
{
	int rev = wait_fd(fd, POLLOUT, (int)(t0 + FAIL_MAX_MS + 5000 - now_msf()));
	double at = now_msf() - t0;
	if (rev <= 0) {
		failf("connect to %s (no neighbour): no event %.0f ms after the connect (poll %d), want POLLOUT|POLLERR|POLLHUP at ~3 s",
		      addr_str(to), at, rev);
		return -1;
	}
	/* the kernel reports the error (tcp_write_err: sk_error_report wakes the poll) a moment before
	 * it closes the socket (tcp_done): a poll woken in between sees POLLERR alone; the state it
	 * settles in is what counts */
	if (rev == POLLERR) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		for (int i = 0; i < 100 && poll(&p, 1, 1) >= 0 && p.revents == POLLERR; i++)
			;
		rev = p.revents;
	}
	if (rev != (POLLOUT | POLLERR | POLLHUP)) {
		failf("connect to %s (no neighbour): revents %#x at %.0f ms, want POLLOUT|POLLERR|POLLHUP (%#x)",
		      addr_str(to), rev, at, POLLOUT | POLLERR | POLLHUP);
		return -1;
	}
	if (at < FAIL_MIN_MS || at > FAIL_MAX_MS) {
		char took[64] = "";
		if (connect_call_ms >= 0)
			snprintf(took, sizeof took, " (the connect call itself took %.0f ms)", connect_call_ms);
		failf("connect to %s (no neighbour) failed %.0f ms after the connect%s, want %d-%d ms (ARP gives up after ~3 s)",
		      addr_str(to), at, took, FAIL_MIN_MS, FAIL_MAX_MS);
		return -1;
	}
	int err = so_error(fd);
	if (err != EHOSTUNREACH) {
		failf("connect to %s (no neighbour): SO_ERROR %s (%d) at %.0f ms, want EHOSTUNREACH",
		      addr_str(to), errname(err < 0 ? -err : err), err, at);
		return -1;
	}
	err = so_error(fd);
	if (err != 0) {
		failf("second SO_ERROR %s (%d), want 0 (reading it clears it)", errname(err < 0 ? -err : err), err);
		return -1;
	}
	return 0;
}

/* (a) A non-blocking connect answers EINPROGRESS in under 1 ms: the minimum
 * over three attempts, each to its own address, so that a descheduled
 * moment on a busy machine cannot fail it, while a call that waits for ARP
 * (seconds) always does. Nothing is reported at once. */
static void nb_einprogress_fast(void)
{
	int fds[3];
	double ms[3], t0, best = 1e9;
	struct sockaddr_in to[3];
	int n = 0;
	for (; n < 3; n++) {
		fds[n] = nb_start(&to[n], &ms[n], &t0);
		if (fds[n] < 0)
			break;
		if (ms[n] < best)
			best = ms[n];
		int rev = wait_fd(fds[n], POLLOUT, 0);
		if (rev != 0) {
			failf("connect to %s (no neighbour): revents %#x at once, want none while ARP asks", addr_str(&to[n]), rev);
			n++;
			break;
		}
	}
	if (n == 3 && !sem_cur_failed && best >= 1.0)
		failf("non-blocking connect to an address without a neighbour took %.3f, %.3f, %.3f ms, want the fastest < 1 ms",
		      ms[0], ms[1], ms[2]);
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* (a) ...and the failure comes when ARP gives up: POLLOUT|POLLERR|POLLHUP,
 * SO_ERROR EHOSTUNREACH. */
static void nb_ehostunreach(void)
{
	struct sockaddr_in to;
	double ms, t0;
	int fd = nb_start(&to, &ms, &t0);
	if (fd < 0)
		return;
	int rev = wait_fd(fd, POLLOUT, 1000);
	if (rev != 0) {
		failf("connect to %s (no neighbour): revents %#x within 1 s, want none while ARP asks (~3 s)", addr_str(&to), rev);
		close(fd);
		return;
	}
	wait_failure(fd, &to, t0);
	close(fd);
}

/* After the failure was read with SO_ERROR, Linux answers a connect on the
 * same socket ECONNABORTED (the socket is still "connecting", its
 * connection closed and its error taken). */
static void nb_failed_connect_again(void)
{
	struct sockaddr_in to;
	double ms, t0;
	int fd = nb_start(&to, &ms, &t0);
	if (fd < 0)
		return;
	if (wait_failure(fd, &to, t0) == 0) {
		int r = connect(fd, (struct sockaddr *)&to, sizeof to);
		int e = errno;
		if (r == 0 || e != ECONNABORTED)
			failf("connect again after the failure (SO_ERROR read): %d %s, want -1 ECONNABORTED", r,
			      r < 0 ? errname(e) : "");
	}
	close(fd);
}

/* (c) A blocking connect fails with EHOSTUNREACH when ARP gives up. */
static void blocking_ehostunreach(void)
{
	struct sockaddr_in to;
	if (fresh_addr(&to) < 0)
		return;
	int fd = tcp_socket();
	EXPECT(fd >= 0, "socket: %s", E);
	double t0 = now_msf();
	int r = connect(fd, (struct sockaddr *)&to, sizeof to);
	int e = errno;
	double at = now_msf() - t0;
	close(fd);
	EXPECT(r < 0 && e == EHOSTUNREACH, "blocking connect to %s (no neighbour): %d %s after %.0f ms, want -1 EHOSTUNREACH",
	       addr_str(&to), r, r < 0 ? errname(e) : "", at);
	EXPECT(at >= FAIL_MIN_MS && at <= FAIL_MAX_MS, "blocking connect to %s failed after %.0f ms, want %d-%d ms (ARP gives up after ~3 s)",
	       addr_str(&to), at, FAIL_MIN_MS, FAIL_MAX_MS);
}

/*
 * (b) SIGALRM interrupts a blocking connect. The check's own timer must be
 * SIGALRM, which the harness's watchdog (alarm) uses too: while it runs, a
 * thread with SIGALRM blocked is the watchdog instead.
 */
static volatile int wd_stop;

static void *wd_main(void *arg)
{
	long end = now_ms() + (long)(intptr_t)arg * 1000;
	while (!__atomic_load_n(&wd_stop, __ATOMIC_SEQ_CST)) {
		if (now_ms() >= end)
			sem_watchdog(SIGALRM);
		sleep_ms(10);
	}
	return NULL;
}

/* wd_start replaces the harness's alarm by a watchdog thread (SIGALRM blocked
 * in it, so a process-directed SIGALRM goes to the main thread). */
static pthread_t wd_start(void)
{
	unsigned left = alarm(0);
	if (left == 0)
		left = 30;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	wd_stop = 0;
	pthread_t t;
	if (pthread_create(&t, NULL, wd_main, (void *)(intptr_t)left) != 0) {
		fprintf(stderr, "pthread_create failed\n");
		_exit(2);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return t;
}

/* wd_end stops the watchdog thread, puts the harness's SIGALRM handler back
 * and gives it secs more. */
static void wd_end(pthread_t t, int secs)
{
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	__atomic_store_n(&wd_stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(t, NULL);
	signal(SIGALRM, sem_watchdog);
	alarm(secs);
}

/* eintr_connect: a blocking connect to a fresh address, interrupted by
 * SIGALRM (setitimer, 300 ms; handler installed by sigaction without
 * SA_RESTART). Expects -1 EINTR within 300-1500 ms (ARP gives up only at
 * ~3 s) and the handler run once. Returns the fd, or -1 when the check failed. */
static int eintr_connect(struct sockaddr_in *to, double *t0)
{
	if (fresh_addr(to) < 0)
		return -1;
	int fd = tcp_socket();
	if (fd < 0) {
		failf("socket: %s", E);
		return -1;
	}
	on_signal(SIGALRM, 0);
	sig_count = 0;
	connect_call_ms = -1; /* blocking: interrupted, not timed here */
	struct itimerval it = { { 0, 0 }, { 0, 300000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	*t0 = now_msf();
	int r = connect(fd, (struct sockaddr *)to, sizeof *to);
	int e = errno;
	double at = now_msf() - *t0;
	if (r == 0 || e != EINTR) {
		failf("blocking connect to %s (no neighbour), SIGALRM after 300 ms (no SA_RESTART): %d %s after %.0f ms (handler ran %d times), want -1 EINTR at ~300 ms",
		      addr_str(to), r, r < 0 ? errname(e) : "", at, (int)sig_count);
		close(fd);
		return -1;
	}
	if (at < 250 || at > 1500 || sig_count != 1) {
		failf("blocking connect to %s: EINTR after %.0f ms with the handler run %d times, want at 300-1500 ms, once",
		      addr_str(to), at, (int)sig_count);
		close(fd);
		return -1;
	}
	return fd;
}

/* After EINTR the connection attempt goes on (Linux): a non-blocking connect
 * says EALREADY, and the failure comes as for a non-blocking connect. */
static void blocking_eintr_ealready(void)
{
	pthread_t wd = wd_start();
	struct sockaddr_in to;
	double t0;
	int fd = eintr_connect(&to, &t0);
	wd_end(wd, 15);
	if (fd < 0)
		return;
	if (set_nonblock(fd, 1) < 0) {
		failf("F_SETFL O_NONBLOCK: %s", E);
		close(fd);
		return;
	}
	int r = connect(fd, (struct sockaddr *)&to, sizeof to);
	int e = errno;
	if (r == 0 || e != EALREADY) {
		failf("non-blocking connect after EINTR: %d %s, want -1 EALREADY (the first attempt goes on)", r,
		      r < 0 ? errname(e) : "");
		close(fd);
		return;
	}
	wait_failure(fd, &to, t0);
	close(fd);
}

/* After EINTR, a blocking connect on the same socket waits for the attempt
 * under way and returns its result: EHOSTUNREACH ~3 s after the first
 * connect; SO_ERROR is 0 afterwards (the connect took the error). */
static void blocking_eintr_blocking_again(void)
{
	pthread_t wd = wd_start();
	struct sockaddr_in to;
	double t0;
	int fd = eintr_connect(&to, &t0);
	wd_end(wd, 15);
	if (fd < 0)
		return;
	int r = connect(fd, (struct sockaddr *)&to, sizeof to);
	int e = errno;
	double at = now_msf() - t0;
	if (r == 0 || e != EHOSTUNREACH) {
		failf("blocking connect again after EINTR: %d %s %.0f ms after the first, want -1 EHOSTUNREACH when ARP gives up (~3 s)",
		      r, r < 0 ? errname(e) : "", at);
	} else if (at < FAIL_MIN_MS || at > FAIL_MAX_MS) {
		failf("blocking connect again after EINTR: EHOSTUNREACH %.0f ms after the first connect, want %d-%d ms",
		      at, FAIL_MIN_MS, FAIL_MAX_MS);
	} else if ((r = so_error(fd)) != 0) {
		failf("SO_ERROR after the connect returned EHOSTUNREACH: %s (%d), want 0", errname(r < 0 ? -r : r), r);
	}
	close(fd);
}

/* The control: the peer, a resolved neighbour on the same interface, connects
 * and echoes (and the runner sees an accelerated connection). */
static void control_peer(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect to the peer %s: %s", addr_str(&peer_addr), E);
	char buf[8] = { 0 };
	EXPECT(send(fd, "ping", 4, MSG_NOSIGNAL) == 4, "send: %s", E);
	EXPECT(read_full(fd, buf, 4, 3000) == 4 && memcmp(buf, "ping", 4) == 0, "echo: got %.4s (%s)", buf, E);
	close(fd);
}

static const struct check checks[] = {
	{ "control_connect_resolved_peer_echo", control_peer, 0 },
	{ "nb_connect_noneigh_einprogress_under_1ms", nb_einprogress_fast, 30 },
	{ "nb_connect_noneigh_pollout_pollerr_pollhup_so_error_ehostunreach", nb_ehostunreach, 20 },
	{ "nb_connect_noneigh_failed_then_connect_again_econnaborted", nb_failed_connect_again, 20 },
	{ "blocking_connect_noneigh_sigalrm_no_restart_eintr_then_ealready_then_ehostunreach", blocking_eintr_ealready, 20 },
	{ "blocking_connect_noneigh_sigalrm_eintr_then_blocking_connect_waits_ehostunreach", blocking_eintr_blocking_again, 20 },
	{ "blocking_connect_noneigh_ehostunreach_after_arp", blocking_ehostunreach, 20 },
};
SEM_MAIN(checks)
