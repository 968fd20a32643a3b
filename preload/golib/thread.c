/* Threads the Go runtime starts inside the program block the program's asynchronous signals.
 *
 * The kernel delivers a process-directed signal to any thread that does not block it. Programs
 * written as a single thread (timeout, many daemons) block SIGCHLD/SIGALRM/... and wait for them
 * with sigsuspend in their one thread; if such a signal landed on one of Go's threads instead,
 * its handler would run there and the program would sleep on in sigsuspend forever. So every
 * thread Go creates starts with those signals blocked, and the Go runtime keeps the mask it
 * starts with (it only unblocks the synchronous signals it turns into panics, and its own
 * preemption signal).
 *
 * The Go runtime still unblocks a few (SIGCHLD among them) on its threads; signal.c forwards
 * those to the program's main thread when they land on a thread marked here.
 *
 * This pthread_create is local to libustack-go.so (preload/golib/libustack-go.map does not
 * export it): it wraps only the calls of the Go runtime linked into this library. */
#include "golib.h"
#include <dlfcn.h>
#include <pthread.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>

static int (*real_pthread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

static __thread int ustack_go_thread __attribute__((tls_model("initial-exec")));

struct ustack_shared *ustack_sh;

/* ustack_is_go_thread tells the front's signal trampoline whether it runs on one of Go's
 * threads (async-signal-safe: an initial-exec TLS read). */
int ustack_is_go_thread(void) { return ustack_go_thread; }

struct start {
	void *(*fn)(void *);
	void *arg;
};

static void *go_thread_start(void *p)
{
	struct start s = *(struct start *)p;
	free(p);
	ustack_go_thread = 1;
	return s.fn(s.arg);
}

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (!real_pthread_create)
		real_pthread_create = dlsym(RTLD_NEXT, "pthread_create");
	sigset_t all, old;
	sigfillset(&all);
	/* what must stay deliverable: faults, and SIGPROF for USTACK_CPUPROFILE */
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGTRAP);
	sigdelset(&all, SIGSYS);
	sigdelset(&all, SIGPROF);
	struct start *s = malloc(sizeof *s);
	if (!s)
		return EAGAIN;
	s->fn = fn;
	s->arg = arg;
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int r = real_pthread_create(t, attr, go_thread_start, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		free(s);
	return r;
}
