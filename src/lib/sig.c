/* sig.c: handlers only set flags; the main loops do the work. */
#include <signal.h>
#include <string.h>

#include "gxp.h"

volatile sig_atomic_t gxp_sig_term, gxp_sig_usr1;

static void
on_term(int sig)
{
	(void)sig;
	gxp_sig_term = 1;
}

static void
on_usr1(int sig)
{
	(void)sig;
	gxp_sig_usr1 = 1;
}

void
gxp_signals_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_term;	/* no SA_RESTART: blocking reads return */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}
