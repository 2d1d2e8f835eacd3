/* gxp-upload: placeholder until its issue lands; prints usage. */
#include <stdio.h>
#include <string.h>

#include "lib/gxp.h"

int
main(int argc, char **argv)
{
	gxp_init(argv[0]);
	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		printf("usage: gxp-upload [--env file]\n");
		return EXIT_OK;
	}
	fprintf(stderr, "usage: gxp-upload [--env file]\n");
	fprintf(stderr, "gxp-upload: not yet implemented\n");
	return EXIT_PERM;
}
