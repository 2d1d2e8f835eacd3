/* parent.c: a stage of gxp-supervise dies with it.  The supervisor puts
 * its pid in GXP_SUPERVISOR_PID; a tool whose parent it is asks the kernel
 * for a SIGKILL when that parent dies (PR_SET_PDEATHSIG), so that a
 * supervisor killed with SIGKILL leaves no stage behind holding the spool
 * or the journal for the next one.  A plain prctl(2): unlike setpriv(1),
 * it needs no capability system call, which a sandboxed unit refuses. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "gxp.h"

void
gxp_die_with_supervisor(void)
{
	const char *s = getenv("GXP_SUPERVISOR_PID");
	char *end;
	long pid;

	if (s == NULL || *s == '\0')
		return;
	pid = strtol(s, &end, 10);
	if (*end != '\0' || pid <= 1 || pid != (long)getppid())
		return;		/* not its stage (a check, a tool it did not start) */
#ifdef __linux__
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		return;
	/* the supervisor died before the request: it will not be signalled */
	if ((long)getppid() != pid)
		_exit(EXIT_TEMP);
#endif
}
