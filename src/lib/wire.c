/* wire.c: the device wire format: topics, device ids, image names, and the
 * ACK_OK / NACK messages sent back on the ack topic. */
#include <stdlib.h>
#include <string.h>

#include "gxp.h"

/* Device ids seen in the field: [A-Za-z0-9_-]{1,64}. */
int
gxp_device_valid(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789_-");

	return n >= 1 && n <= GXP_DEVICE_MAX && s[n] == '\0';
}

/* Image names become file names and storage object names: [A-Za-z0-9._-],
 * at most GXP_NAME_MAX bytes, not starting with a dot (so never "." or
 * ".."), which rules out '/', NUL and control characters. */
int
gxp_image_name_valid(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789._-");

	return n >= 1 && n <= GXP_NAME_MAX && s[n] == '\0' && s[0] != '.';
}

/* Matches topic against an MQTT pattern with one '+' standing for the
 * device id (ESP32CAM/+/data); copies the id into dev. */
static int
match_pattern(const char *pattern, const char *topic, char dev[GXP_DEVICE_MAX + 1])
{
	const char *plus = strchr(pattern, '+');
	size_t pre, post, tlen = strlen(topic), dlen;

	if (plus == NULL)
		return 0;
	pre = (size_t)(plus - pattern);
	post = strlen(plus + 1);
	if (tlen < pre + post + 1 || strncmp(topic, pattern, pre) != 0 ||
	    strcmp(topic + tlen - post, plus + 1) != 0)
		return 0;
	dlen = tlen - pre - post;
	if (dlen > GXP_DEVICE_MAX)
		return 0;
	memcpy(dev, topic + pre, dlen);
	dev[dlen] = '\0';
	return gxp_device_valid(dev);
}

/* Whether topic matches the pattern of setting (TOPIC_PATTERN_CMD, ...),
 * with its device id in dev. */
int
gxp_topic_match(const char *setting, const char *topic, char dev[GXP_DEVICE_MAX + 1])
{
	return match_pattern(gxp_cfg(setting), topic, dev);
}

/* Which of the three topic patterns a topic matches, and its device id. */
int
gxp_topic_parse(const char *topic, char dev[GXP_DEVICE_MAX + 1])
{
	static const struct { const char *setting; int kind; } kinds[] = {
		{ "TOPIC_PATTERN_DATA", TOPIC_DATA },
		{ "TOPIC_PATTERN_STATUS", TOPIC_STATUS },
		{ "TOPIC_PATTERN_ACK", TOPIC_ACK },
	};
	static const char *patterns[3];

	for (int i = 0; i < 3; i++) {
		if (patterns[i] == NULL)
			patterns[i] = gxp_cfg(kinds[i].setting);
		if (match_pattern(patterns[i], topic, dev))
			return kinds[i].kind;
	}
	return TOPIC_OTHER;
}

/* ESP32CAM/{MAC}/ack: TOPIC_PATTERN_ACK with the device id for its '+'. */
char *
gxp_ack_topic(const char *dev)
{
	const char *pattern = gxp_cfg("TOPIC_PATTERN_ACK"), *plus = strchr(pattern, '+');

	if (plus == NULL)
		return xstrdup(pattern);
	return xasprintf("%.*s%s%s", (int)(plus - pattern), pattern, dev, plus + 1);
}

static cJSON *
publish_event(const char *kind, const char *dev, const char *image_name,
    cJSON *payload)
{
	cJSON *e = gxp_event_new("publish");
	char *topic = gxp_ack_topic(dev);

	cJSON_AddStringToObject(e, "kind", kind);
	cJSON_AddStringToObject(e, "device", dev);
	cJSON_AddStringToObject(e, "image_name", image_name);
	cJSON_AddStringToObject(e, "topic", topic);
	cJSON_AddNumberToObject(e, "qos", 1);
	cJSON_AddFalseToObject(e, "retain");
	cJSON_AddItemToObject(e, "payload", payload);
	free(topic);
	return e;
}

/* {"image_name":..., "ACK_OK":{"next_wake_time":...}}, the wake time from
 * ACK_NEXT_WAKE_TIME, else the device's schedule (sched, "5:30PM"; NULL:
 * none known), else an empty object. */
cJSON *
gxp_ack_ok_event(const char *dev, const char *image_name, const char *sched)
{
	const char *wake = gxp_cfg("ACK_NEXT_WAKE_TIME") ? gxp_cfg("ACK_NEXT_WAKE_TIME") : sched;
	cJSON *p = cJSON_CreateObject(), *ack = cJSON_CreateObject();

	cJSON_AddStringToObject(p, "image_name", image_name);
	if (wake)
		cJSON_AddStringToObject(ack, "next_wake_time", wake);
	cJSON_AddItemToObject(p, "ACK_OK", ack);
	return publish_event("ack_ok", dev, image_name, p);
}

/* {"image_name":..., "missing_chunks":[ids...]}, ids 0-based, ascending. */
cJSON *
gxp_nack_event(const char *dev, const char *image_name, const uint32_t *ids, size_t n)
{
	cJSON *p = cJSON_CreateObject(), *list;

	cJSON_AddStringToObject(p, "image_name", image_name);
	list = cJSON_AddArrayToObject(p, "missing_chunks");
	for (size_t i = 0; i < n; i++)
		cJSON_AddItemToArray(list, cJSON_CreateNumber(ids[i]));
	return publish_event("nack", dev, image_name, p);
}

/* A device's topic: the pattern of setting (TOPIC_PATTERN_DATA, ...) with
 * the device id for its '+'. */
char *
gxp_topic_for(const char *setting, const char *dev)
{
	const char *pattern = gxp_cfg(setting), *plus = strchr(pattern, '+');

	if (plus == NULL)
		return xstrdup(pattern);
	return xasprintf("%.*s%s%s", (int)(plus - pattern), pattern, dev, plus + 1);
}
