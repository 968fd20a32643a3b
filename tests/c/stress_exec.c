/*
 * stress_exec: fork+exec, vfork+exec, posix_spawn and system() from a program holding sockets.
 *
 *   stress_exec HOST PORT UPORT [ROUNDS]
 *   stress_exec check OPENFD CLOSEDFD HOST PORT
 *
 * HOST:PORT is tests/c/sem_peer, HOST:UPORT a UDP echo server (stress_fork udpecho). The
 * parent connects two TCP sockets to the echo peer, one plain and one with SOCK_CLOEXEC, and a
 * UDP socket (all accelerated under ustack). Then, ROUNDS (default 10) times each:
 *   fork+exec   fork, execv("/bin/true")
 *   vfork+exec  vfork, execv("/bin/true")
 *   posix_spawn posix_spawn("/bin/true")
 *   system      system("/bin/true")
 * every child must exit 0. Then the exec'd programs see the right descriptors:
 *   cloexec-sh  sh -c '[ -S /proc/self/fd/PLAIN ] && ! [ -e /proc/self/fd/CLOEXEC ]' through
 *               system(): the plain socket is an inherited socket fd, the CLOEXEC one is closed
 *   cloexec     this program re-exec'd (fork+exec, and posix_spawn) in its "check" form: fstat
 *               says OPENFD is a socket and CLOSEDFD is closed (EBADF); it then opens its own
 *               connection to HOST:PORT and does an echo round trip (under LD_PRELOAD it loads
 *               ustack afresh, which stays on the kernel while the parent holds the interface);
 *               OPENFD -1 skips its check
 * After each group the parent's three sockets still echo. Prints one line per check ("ok NAME"
 * / "FAIL NAME: detail") and "stress_exec ok"; exit 0 on success. alarm() bounds the run.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stress.h"

extern char **environ;


/* round does an echo round trip of n bytes (TCP) or one datagram (UDP); NULL when intact. */
static const char *round_trip(int s, int dgram, int seed, size_t n)
{
	static char out[4096], in[4096];
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(seed * 13 + i * 5);
	for (int try = 0; try < (dgram ? 5 : 1); try++) {
		if (dgram ? send(s, out, n, 0) != (ssize_t)n : write_all(s, out, n) < 0)
			return strerror(errno);
		size_t got = 0;
		while (got < n) {
			struct pollfd p = { .fd = s, .events = POLLIN };
			int r = poll(&p, 1, dgram ? 1000 : 5000);
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0)
				break;
			ssize_t k = recv(s, in + got, dgram ? sizeof in : n - got, 0);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				return k < 0 ? strerror(errno) : "EOF";
			if (dgram) {
				if ((size_t)k == n && memcmp(in, out, n) == 0)
					return NULL;
				continue;
			}
			got += k;
		}
		if (!dgram)
			return got < n ? "no echo within 5 s" : memcmp(in, out, n) ? "echo differs" : NULL;
	}
	return "no UDP echo in 5 tries";
}

static int check(int argc, char **argv)
{
	alarm(10);
	if (argc != 6) {
		fprintf(stderr, "usage: stress_exec check OPENFD CLOSEDFD HOST PORT\n");
		return 2;
	}
	struct stat st;
	int open_fd = atoi(argv[2]), closed_fd = atoi(argv[3]);
	if (open_fd >= 0 && (fstat(open_fd, &st) != 0 || !S_ISSOCK(st.st_mode))) {
		printf("exec'd: fd %d is not an open socket: %s\n", open_fd, strerror(errno));
		return 3;
	}
	if (fstat(closed_fd, &st) == 0 || errno != EBADF) {
		printf("exec'd: fd %d (SOCK_CLOEXEC) is open in the exec'd program\n", closed_fd);
		return 4;
	}
	int s = dial(argv[4], atoi(argv[5]), SOCK_STREAM);
	if (write_all(s, "echo\n", 5) < 0)
		return 5;
	const char *e = round_trip(s, 0, 77, 3000);
	if (e) {
		printf("exec'd: echo round trip: %s\n", e);
		return 6;
	}
	close(s);
	return 0;
}

static int status_ok(int st) { return WIFEXITED(st) && WEXITSTATUS(st) == 0; }

static void describe(char *b, size_t n, int st)
{
	if (WIFEXITED(st))
		snprintf(b, n, "exit %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(b, n, "signal %d", WTERMSIG(st));
	else
		snprintf(b, n, "status %#x", st);
}

static int reap(pid_t pid)
{
	int st;
	pid_t w;
	while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	return w == pid ? st : -1;
}

/* run starts argv with method m ("fork", "vfork", "spawn", "system" with cmd); returns the status. */
static int run(const char *m, char *const argv[], const char *cmd)
{
	fflush(NULL);
	if (strcmp(m, "system") == 0)
		return system(cmd);
	pid_t pid;
	if (strcmp(m, "spawn") == 0) {
		int e = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
		if (e) {
			errno = e;
			return -1;
		}
	} else if (strcmp(m, "vfork") == 0) {
		pid = vfork();
		if (pid == 0) {
			execv(argv[0], argv);
			_exit(127);
		}
	} else {
		pid = fork();
		if (pid == 0) {
			execv(argv[0], argv);
			_exit(127);
		}
	}
	if (pid < 0)
		return -1;
	return reap(pid);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "check") == 0)
		return check(argc, argv);
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: stress_exec HOST PORT UPORT [ROUNDS] | stress_exec check OPENFD CLOSEDFD HOST PORT\n");
		return 2;
	}
	alarm(50);
	const char *host = argv[1];
	int port = atoi(argv[2]), uport = atoi(argv[3]);
	int rounds = argc == 5 ? atoi(argv[4]) : 10;
	int fails = 0;

	int plain = dial(host, port, SOCK_STREAM);
	int clo = dial(host, port, SOCK_STREAM | SOCK_CLOEXEC);
	int udp = dial(host, uport, SOCK_DGRAM);
	if (write_all(plain, "echo\n", 5) < 0 || write_all(clo, "echo\n", 5) < 0) {
		perror("send");
		return 1;
	}
	int seed = 0;

#define PARENT_SOCKETS(what)                                                                  \
	do {                                                                                      \
		const char *e1 = round_trip(plain, 0, ++seed, 1000), *e2 = round_trip(clo, 0, ++seed, 2000), \
			   *e3 = round_trip(udp, 1, ++seed, 500);                                      \
		if (e1 || e2 || e3) {                                                             \
			printf("FAIL parent sockets after %s: plain %s, cloexec %s, udp %s\n", what,    \
			       e1 ? e1 : "ok", e2 ? e2 : "ok", e3 ? e3 : "ok");                          \
			fails++;                                                                      \
		}                                                                                 \
	} while (0)

	PARENT_SOCKETS("nothing");

	static const char *methods[] = { "fork", "vfork", "spawn", "system" };
	static const char *names[] = { "fork+exec", "vfork+exec", "posix_spawn", "system" };
	char *truev[] = { "/bin/true", NULL };
	for (int m = 0; m < 4; m++) {
		int ok = 0;
		char why[64] = "";
		for (int i = 0; i < rounds; i++) {
			int st = run(methods[m], truev, "/bin/true");
			if (st != -1 && status_ok(st))
				ok++;
			else if (!why[0]) {
				if (st == -1)
					snprintf(why, sizeof why, "%s", strerror(errno));
				else
					describe(why, sizeof why, st);
			}
		}
		if (ok == rounds)
			printf("ok %s: %d runs of /bin/true exited 0\n", names[m], rounds);
		else {
			printf("FAIL %s: %d of %d runs of /bin/true exited 0 (first failure: %s)\n", names[m], ok, rounds, why);
			fails++;
		}
		PARENT_SOCKETS(names[m]);
	}

	char cmd[256];
	snprintf(cmd, sizeof cmd, "[ -S /proc/self/fd/%d ] && ! [ -e /proc/self/fd/%d ]", plain, clo);
	int st = run("system", NULL, cmd);
	if (st != -1 && status_ok(st))
		printf("ok cloexec-sh: the plain socket is an fd of sh, the SOCK_CLOEXEC one is closed\n");
	else {
		char why[64];
		describe(why, sizeof why, st);
		printf("FAIL cloexec-sh: sh -c '%s': %s\n", cmd, why);
		fails++;
	}

	char self[4096];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
	if (sl < 0) {
		perror("readlink");
		return 1;
	}
	self[sl] = 0;
	char a1[16], a2[16], a3[16];
	snprintf(a1, sizeof a1, "%d", plain);
	snprintf(a2, sizeof a2, "%d", clo);
	snprintf(a3, sizeof a3, "%d", port);
	char *checkv[] = { self, "check", a1, a2, (char *)host, a3, NULL };
	int ok = 0;
	char why[64] = "";
	for (int m = 0; m < 3; m++) {
		st = run(methods[m], checkv, NULL);
		if (st != -1 && status_ok(st))
			ok++;
		else if (!why[0]) {
			int k = snprintf(why, sizeof why, "%s: ", names[m]);
			if (st == -1)
				snprintf(why + k, sizeof why - k, "%s", strerror(errno));
			else
				describe(why + k, sizeof why - k, st);
		}
	}
	if (ok == 3)
		printf("ok cloexec: the exec'd program has the plain socket, not the SOCK_CLOEXEC one, and its own connection echoes\n");
	else {
		printf("FAIL cloexec: %d of 3 exec'd checks passed (%s)\n", ok, why);
		fails++;
	}
	PARENT_SOCKETS("the exec'd checks");

	close(plain);
	close(clo);
	close(udp);
	if (fails)
		return 1;
	printf("stress_exec ok\n");
	return 0;
}
