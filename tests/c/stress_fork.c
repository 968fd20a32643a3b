/*
 * stress_fork: fork without exec, many times, while the parent holds sockets.
 *
 *   stress_fork HOST PORT UPORT [ITERATIONS]
 *   stress_fork udpecho UPORT
 *
 * HOST:PORT is tests/c/sem_peer (the "echo" command), HOST:UPORT a UDP echo server: the second
 * form, run on the kernel in the peer's namespace.
 *
 * The parent connects two TCP sockets to the echo peer and a UDP socket to the UDP echo server
 * (all accelerated under ustack), binds a UDP socket on 127.0.0.1 (a kernel socket), starts a
 * thread that does echo round trips on the second TCP socket without pause (so forks happen
 * while a thread is inside accelerated calls), then forks ITERATIONS (default 1000) children
 * without exec. Each child:
 *   - on iterations 125, 375, 625, 875 first does an echo round trip on the inherited TCP and UDP
 *     sockets (under ustack the first moves them to the kernel, with their state);
 *   - closes its copies of the three inherited sockets: every close must return 0;
 *   - on every other iteration opens a new UDP socket (a kernel socket: loopback) and sends its
 *     iteration number to the parent's loopback socket;
 *   - exits, with exit(0) or _exit(0) in turn (exit runs the atexit handlers and destructors).
 * The parent reaps each child (status 0) and receives the loopback datagram when one was sent,
 * and every 100 iterations does an echo round trip on the TCP socket (a pattern that changes
 * with the iteration) and on the UDP socket: the data must come back intact.
 * Prints one line per check ("ok NAME" or "FAIL NAME: detail") and "stress_fork ok" at the end;
 * exit 0 on success. alarm() bounds every child and the whole run.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stress.h"

static int udpecho(int port)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0) {
		perror("udpecho: bind");
		return 1;
	}
	char buf[65536];
	for (;;) {
		struct sockaddr_in from;
		socklen_t fl = sizeof from;
		ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
		if (n < 0)
			continue;
		sendto(s, buf, n, 0, (struct sockaddr *)&from, fl);
	}
}


/* tcp_round sends n pattern bytes for iteration it and reads them back; returns a message on failure. */
static const char *tcp_round(int s, int it, size_t n)
{
	static __thread char out[8192], in[8192];
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(it * 31 + i * 7);
	if (write_all(s, out, n) < 0)
		return strerror(errno);
	size_t got = 0;
	while (got < n) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		int r = poll(&p, 1, 5000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return "no echo within 5 s";
		ssize_t k = recv(s, in + got, n - got, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return strerror(errno);
		if (k == 0)
			return "EOF";
		got += k;
	}
	return memcmp(in, out, n) ? "echo differs" : NULL;
}

/* udp_round sends a datagram and waits for its echo (a few tries: UDP may lose one). */
static const char *udp_round(int u, int it)
{
	char out[64], in[128];
	int n = snprintf(out, sizeof out, "udp round %d", it);
	for (int try = 0; try < 5; try++) {
		if (send(u, out, n, 0) != n)
			return strerror(errno);
		for (;;) {
			struct pollfd p = { .fd = u, .events = POLLIN };
			int r = poll(&p, 1, 1000);
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0)
				break;
			ssize_t k = recv(u, in, sizeof in, 0);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return strerror(errno);
			if (k == n && memcmp(in, out, n) == 0)
				return NULL;
			/* a late echo of an earlier try: read on */
		}
	}
	return "no UDP echo in 5 tries";
}

/* The busy connection: a thread does echo round trips on it all through the forks. */
static int busy_fd;
static atomic_int busy_stop;
static long busy_rounds;
static const char *busy_err;

static void *busy(void *arg)
{
	(void)arg;
	while (!atomic_load(&busy_stop) && !busy_err) {
		busy_err = tcp_round(busy_fd, (int)busy_rounds, 1 + busy_rounds % 3000);
		busy_rounds++;
	}
	return NULL;
}

static int child(int it, int tcp, int udp, const struct sockaddr_in *lo)
{
	alarm(5);
	if (it % 250 == 125) {
		/* the child uses the sockets it inherited: they move to the kernel, with
		 * their state, and the parent goes on with them */
		const char *e = tcp_round(tcp, it, 100 + it % 4000), *ue = udp_round(udp, it);
		if (e || ue) {
			printf("FAIL child use of inherited sockets: iteration %d: tcp %s, udp %s\n", it, e ? e : "ok",
			       ue ? ue : "ok");
			return 5;
		}
	}
	int a = close(tcp), b = close(udp), c = close(busy_fd);
	if (a != 0 || b != 0 || c != 0) {
		printf("FAIL child close: iteration %d: tcp close %d (%s), udp close %d, busy tcp close %d\n", it, a,
		       a ? strerror(errno) : "-", b, c);
		return 1;
	}
	if (it % 2 == 0) {
		int s = socket(AF_INET, SOCK_DGRAM, 0);
		if (s < 0) {
			printf("FAIL child socket: %s\n", strerror(errno));
			return 2;
		}
		if (sendto(s, &it, sizeof it, 0, (const struct sockaddr *)lo, sizeof *lo) != sizeof it) {
			printf("FAIL child sendto loopback: %s\n", strerror(errno));
			return 3;
		}
		if (close(s) != 0) {
			printf("FAIL child close new socket: %s\n", strerror(errno));
			return 4;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "udpecho") == 0)
		return udpecho(atoi(argv[2]));
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: stress_fork HOST PORT UPORT [ITERATIONS] | stress_fork udpecho UPORT\n");
		return 2;
	}
	int iters = argc == 5 ? atoi(argv[4]) : 1000;
	alarm(50);
	int fails = 0;

	int tcp = dial(argv[1], atoi(argv[2]), SOCK_STREAM);
	if (write_all(tcp, "echo\n", 5) < 0) {
		perror("send");
		return 1;
	}
	int udp = dial(argv[1], atoi(argv[3]), SOCK_DGRAM);
	busy_fd = dial(argv[1], atoi(argv[2]), SOCK_STREAM);
	if (write_all(busy_fd, "echo\n", 5) < 0) {
		perror("send");
		return 1;
	}

	int lo = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in la = { .sin_family = AF_INET };
	la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t ll = sizeof la;
	if (lo < 0 || bind(lo, (struct sockaddr *)&la, sizeof la) < 0 ||
	    getsockname(lo, (struct sockaddr *)&la, &ll) < 0) {
		perror("loopback socket");
		return 1;
	}

	const char *e = tcp_round(tcp, -1, 1000);
	const char *ue = udp_round(udp, -1);
	if (e || ue) {
		printf("FAIL before fork: tcp %s, udp %s\n", e ? e : "ok", ue ? ue : "ok");
		return 1;
	}

	pthread_t bt;
	if (pthread_create(&bt, NULL, busy, NULL) != 0) {
		perror("pthread_create");
		return 1;
	}
	int reaped = 0, datagrams = 0, rounds = 0;
	for (int it = 0; it < iters && fails < 5; it++) {
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0) {
			printf("FAIL fork: iteration %d: %s\n", it, strerror(errno));
			return 1;
		}
		if (pid == 0) {
			int rc = child(it, tcp, udp, &la);
			fflush(NULL);
			if (it % 4 < 2)
				exit(rc);
			_exit(rc);
		}
		int st;
		pid_t w;
		while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
			;
		if (w != pid) {
			printf("FAIL waitpid: iteration %d: %s\n", it, strerror(errno));
			return 1;
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			printf("FAIL child: iteration %d: %s %d\n", it, WIFEXITED(st) ? "exit" : "signal",
			       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			fails++;
			continue;
		}
		reaped++;
		if (it % 2 == 0) {
			int got = -1;
			struct pollfd p = { .fd = lo, .events = POLLIN };
			if (poll(&p, 1, 2000) != 1 || recv(lo, &got, sizeof got, 0) != sizeof got || got != it) {
				printf("FAIL loopback datagram: iteration %d: got %d\n", it, got);
				fails++;
			} else
				datagrams++;
		}
		if (it % 100 == 99) {
			e = tcp_round(tcp, it, 100 + it % 4000);
			ue = udp_round(udp, it);
			if (e || ue) {
				printf("FAIL parent sockets after %d forks: tcp %s, udp %s\n", it + 1, e ? e : "ok",
				       ue ? ue : "ok");
				fails++;
			} else
				rounds++;
		}
	}
	if (reaped == iters)
		printf("ok fork children: %d forked, exited 0 and reaped, inherited sockets closed with 0\n", iters);
	else
		printf("FAIL fork children: %d of %d exited 0\n", reaped, iters);
	if (datagrams == (iters + 1) / 2)
		printf("ok child kernel sockets: %d loopback datagrams\n", datagrams);
	else
		printf("FAIL child kernel sockets: %d of %d loopback datagrams\n", datagrams, (iters + 1) / 2);
	if (rounds == iters / 100)
		printf("ok parent sockets: %d tcp and udp echo round trips between forks\n", rounds);
	else
		printf("FAIL parent sockets: %d of %d round trips\n", rounds, iters / 100);
	fails += reaped != iters || datagrams != (iters + 1) / 2 || rounds != iters / 100;
	atomic_store(&busy_stop, 1);
	pthread_join(bt, NULL);
	printf("info: %ld echo round trips on the busy connection during the forks\n", busy_rounds);
	if (!busy_err && busy_rounds > 0)
		printf("ok busy connection: a thread's echo round trips went on during the forks\n");
	else {
		printf("FAIL busy connection: %ld round trips, error %s\n", busy_rounds, busy_err ? busy_err : "none");
		fails++;
	}
	e = tcp_round(tcp, iters, 4000);
	if (e) {
		printf("FAIL final round trip: %s\n", e);
		fails++;
	}
	shutdown(tcp, SHUT_WR);
	char c;
	if (recv(tcp, &c, 1, 0) != 0) {
		printf("FAIL tcp EOF after shutdown\n");
		fails++;
	}
	close(tcp);
	close(udp);
	close(lo);
	if (fails)
		return 1;
	printf("stress_fork ok\n");
	return 0;
}
