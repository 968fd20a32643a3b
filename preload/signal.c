/* Handlers the program installs after we load run on whatever thread the kernel picks, Go's own
 * threads included; Go requires them to run on the alternate signal stack, so every handler gets
 * SA_ONSTACK. */
#include "intercept.h"
#include <string.h>

int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	USTACK_ENSURE();
	if (act && act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN && !(act->sa_flags & SA_ONSTACK)) {
		struct sigaction copy = *act;
		copy.sa_flags |= SA_ONSTACK;
		return ustack_real.sigaction(sig, &copy, old);
	}
	return ustack_real.sigaction(sig, act, old);
}

/* signal(2) with glibc's BSD semantics (SA_RESTART), through our sigaction. */
sighandler_t signal(int sig, sighandler_t handler)
{
	struct sigaction act, old;
	memset(&act, 0, sizeof act);
	act.sa_handler = handler;
	act.sa_flags = SA_RESTART;
	sigemptyset(&act.sa_mask);
	sigaddset(&act.sa_mask, sig);
	if (sigaction(sig, &act, &old) < 0)
		return SIG_ERR;
	return old.sa_handler;
}

sighandler_t bsd_signal(int sig, sighandler_t handler)
{
	return signal(sig, handler);
}
