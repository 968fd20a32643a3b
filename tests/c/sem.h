/*
 * sem.h: the small harness shared by the semantic test programs tests/c/sem_*.c
 * (tests/semantics_test.go). Each program is a table of checks run in order:
 *
 *   sem_xxx PEER_IP PEER_PORT LOCAL_IP [CHECK]
 *
 * PEER_IP:PEER_PORT is tests/c/sem_peer.c (a kernel program in the peer
 * namespace, driven by a command line sent first on each connection);
 * PEER_PORT+1 must have no listener (connection refused); LOCAL_IP is the
 * address of the accelerated interface. With CHECK only that check runs.
 *
 * Each check prints exactly one line, "ok NAME" or "FAIL NAME: detail", and
 * the program exits 1 if any check failed. The same program runs once on
 * the kernel and once under LD_PRELOAD=libustack.so and must print the same
 * lines: the kernel run proves the expectation. A watchdog (alarm) bounds
 * every check: a hung check prints "FAIL NAME: hung ..." and ends the program.
 *
 * The Makefile does not know that sem_*.c include this file; the Go runner
 * (tests/semantics_test.go) rebuilds a program older than it.
 */
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Wunused-function"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct check {
	const char *name;
	void (*fn)(void);
	int secs; /* watchdog; 0: 10 s */
};

static const char *sem_cur = "startup";
static int sem_cur_failed, sem_any_failed;
static struct sockaddr_in peer_addr, refused_addr, local_addr;
static const char *peer_ip, *local_ip;
static int peer_port;

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...)
{
	va_list ap;
	printf("FAIL %s: ", sem_cur);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	sem_cur_failed = sem_any_failed = 1;
}

#define FAILRET(...) do { failf(__VA_ARGS__); return; } while (0)
#define EXPECT(cond, ...) do { if (!(cond)) FAILRET(__VA_ARGS__); } while (0)
#define E strerror(errno)

static void sem_watchdog(int sig)
{
	(void)sig;
	char b[300];
	int n = snprintf(b, sizeof b, "FAIL %s: hung, stopped by the watchdog; the checks after it did not run\n", sem_cur);
	if (write(1, b, n) < 0)
		_exit(4);
	_exit(3);
}

/* An unexpected SIGPIPE (its default action would kill the program) fails
 * the check, and the run goes on. */
static volatile sig_atomic_t sem_sigpipes;
static void sem_sigpipe(int sig) { (void)sig; sem_sigpipes++; }

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static unsigned char pat(size_t i) { return (unsigned char)(i % 251); }

static int pat_ok(const unsigned char *b, size_t off, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != pat(off + i))
			return 0;
	return 1;
}

/* fnv is FNV-1a 32, as the peer's sink reports it. */
static uint32_t fnv(uint32_t h, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}
#define FNV_INIT 2166136261u

static int tcp_socket(void) { return socket(AF_INET, SOCK_STREAM, 0); }

/* peer connects a blocking socket to the peer and sends the command line. */
static int peer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int peer(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	int fd = tcp_socket();
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&peer_addr, sizeof peer_addr) < 0 ||
	    send(fd, line, n, MSG_NOSIGNAL) != n) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* wait_fd polls fd for ev at most ms; returns revents (0 on timeout, -1 on error). */
static int wait_fd(int fd, short ev, int ms)
{
	struct pollfd p = { .fd = fd, .events = ev };
	for (;;) {
		int r = poll(&p, 1, ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		return r == 0 ? 0 : p.revents;
	}
}

/* read_full reads up to n bytes, waiting at most ms in all; stops at EOF or an
 * error (then errno is kept). Returns the count. */
static ssize_t read_full(int fd, void *buf, size_t n, int ms)
{
	size_t got = 0;
	long end = now_ms() + ms;
	errno = 0;
	while (got < n) {
		long left = end - now_ms();
		if (left <= 0) {
			errno = ETIMEDOUT;
			break;
		}
		if (wait_fd(fd, POLLIN, (int)left) <= 0)
			continue;
		ssize_t r = recv(fd, (char *)buf + got, n - got, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0)
			break;
		got += r;
	}
	return got;
}

/* read_line reads one line (without the newline) at most ms; "" on failure. */
static char *read_line(int fd, char *buf, size_t n, int ms)
{
	size_t got = 0;
	long end = now_ms() + ms;
	buf[0] = 0;
	while (got + 1 < n) {
		long left = end - now_ms();
		if (left <= 0 || wait_fd(fd, POLLIN, (int)left) <= 0)
			break;
		char c;
		ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0 || c == '\n')
			break;
		buf[got++] = c;
	}
	buf[got] = 0;
	return buf;
}

/* report asks the peer what a "count TAG" connection saw, waiting at most ms
 * for it to end: "eof N", "rst N", "err N", or "pending". */
static const char *report(const char *tag, int ms)
{
	static char buf[128];
	int fd = peer("report %s %d", tag, ms);
	if (fd < 0)
		return "report: cannot reach the peer";
	read_line(fd, buf, sizeof buf, ms + 3000);
	close(fd);
	return buf;
}

/* tag is a peer tag unique to this process and check. */
static const char *tag(const char *what)
{
	static char buf[128];
	snprintf(buf, sizeof buf, "%d-%s-%s", (int)getpid(), sem_cur, what);
	return buf;
}

/* listener binds a listening socket to addr (network order) on an ephemeral
 * port and returns it; *port gets the port (host order). */
static int listener(uint32_t addr, int backlog, int *port)
{
	int l = tcp_socket();
	if (l < 0)
		return -1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = addr };
	socklen_t al = sizeof a;
	if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, backlog) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &al) < 0) {
		int e = errno;
		close(l);
		errno = e;
		return -1;
	}
	*port = ntohs(a.sin_port);
	return l;
}

static char *addr_str(const struct sockaddr_in *a)
{
	static char bufs[4][64];
	static int i;
	char *b = bufs[i++ % 4];
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
	snprintf(b, 64, "%s:%d", ip, ntohs(a->sin_port));
	return b;
}

/* Signal helpers: a counting handler, installed with or without SA_RESTART. */
static volatile sig_atomic_t sig_count;
static void count_sig(int sig) { (void)sig; sig_count++; }

static void on_signal(int sig, int flags)
{
	struct sigaction sa = { .sa_handler = count_sig, .sa_flags = flags };
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}

static int sem_run(int argc, char **argv, const struct check *c, size_t n)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s PEER_IP PEER_PORT LOCAL_IP [CHECK]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	peer_ip = argv[1];
	peer_port = atoi(argv[2]);
	local_ip = argv[3];
	peer_addr = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(peer_port) };
	refused_addr = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(peer_port + 1) };
	local_addr = (struct sockaddr_in){ .sin_family = AF_INET };
	if (inet_pton(AF_INET, peer_ip, &peer_addr.sin_addr) != 1 ||
	    inet_pton(AF_INET, peer_ip, &refused_addr.sin_addr) != 1 ||
	    inet_pton(AF_INET, local_ip, &local_addr.sin_addr) != 1) {
		fprintf(stderr, "bad address\n");
		return 2;
	}
	signal(SIGALRM, sem_watchdog);
	int ran = 0;
	for (size_t i = 0; i < n; i++) {
		if (argc > 4 && strcmp(argv[4], c[i].name) != 0)
			continue;
		ran++;
		sem_cur = c[i].name;
		sem_cur_failed = 0;
		signal(SIGPIPE, sem_sigpipe); /* checks that expect SIGPIPE install their own handler */
		alarm(c[i].secs ? c[i].secs : 10);
		sem_sigpipes = 0;
		c[i].fn();
		alarm(0);
		if (sem_sigpipes && !sem_cur_failed)
			failf("unexpected SIGPIPE (its default action would have killed the program)");
		if (!sem_cur_failed)
			printf("ok %s\n", c[i].name);
	}
	if (!ran) {
		fprintf(stderr, "no check named %s\n", argv[4]);
		return 2;
	}
	return sem_any_failed;
}

#define SEM_MAIN(table) \
	int main(int argc, char **argv) { return sem_run(argc, argv, table, sizeof table / sizeof *table); }
