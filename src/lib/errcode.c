/* errcode.c: what an error code in device_errors means.  The worker's own
 * codes (2101-2205) are the seed's; 1001-1099 are device-reported errors,
 * written as 1000 + the firmware's error number. */
#include <stdio.h>

#include "gxp.h"

static const struct {
	long code;
	const char *meaning;
} worker_codes[] = {
	{ 2101, "Failed to parse JSON from data topic" },
	{ 2102, "Chunk missing payload field" },
	{ 2103, "Base64 decode failed" },
	{ 2200, "Assembly finalization failed" },
	{ 2201, "Assembly timeout (missing chunks)" },
	{ 2202, "Declared size mismatch" },
	{ 2203, "Invalid JPEG signature" },
	{ 2204, "Storage upload failed" },
	{ 2205, "Capture DB update failed" },
};

static const char *const device_codes[] = {
	NULL,
	"camera initialization failed",
	"image capture failed",
	"sensor read failed",
	"memory allocation failed",
};

/* The meaning of code: a constant string, or, for a device-reported error
 * the firmware does not name, "Unknown error (code N)" written into buf.
 * NULL for a code outside both ranges. */
const char *
gxp_error_meaning(long code, char buf[GXP_MEANING_MAX])
{
	long n = code - 1000;

	for (size_t i = 0; i < sizeof worker_codes / sizeof worker_codes[0]; i++)
		if (worker_codes[i].code == code)
			return worker_codes[i].meaning;
	if (n < 1 || n > 99)
		return NULL;
	if (n < (long)(sizeof device_codes / sizeof device_codes[0]))
		return device_codes[n];
	snprintf(buf, GXP_MEANING_MAX, "Unknown error (code %ld)", n);
	return buf;
}
