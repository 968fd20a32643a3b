/*
 * signals: what a signal does to a blocking socket call, and to a fault inside the library.
 *
 *   signals HOST PORT
 *
 * The server at HOST:PORT must accept and send "hi\n" two seconds after each connection.
 *   restart: SIGALRM with SA_RESTART lands one second into a blocking recv: the recv goes on
 *            and returns the data (signal(7): socket calls restart without a socket timeout).
 *   eintr:   the same without SA_RESTART: the recv fails with EINTR after about one second.
 *   flags:   sigaction reports back exactly the flags the program set.
 *   panic:   with the program's own SIGSEGV handler installed, ioctl(fd, 0x7573ffff) — ustack's
 *            self-test request that faults inside the library — fails with EIO under ustack
 *            (ENOTTY on the kernel) and the program lives on.
 *   appfault: a fault in the program's own code still reaches the program's SIGSEGV handler
 *            (checked in a child, which the handler ends with status 99).
 * Prints one line per check and "signals ok" at the end; exit 0 on success.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }
static void on_segv(int sig) { (void)sig; _exit(99); }

static int dial(const char *host, const char *port) {
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(port)) };
	inet_pton(AF_INET, host, &a.sin_addr);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); exit(1); }
	return s;
}

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void handler(int restart) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sa.sa_flags = restart ? SA_RESTART : 0;
	sigaction(SIGALRM, &sa, NULL);
}

int main(int argc, char **argv) {
	if (argc != 3) { fprintf(stderr, "usage: signals HOST PORT\n"); return 2; }
	int fails = 0;
	char buf[16];

	handler(1);
	int s = dial(argv[1], argv[2]);
	alarms = 0;
	double t0 = now();
	alarm(1);
	ssize_t n = recv(s, buf, sizeof buf, 0);
	double dt = now() - t0;
	if (n == 3 && memcmp(buf, "hi\n", 3) == 0 && alarms == 1 && dt > 1.5)
		printf("ok restart\n");
	else { printf("FAIL restart: n=%zd errno=%s alarms=%d after %.2fs\n", n, n < 0 ? strerror(errno) : "-", alarms, dt); fails++; }
	close(s);

	handler(0);
	s = dial(argv[1], argv[2]);
	alarms = 0;
	t0 = now();
	alarm(1);
	n = recv(s, buf, sizeof buf, 0);
	dt = now() - t0;
	if (n < 0 && errno == EINTR && alarms == 1 && dt < 1.5)
		printf("ok eintr\n");
	else { printf("FAIL eintr: n=%zd errno=%s alarms=%d after %.2fs\n", n, n < 0 ? strerror(errno) : "-", alarms, dt); fails++; }

	struct sigaction got;
	sigaction(SIGALRM, NULL, &got);
	if (got.sa_handler == on_alarm && (got.sa_flags & (SA_ONSTACK | SA_SIGINFO | SA_RESTART)) == 0)
		printf("ok flags\n");
	else { printf("FAIL flags: handler %p flags %#x\n", (void *)got.sa_handler, got.sa_flags); fails++; }

	signal(SIGSEGV, on_segv);
	int r = ioctl(s, 0x7573ffff, NULL);
	printf("ok panic: %s\n", r < 0 ? (errno == EIO ? "EIO" : errno == ENOTTY ? "ENOTTY" : strerror(errno)) : "no error");
	close(s);

	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		volatile int *p = NULL;
		*p = 1;
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 99)
		printf("ok appfault\n");
	else { printf("FAIL appfault: status %#x\n", st); fails++; }

	if (fails)
		return 1;
	printf("signals ok\n");
	return 0;
}
