/*
 * sem_peer: the kernel-side peer of the semantic tests (tests/c/sem_*.c).
 *
 *   sem_peer PORT
 *
 * Listens on 0.0.0.0:PORT and, when the namespace has IPv6, on [::]:PORT (IPV6_V6ONLY);
 * each connection starts with one command line
 * (read byte by byte, so nothing after it is consumed) and is served by its
 * own thread:
 *
 *   echo              echo until EOF, then close
 *   sink              read until EOF, reply "N HASH" (byte count, FNV-1a 32 hex), close
 *   send N            write N pattern bytes (byte i = i % 251), read until EOF, close
 *   sendclose N       write N pattern bytes, close
 *   chunks K N MS     K times: sleep MS, write N pattern bytes; then read until EOF, close
 *   rst               close at once with SO_LINGER {1, 0}: the client gets a RST
 *   hold MS           read nothing for MS milliseconds, then close
 *   count TAG         read until EOF or error; record "eof N" / "rst N" / "err N" as TAG
 *   shutwr TAG        shutdown(SHUT_WR) at once, then as count TAG
 *   report TAG MS     wait at most MS for TAG to be recorded; reply its record or "pending"
 *   dial PORT N MS    after MS, open N connections to the client's address:PORT (IPv4 or
 *                     IPv6, as the client came), each writes "hello\n" once connected and then
 *                     echoes until EOF; reply "dialing"
 *   probe PORT        connect once to the client's address:PORT, close; reply "connected",
 *                     "refused" or "error ERRNO"
 *   name              reply "IP:PORT" of the client as this side sees it (an IPv6 IP unbracketed)
 *
 * A UDP socket on [::]:PORT (dual-stack; 0.0.0.0:PORT without IPv6) echoes each datagram as
 * "PAYLOAD from IP tclass T hops H": IP the sender's address as this side sees it (::ffff:a.b.c.d
 * for an IPv4 sender), T and H its IPv6 traffic class and hop limit (-1 for an IPv4 sender).
 *
 * Not a test program itself: the runner skips it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int write_all(int fd, const void *b, size_t n)
{
	const char *p = b;
	while (n > 0) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= r;
	}
	return 0;
}

static int write_pattern(int fd, long off, long n)
{
	unsigned char buf[65536];
	while (n > 0) {
		long k = n < (long)sizeof buf ? n : (long)sizeof buf;
		for (long i = 0; i < k; i++)
			buf[i] = (unsigned char)((off + i) % 251);
		if (write_all(fd, buf, k) < 0)
			return -1;
		off += k;
		n -= k;
	}
	return 0;
}

static void reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(int fd, const char *fmt, ...)
{
	char b[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b, sizeof b - 1, fmt, ap);
	va_end(ap);
	b[n++] = '\n';
	write_all(fd, b, n);
}

/* drain reads until EOF or error; returns the count, *err gets errno (0 at EOF). */
static long drain(int fd, int *err, uint32_t *hash)
{
	char buf[65536];
	long n = 0;
	uint32_t h = 2166136261u;
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			*err = r < 0 ? errno : 0;
			break;
		}
		for (ssize_t i = 0; i < r; i++)
			h = (h ^ (unsigned char)buf[i]) * 16777619u;
		n += r;
	}
	if (hash)
		*hash = h;
	return n;
}

/* The record table of count/shutwr, read by report. */
#define NREC 1024
static struct { char tag[96]; char rec[64]; } recs[NREC];
static int nrec;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void record(const char *tag, const char *rec)
{
	pthread_mutex_lock(&mu);
	if (nrec < NREC) {
		snprintf(recs[nrec].tag, sizeof recs[nrec].tag, "%s", tag);
		snprintf(recs[nrec].rec, sizeof recs[nrec].rec, "%s", rec);
		nrec++;
	}
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void lookup(const char *tag, int ms, char *out, size_t n)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&mu);
	for (;;) {
		for (int i = 0; i < nrec; i++)
			if (strcmp(recs[i].tag, tag) == 0) {
				snprintf(out, n, "%s", recs[i].rec);
				pthread_mutex_unlock(&mu);
				return;
			}
		if (pthread_cond_timedwait(&cv, &mu, &dl) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&mu);
	snprintf(out, n, "pending");
}

static void count(int fd, const char *tag)
{
	int err;
	long n = drain(fd, &err, NULL);
	char rec[64];
	snprintf(rec, sizeof rec, "%s %ld", err == 0 ? "eof" : err == ECONNRESET ? "rst" : "err", n);
	record(tag, rec);
}

struct dialer {
	struct sockaddr_storage to;
	socklen_t tolen;
	int delay_ms;
};

/* set_port sets the port of an AF_INET or AF_INET6 address. */
static void set_port(struct sockaddr_storage *a, int port)
{
	if (a->ss_family == AF_INET6)
		((struct sockaddr_in6 *)a)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)a)->sin_port = htons(port);
}

/* addr_text prints an AF_INET or AF_INET6 address's IP (no port, no zone) into b. */
static const char *addr_text(const struct sockaddr_storage *a, char *b, size_t n)
{
	snprintf(b, n, "?");
	if (a->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, b, n);
	else if (a->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, b, n);
	return b;
}

static int port_of(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
	return ntohs(((const struct sockaddr_in *)a)->sin_port);
}

static void *dial_one(void *arg)
{
	struct dialer *d = arg;
	sleep_ms(d->delay_ms);
	int fd = socket(d->to.ss_family, SOCK_STREAM, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&d->to, d->tolen) == 0 &&
	    write_all(fd, "hello\n", 6) == 0) {
		char buf[4096];
		for (;;) {
			ssize_t r = recv(fd, buf, sizeof buf, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0 || write_all(fd, buf, r) < 0)
				break;
		}
	}
	if (fd >= 0)
		close(fd);
	free(d);
	return NULL;
}

static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char line[256];
	size_t n = 0;
	while (n + 1 < sizeof line) {
		char c;
		ssize_t r = recv(fd, &c, 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(fd);
			return NULL;
		}
		if (c == '\n')
			break;
		line[n++] = c;
	}
	line[n] = 0;
	char cmd[32] = "", s1[128] = "";
	long a = 0, b = 0, c = 0;
	sscanf(line, "%31s", cmd);
	int err;
	if (strcmp(cmd, "echo") == 0) {
		char buf[65536];
		for (;;) {
			ssize_t r = recv(fd, buf, sizeof buf, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0 || write_all(fd, buf, r) < 0)
				break;
		}
	} else if (strcmp(cmd, "sink") == 0) {
		uint32_t h;
		long got = drain(fd, &err, &h);
		reply(fd, "%ld %08x", got, h);
	} else if (sscanf(line, "send %ld", &a) == 1) {
		if (write_pattern(fd, 0, a) == 0)
			drain(fd, &err, NULL);
	} else if (sscanf(line, "sendclose %ld", &a) == 1) {
		write_pattern(fd, 0, a);
	} else if (sscanf(line, "chunks %ld %ld %ld", &a, &b, &c) == 3) {
		long off = 0;
		for (long i = 0; i < a; i++, off += b) {
			sleep_ms((int)c);
			if (write_pattern(fd, off, b) < 0)
				break;
		}
		drain(fd, &err, NULL);
	} else if (strcmp(cmd, "rst") == 0) {
		struct linger l = { 1, 0 };
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	} else if (sscanf(line, "hold %ld", &a) == 1) {
		sleep_ms((int)a);
	} else if (sscanf(line, "count %127s", s1) == 1) {
		count(fd, s1);
	} else if (sscanf(line, "shutwr %127s", s1) == 1) {
		shutdown(fd, SHUT_WR);
		count(fd, s1);
	} else if (sscanf(line, "report %127s %ld", s1, &a) == 2) {
		char rec[64];
		lookup(s1, (int)a, rec, sizeof rec);
		reply(fd, "%s", rec);
	} else if (sscanf(line, "dial %ld %ld %ld", &a, &b, &c) == 3) {
		struct sockaddr_storage me;
		socklen_t ml = sizeof me;
		getpeername(fd, (struct sockaddr *)&me, &ml);
		for (long i = 0; i < b; i++) {
			struct dialer *d = malloc(sizeof *d);
			d->to = me;
			d->tolen = ml;
			set_port(&d->to, (int)a);
			d->delay_ms = (int)c;
			pthread_t t;
			if (pthread_create(&t, NULL, dial_one, d) == 0)
				pthread_detach(t);
		}
		reply(fd, "dialing");
	} else if (sscanf(line, "probe %ld", &a) == 1) {
		struct sockaddr_storage to;
		socklen_t tl = sizeof to;
		getpeername(fd, (struct sockaddr *)&to, &tl);
		set_port(&to, (int)a);
		int p = socket(to.ss_family, SOCK_STREAM, 0);
		if (p >= 0 && connect(p, (struct sockaddr *)&to, tl) == 0)
			reply(fd, "connected");
		else if (errno == ECONNREFUSED)
			reply(fd, "refused");
		else
			reply(fd, "error %d", errno);
		if (p >= 0)
			close(p);
	} else if (strcmp(cmd, "name") == 0) {
		struct sockaddr_storage p;
		socklen_t pl = sizeof p;
		char ip[INET6_ADDRSTRLEN];
		getpeername(fd, (struct sockaddr *)&p, &pl);
		reply(fd, "%s:%d", addr_text(&p, ip, sizeof ip), port_of(&p));
	} else {
		reply(fd, "unknown command: %s", line);
	}
	close(fd);
	return NULL;
}

/* udp_echo answers each datagram on u (see the top of the file). */
static void *udp_echo(void *arg)
{
	int u = (int)(intptr_t)arg, one = 1;
	setsockopt(u, IPPROTO_IPV6, IPV6_RECVTCLASS, &one, sizeof one);
	setsockopt(u, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &one, sizeof one);
	for (;;) {
		char buf[2048], out[2200], ip[INET6_ADDRSTRLEN];
		union { char b[256]; struct cmsghdr align; } ctl;
		struct sockaddr_storage from;
		struct iovec iov = { buf, sizeof buf - 1 };
		struct msghdr m = { .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1,
				    .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
		ssize_t r = recvmsg(u, &m, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		buf[r] = 0;
		int tclass = -1, hops = -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS)
				memcpy(&tclass, CMSG_DATA(c), sizeof tclass);
			if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT)
				memcpy(&hops, CMSG_DATA(c), sizeof hops);
		}
		int n = snprintf(out, sizeof out, "%s from %s tclass %d hops %d", buf, addr_text(&from, ip, sizeof ip), tclass, hops);
		sendto(u, out, n, 0, (struct sockaddr *)&from, m.msg_namelen);
	}
}

static void *accept_loop(void *arg)
{
	int l = (int)(intptr_t)arg;
	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("sem_peer: accept");
			exit(1);
		}
		pthread_t t;
		if (pthread_create(&t, NULL, serve, (void *)(intptr_t)c) == 0)
			pthread_detach(t);
		else
			close(c);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: sem_peer PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	int port = atoi(argv[1]);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 512) < 0) {
		perror("sem_peer: listen");
		return 1;
	}
	/* IPv6, when the namespace has it: a v6-only listener beside the IPv4 one, and the UDP
	 * echo on a dual-stack socket. */
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_ANY_INIT };
	int l6 = socket(AF_INET6, SOCK_STREAM, 0);
	pthread_t t;
	if (l6 >= 0 && setsockopt(l6, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
	    setsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0 &&
	    bind(l6, (struct sockaddr *)&a6, sizeof a6) == 0 && listen(l6, 512) == 0)
		pthread_create(&t, NULL, accept_loop, (void *)(intptr_t)l6);
	int u = socket(AF_INET6, SOCK_DGRAM, 0);
	if (u < 0 || bind(u, (struct sockaddr *)&a6, sizeof a6) < 0) {
		if (u >= 0)
			close(u);
		u = socket(AF_INET, SOCK_DGRAM, 0);
		struct sockaddr_in ua = { .sin_family = AF_INET, .sin_port = htons(port) };
		if (u >= 0 && bind(u, (struct sockaddr *)&ua, sizeof ua) < 0) {
			close(u);
			u = -1;
		}
	}
	if (u >= 0)
		pthread_create(&t, NULL, udp_echo, (void *)(intptr_t)u);
	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("sem_peer: accept");
			return 1;
		}
		pthread_t t;
		if (pthread_create(&t, NULL, serve, (void *)(intptr_t)c) == 0)
			pthread_detach(t);
		else
			close(c);
	}
}
