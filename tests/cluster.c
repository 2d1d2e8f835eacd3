/* cluster.c: the cluster's ownership function (src/lib/cluster.c) for the
 * tests.
 *
 *   cluster-test check           unit checks; "ok"/"not ok" lines, exit 1
 *                                if one failed
 *   cluster-test owner W1,W2...  for each device id on stdin, "dev owner"
 *                                with those workers live
 *   cluster-test bench N         gxp-sub's decision for a message of a
 *                                device another worker owns (the topic's
 *                                device, then the cached owner), N devices,
 *                                three workers: CPU ns per message
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/gxp.h"

static int checks, failed;

static void
result(int ok, const char *what)
{
	checks++;
	printf("%sok %d - %s\n", ok ? "" : "not ", checks, what);
	if (!ok)
		failed = 1;
}

static struct gxp_cluster *
with(const char *self, const char *workers)
{
	struct gxp_cluster *c = gxp_cluster_follower();
	struct gxp_buf line = { 0 };
	char *list = xstrdup(workers), *save = NULL;

	gxp_buf_addf(&line, "{\"event\":\"cluster\",\"self\":\"%s\",\"workers\":[", self);
	for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save))
		gxp_buf_addf(&line, "%s\"%s\"", line.p[line.len - 1] == '[' ? "" : ",", w);
	gxp_buf_adds(&line, "]}");
	if (gxp_cluster_from_line(c, line.p, line.len) != 1)
		exit(2);
	gxp_buf_free(&line);
	free(list);
	return c;
}

enum { DEVICES = 30000 };

static void
check(void)
{
	struct gxp_cluster *three = with("w1", "w1,w2,w3"), *two = with("w1", "w1,w3");
	struct gxp_cluster *four = with("w1", "w1,w2,w3,w4");
	size_t share[3] = { 0 }, moved_wrong = 0, kept = 0, stolen = 0, to_w4 = 0;
	char dev[32];

	for (int i = 0; i < DEVICES; i++) {
		const char *o3, *o2, *o4;

		snprintf(dev, sizeof dev, "SIM%06d", i);
		o3 = gxp_cluster_owner(three, dev);
		o2 = gxp_cluster_owner(two, dev);
		o4 = gxp_cluster_owner(four, dev);
		share[o3[1] - '1']++;
		if (strcmp(o3, "w2") != 0 && strcmp(o3, o2) != 0)
			moved_wrong++;
		if (strcmp(o3, "w2") != 0 && strcmp(o3, o2) == 0)
			kept++;
		if (strcmp(o4, "w4") == 0)
			to_w4++;
		else if (strcmp(o4, o3) != 0)
			stolen++;
		if (gxp_cluster_owns(three, dev) != (strcmp(o3, "w1") == 0))
			moved_wrong++;
		if (gxp_cluster_owns(three, dev) != (strcmp(o3, "w1") == 0))
			moved_wrong++;	/* asked again: the cache's answer */
	}
	for (int w = 0; w < 3; w++)
		result(share[w] > DEVICES / 3 * 9 / 10 && share[w] < DEVICES / 3 * 11 / 10,
		    "three workers each own about a third of the devices");
	result(moved_wrong == 0, "losing w2 moves only w2's devices; the cache agrees");
	result(kept > 0, "the others keep theirs");
	result(stolen == 0 && to_w4 > DEVICES / 4 * 9 / 10 && to_w4 < DEVICES / 4 * 11 / 10,
	    "a fourth worker takes a quarter, each from its owner, and no device moves between the others");
	gxp_cluster_update(three, "w2", 0);
	result(gxp_cluster_owns(three, "SIM000001") ==
	    (strcmp(gxp_cluster_owner(two, "SIM000001"), "w1") == 0),
	    "a change of the set invalidates the cache");
	gxp_cluster_free(three);
	gxp_cluster_free(two);
	gxp_cluster_free(four);
}

/* The decision alone, as gxp-sub's callback makes it: the device from the
 * topic (gxp_topic_parse), then gxp_cluster_owns. */
static void
bench(int ndev)
{
	struct gxp_cluster *c = with("w1", "w1,w2,w3");
	char (*topics)[64] = xcalloc((size_t)ndev, sizeof *topics), dev[GXP_DEVICE_MAX + 1];
	long long rounds = 2000000 / ndev + 1, n = 0, owned = 0;
	struct timespec a, b;

	for (int i = 0; i < ndev; i++)
		snprintf(topics[i], sizeof topics[i], "ESP32CAM/SIM%06d/data", i);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
	for (long long r = 0; r < rounds; r++)
		for (int i = 0; i < ndev; i++, n++)
			if (gxp_topic_parse(topics[i], dev) != TOPIC_OTHER)
				owned += gxp_cluster_owns(c, dev);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
	printf("%.0f ns a message (%lld messages, %d devices, %lld%% owned)\n",
	    ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)n,
	    n, ndev, owned * 100 / n);
	free(topics);
	gxp_cluster_free(c);
}

int
main(int argc, char **argv)
{
	char line[256];
	struct gxp_cluster *c;

	gxp_init("cluster-test");
	if (argc == 2 && strcmp(argv[1], "check") == 0) {
		check();
		return failed;
	}
	if (argc == 3 && strcmp(argv[1], "bench") == 0) {
		bench(atoi(argv[2]) > 0 ? atoi(argv[2]) : 100);
		return 0;
	}
	if (argc != 3 || strcmp(argv[1], "owner") != 0) {
		fprintf(stderr, "usage: cluster-test check | owner W1,W2... | bench N\n");
		return 2;
	}
	c = with("-", argv[2]);
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\n")] = '\0';
		printf("%s %s\n", line, gxp_cluster_owner(c, line));
	}
	gxp_cluster_free(c);
	return 0;
}
