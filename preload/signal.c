/* Signal handlers the program installs after we load.
 *
 * Every handler is installed behind one trampoline, with SA_ONSTACK added: the kernel may run it
 * on one of Go's threads, and Go requires handlers to run on the alternate signal stack. The
 * trampoline does three more things:
 *   - it notes on the interrupted thread which signal ran, so that a blocking accelerated call
 *     woken by EINTR can restart when that handler has SA_RESTART, as the kernel's socket calls
 *     do (signal(7));
 *   - a signal that lands on one of the Go runtime's threads goes on to the main thread;
 *   - for SIGSEGV, SIGBUS, SIGFPE and SIGILL it sends faults inside the Go part to Go's own
 *     handler (a nil dereference in Go becomes a panic that the exports recover as EIO) and all
 *     other faults to the program's handler.
 * sigaction() reports the program's own settings back, never the trampoline. */
#include "intercept.h"
#include <dlfcn.h>
#include <link.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define NSIG_MAX 65

static struct sigaction app_act[NSIG_MAX]; /* what the program asked for, where we trampoline */
static int app_wrapped[NSIG_MAX];          /* app_act[sig] is behind the trampoline */
static struct sigaction go_act[NSIG_MAX];  /* Go's handler for the fault signals */
static int go_saved[NSIG_MAX];
static uintptr_t lib_lo, lib_hi;           /* the Go part's executable segment */

static __thread volatile sig_atomic_t last_sig __attribute__((tls_model("initial-exec")));

static int is_fault(int sig)
{
	return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL;
}

static int find_self(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	uintptr_t me = (uintptr_t)data;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
		if (me >= lo && me < hi) {
			lib_lo = lo;
			lib_hi = hi;
			return 1;
		}
	}
	return 0;
}

static uintptr_t fault_pc(void *ucv)
{
	ucontext_t *uc = ucv;
#if defined(__x86_64__)
	return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	return (uintptr_t)uc->uc_mcontext.pc;
#else
	(void)uc;
	return 0;
#endif
}

static void trampoline(int sig, siginfo_t *info, void *uc);

static void call_action(const struct sigaction *a, int sig, siginfo_t *info, void *uc)
{
	if (a->sa_flags & SA_SIGINFO)
		a->sa_sigaction(sig, info, uc);
	else if (a->sa_handler == SIG_DFL) {
		/* the default action of a fault: die of it */
		struct sigaction dfl;
		memset(&dfl, 0, sizeof dfl);
		dfl.sa_handler = SIG_DFL;
		ustack_real.sigaction(sig, &dfl, NULL);
		raise(sig);
	} else if (a->sa_handler != SIG_IGN)
		a->sa_handler(sig);
}

static void trampoline(int sig, siginfo_t *info, void *uc)
{
	if (sig > 0 && sig < NSIG_MAX && is_fault(sig) && go_saved[sig]) {
		uintptr_t pc = fault_pc(uc);
		if (pc >= lib_lo && pc < lib_hi) {
			call_action(&go_act[sig], sig, info, uc);
			return;
		}
	}
	if (ustack_go.is_go_thread && ustack_go.is_go_thread() && sig != SIGURG && sig != SIGPROF && info) {
		/* A signal meant for the program landed on one of Go's threads (which the kernel
		 * may pick for SIGCHLD: Go keeps it unblocked there). Send it, siginfo and all, to
		 * the main thread, where a single-threaded program waits for it (sigsuspend);
		 * it stays pending there while blocked, as it would have without us. */
		pid_t pid = getpid();
		if (syscall(SYS_rt_tgsigqueueinfo, pid, pid, sig, info) == 0)
			return;
		/* the kernel refuses to forward a siginfo it made (si_code >= 0) from another thread:
		 * the signal itself still goes, without its details */
		if (syscall(SYS_tgkill, pid, pid, sig) == 0)
			return;
	}
	last_sig = sig;
	if (sig <= 0 || sig >= NSIG_MAX)
		return;
	struct sigaction a = app_act[sig];
	if (a.sa_flags & SA_RESETHAND)
		app_wrapped[sig] = 0; /* the kernel has put SIG_DFL back in our place */
	call_action(&a, sig, info, uc);
}

/* ustack_wait_interrupted decides what an EINTR from a wait means: 0 when no handler of the
 * program ran on this thread (a signal of the Go runtime's own: wait again), 1 when one ran
 * whose SA_RESTART asks to go on, -1 when the call must fail with EINTR. */
int ustack_wait_interrupted(void)
{
	int sig = last_sig;
	last_sig = 0;
	if (sig <= 0 || sig >= NSIG_MAX)
		return 0;
	return app_wrapped[sig] && (app_act[sig].sa_flags & SA_RESTART) ? 1 : -1;
}

void ustack_signal_wait_begin(void)
{
	last_sig = 0;
}

int ustack_signal_seen(void)
{
	return last_sig != 0;
}

/* from_go reports whether caller is code of the Go part: its runtime installing its own
 * handlers (cgo calls libc's sigaction). The first such call comes while the Go part starts,
 * before the loader knows where it lies: the object that holds caller tells. */
static int from_go(void *caller)
{
	if (!ustack_golib_path[0])
		return 0; /* not loaded, nor loading */
	if (!lib_lo) {
		Dl_info info;
		if (!dladdr(caller, &info) || !info.dli_fname || strcmp(info.dli_fname, ustack_golib_path) != 0)
			return 0;
		dl_iterate_phdr(find_self, caller);
	}
	return (uintptr_t)caller >= lib_lo && (uintptr_t)caller < lib_hi;
}

static int app_sigaction(int sig, const struct sigaction *act, struct sigaction *old);

int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	USTACK_ENSURE();
	if (sig <= 0 || sig >= NSIG_MAX || sig == SIGKILL || sig == SIGSTOP)
		return ustack_real.sigaction(sig, act, old);
	if (from_go(__builtin_return_address(0))) {
		/* the Go runtime installing its own handlers (cgo calls libc's sigaction) */
		int r = ustack_real.sigaction(sig, act, old);
		if (r == 0 && act && is_fault(sig) && act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN) {
			go_act[sig] = *act;
			go_saved[sig] = 1;
		}
		return r;
	}
	return app_sigaction(sig, act, old);
}

/* app_sigaction installs the program's handler behind the trampoline. */
static int app_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	struct sigaction prev;
	int wrapped = app_wrapped[sig];
	if (wrapped)
		prev = app_act[sig];
	if (!act) {
		int r = ustack_real.sigaction(sig, NULL, wrapped ? NULL : old);
		if (r == 0 && wrapped && old)
			*old = prev;
		return r;
	}
	if (act->sa_handler == SIG_DFL || act->sa_handler == SIG_IGN) {
		int r = ustack_real.sigaction(sig, act, wrapped ? NULL : old);
		if (r == 0) {
			if (wrapped && old)
				*old = prev;
			app_wrapped[sig] = 0;
		}
		return r;
	}
	struct sigaction tramp = *act;
	tramp.sa_sigaction = trampoline;
	tramp.sa_flags = (act->sa_flags | SA_SIGINFO | SA_ONSTACK);
	struct sigaction kernel_old;
	app_act[sig] = *act;
	int r = ustack_real.sigaction(sig, &tramp, &kernel_old);
	if (r < 0) {
		if (wrapped)
			app_act[sig] = prev;
		return r;
	}
	app_wrapped[sig] = 1;
	if (old)
		*old = wrapped ? prev : kernel_old;
	return 0;
}

/* sigaction_checked is sigaction for the program's own wrappers below (their calls come from
 * inside this library, so they must not look like the Go runtime's). */
static int sigaction_checked(int sig, const struct sigaction *act, struct sigaction *old)
{
	USTACK_ENSURE();
	if (sig <= 0 || sig >= NSIG_MAX || sig == SIGKILL || sig == SIGSTOP)
		return ustack_real.sigaction(sig, act, old);
	return app_sigaction(sig, act, old);
}

/* signal(2) with glibc's BSD semantics (SA_RESTART), through our sigaction. */
sighandler_t signal(int sig, sighandler_t handler)
{
	struct sigaction act, old;
	memset(&act, 0, sizeof act);
	act.sa_handler = handler;
	act.sa_flags = SA_RESTART;
	sigemptyset(&act.sa_mask);
	if (sigaction_checked(sig, &act, &old) < 0)
		return SIG_ERR;
	return (old.sa_flags & SA_SIGINFO) ? (sighandler_t)old.sa_sigaction : old.sa_handler;
}

sighandler_t bsd_signal(int sig, sighandler_t handler)
{
	return signal(sig, handler);
}

/* sigset(3) (System V): no SA_RESTART; SIG_HOLD only changes the mask. */
sighandler_t sigset(int sig, sighandler_t handler)
{
	if (handler == SIG_HOLD) {
		sigset_t s;
		sigemptyset(&s);
		sigaddset(&s, sig);
		struct sigaction old;
		if (sigaction_checked(sig, NULL, &old) < 0 || sigprocmask(SIG_BLOCK, &s, NULL) < 0)
			return SIG_ERR;
		return SIG_HOLD;
	}
	struct sigaction act, old;
	memset(&act, 0, sizeof act);
	act.sa_handler = handler;
	sigemptyset(&act.sa_mask);
	if (sigaction_checked(sig, &act, &old) < 0)
		return SIG_ERR;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, sig);
	sigprocmask(SIG_UNBLOCK, &s, NULL);
	return (old.sa_flags & SA_SIGINFO) ? (sighandler_t)old.sa_sigaction : old.sa_handler;
}
