/*
 * stress_signals: signals landing on threads blocked in socket calls.
 *
 *   stress_signals HOST PORT [SIGNALS]
 *
 * HOST:PORT is tests/c/sem_peer. Four receiver threads each open a connection and send
 * "chunks 100 137 20": the peer writes 137 pattern bytes (byte i = i % 251) every 20 ms, 100
 * times, so the threads spend most of about two seconds blocked in recv. Threads 0 and 1 take
 * SIGUSR1, whose handler has SA_RESTART: recv must only ever return data. Threads 2 and 3 take
 * SIGUSR2, whose handler has no SA_RESTART: recv fails with EINTR when the signal lands while it
 * waits, and the thread retries. A fifth thread sends pthread_kill to the receivers in turn, in a
 * tight loop (100 us apart), until at least SIGNALS (default 1000) handlers have run and every
 * receiver has run at least SIGNALS/8, or all receivers are done. Every byte is accounted for:
 * each receiver must get exactly 13700 bytes with the right pattern, then EOF after it shuts
 * down its side. Prints one line per check ("ok NAME" / "FAIL NAME: detail"), an "info" line
 * with the counts, and "stress_signals ok"; exit 0 on success. alarm(40) bounds the run.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NRECV 4
#define CHUNKS 100
#define CHUNK 137
#define TOTAL (CHUNKS * CHUNK)

static const char *host;
static int port;

struct receiver {
	pthread_t th;
	int idx;
	int restart;
	atomic_int ready;
	atomic_int done;
	atomic_long handled; /* handler runs on this thread */
	long eintr;          /* recv calls that failed with EINTR */
	long calls;          /* recv calls */
	long got;
	long bad;            /* bytes that differ from the pattern */
	long zero_early;     /* EOF before TOTAL */
	int err;             /* another errno */
	int eof;             /* EOF after shutdown */
};

static struct receiver rs[NRECV];
static atomic_long handled_total;

static void on_signal(int sig)
{
	(void)sig;
	pthread_t me = pthread_self();
	for (int i = 0; i < NRECV; i++)
		if (pthread_equal(rs[i].th, me)) {
			atomic_fetch_add(&rs[i].handled, 1);
			break;
		}
	atomic_fetch_add(&handled_total, 1);
}

static int dial(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, host, &a.sin_addr);
	for (;;) {
		if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0)
			return s;
		if (errno != EINTR) {
			perror("connect");
			exit(1);
		}
		/* an interrupted connect goes on in the background; wait for it as POSIX says */
		close(s);
		s = socket(AF_INET, SOCK_STREAM, 0);
	}
}

static void *receive(void *arg)
{
	struct receiver *r = arg;
	/* the signals of the other kind stay blocked on this thread */
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, r->restart ? SIGUSR2 : SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &m, NULL);
	int s = dial();
	const char cmd[] = "chunks 100 137 20\n";
	for (size_t off = 0; off < sizeof cmd - 1;) {
		ssize_t n = send(s, cmd + off, sizeof cmd - 1 - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r->err = errno;
			goto out;
		}
		off += n;
	}
	atomic_store(&r->ready, 1);
	unsigned char buf[512];
	while (r->got < TOTAL) {
		r->calls++;
		ssize_t n = recv(s, buf, sizeof buf, 0);
		if (n < 0 && errno == EINTR) {
			r->eintr++;
			continue;
		}
		if (n < 0) {
			r->err = errno;
			goto out;
		}
		if (n == 0) {
			r->zero_early = 1;
			goto out;
		}
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != (unsigned char)((r->got + i) % 251))
				r->bad++;
		r->got += n;
	}
	shutdown(s, SHUT_WR);
	for (;;) {
		ssize_t n = recv(s, buf, sizeof buf, 0);
		if (n < 0 && errno == EINTR) {
			r->eintr++;
			continue;
		}
		if (n == 0)
			r->eof = 1;
		else if (n > 0)
			r->got += n;
		else
			r->err = errno;
		break;
	}
out:
	close(s);
	atomic_store(&r->done, 1);
	return NULL;
}

static void handler(int sig, int restart)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = restart ? SA_RESTART : 0;
	sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: stress_signals HOST PORT [SIGNALS]\n");
		return 2;
	}
	host = argv[1];
	port = atoi(argv[2]);
	long want = argc == 4 ? atol(argv[3]) : 1000;
	alarm(40);
	handler(SIGUSR1, 1);
	handler(SIGUSR2, 0);

	for (int i = 0; i < NRECV; i++) {
		rs[i].idx = i;
		rs[i].restart = i < NRECV / 2;
		if (pthread_create(&rs[i].th, NULL, receive, &rs[i]) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	for (int i = 0; i < NRECV; i++)
		while (!atomic_load(&rs[i].ready) && !atomic_load(&rs[i].done))
			usleep(1000);

	/* the signal sender: this thread */
	long sent = 0;
	for (int i = 0;; i = (i + 1) % NRECV) {
		int all_done = 1, enough = atomic_load(&handled_total) >= want;
		for (int j = 0; j < NRECV; j++) {
			all_done &= atomic_load(&rs[j].done);
			enough &= atomic_load(&rs[j].handled) >= want / 8;
		}
		if (all_done || enough)
			break;
		if (atomic_load(&rs[i].done))
			continue;
		if (pthread_kill(rs[i].th, rs[i].restart ? SIGUSR1 : SIGUSR2) == 0)
			sent++;
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < NRECV; i++)
		pthread_join(rs[i].th, NULL);

	int fails = 0;
	long eintr_restart = 0, eintr_plain = 0, handled_restart = 0, handled_plain = 0;
	for (int i = 0; i < NRECV; i++) {
		struct receiver *r = &rs[i];
		if (r->got != TOTAL || r->bad || r->err || r->zero_early || !r->eof) {
			printf("FAIL bytes: thread %d (%s): got %ld of %d, %ld bad, EOF %s, error %s\n", i,
			       r->restart ? "SA_RESTART" : "no SA_RESTART", r->got, TOTAL, r->bad,
			       r->zero_early ? "early" : r->eof ? "ok" : "missing", r->err ? strerror(r->err) : "none");
			fails++;
		}
		if (r->restart) {
			eintr_restart += r->eintr;
			handled_restart += atomic_load(&r->handled);
		} else {
			eintr_plain += r->eintr;
			handled_plain += atomic_load(&r->handled);
		}
	}
	printf("info: %ld signals sent, %ld handled (SA_RESTART threads %ld, others %ld); EINTR: SA_RESTART threads %ld, others %ld\n",
	       sent, atomic_load(&handled_total), handled_restart, handled_plain, eintr_restart, eintr_plain);
	if (!fails)
		printf("ok bytes: %d threads got all %d bytes, pattern intact, then EOF\n", NRECV, TOTAL);
	if (atomic_load(&handled_total) >= want)
		printf("ok signals: at least %ld handled\n", want);
	else {
		printf("FAIL signals: %ld handled, want %ld (the receivers finished first)\n", atomic_load(&handled_total), want);
		fails++;
	}
	if (eintr_restart == 0)
		printf("ok SA_RESTART: recv never failed with EINTR\n");
	else {
		printf("FAIL SA_RESTART: recv failed with EINTR %ld times\n", eintr_restart);
		fails++;
	}
	if (eintr_plain > 0 && eintr_plain <= handled_plain)
		printf("ok no SA_RESTART: recv failed with EINTR, and retried\n");
	else {
		printf("FAIL no SA_RESTART: %ld EINTR for %ld handler runs\n", eintr_plain, handled_plain);
		fails++;
	}
	if (fails)
		return 1;
	printf("stress_signals ok\n");
	return 0;
}
