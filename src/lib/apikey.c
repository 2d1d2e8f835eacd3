/* apikey.c: which Supabase key gxp-upload uses, and what kind it is.
 * SUPABASE_SECRET_KEY (sb_secret_..., or any key) wins over the legacy
 * SUPABASE_SERVICE_ROLE.  The kind is read from the key's form: an
 * sb_secret_ or sb_publishable_ prefix, or a JWT (three base64url parts)
 * whose payload's role claim is read without checking the signature: the
 * server checks it, this only tells the user what was given. */
#include <string.h>

#include "gxp.h"

/* The role claim of a JWT's payload into role; 0, or -1 if p is not one. */
static int
jwt_role(const char *key, char *role, size_t cap)
{
	const char *p = strchr(key, '.'), *q = p ? strchr(p + 1, '.') : NULL;
	size_t n, i;
	char b64[1024];
	unsigned char json[sizeof b64];
	long got;
	cJSON *j;
	const char *r;

	if (p == NULL || q == NULL || p == key || q == p + 1 || strchr(q + 1, '.') ||
	    q[1] == '\0' || (n = (size_t)(q - p - 1)) + 3 >= sizeof b64)
		return -1;
	for (i = 0; i < n; i++) {
		char c = p[1 + i];

		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
		    c) == NULL)
			return -1;
		b64[i] = c == '-' ? '+' : c == '_' ? '/' : c;
	}
	while (i % 4)
		b64[i++] = '=';
	if ((got = gxp_b64_decode(b64, i, json, sizeof json)) < 0 ||
	    (j = gxp_json_parse((const char *)json, (size_t)got)) == NULL)
		return -1;
	r = gxp_json_str(j, "role");
	snprintf(role, cap, "%s", r ? r : "");
	cJSON_Delete(j);
	return 0;
}

/* Fills k from the settings; k->value is NULL when neither is set. */
void
gxp_apikey(struct gxp_apikey *k)
{
	const char *secret = gxp_cfg("SUPABASE_SECRET_KEY");
	const char *legacy = gxp_cfg("SUPABASE_SERVICE_ROLE");

	memset(k, 0, sizeof *k);
	k->setting = secret ? "SUPABASE_SECRET_KEY" : "SUPABASE_SERVICE_ROLE";
	k->value = secret ? secret : legacy;
	k->both = secret && legacy;
	if (k->value == NULL)
		k->kind = KEY_NONE;
	else if (strncmp(k->value, "sb_secret_", 10) == 0)
		k->kind = KEY_SECRET;
	else if (strncmp(k->value, "sb_publishable_", 15) == 0)
		k->kind = KEY_PUBLISHABLE;
	else if (jwt_role(k->value, k->role, sizeof k->role) == 0)
		k->kind = KEY_JWT;
	else
		k->kind = KEY_OTHER;
}

/* Whether the key goes in the Authorization header too: only a JWT is a
 * bearer token (self-hosted Storage wants one); the new keys are not. */
int
gxp_apikey_bearer(const struct gxp_apikey *k)
{
	return k->kind == KEY_JWT;
}

/* What kind of key it is, in words, never a character of the key. */
const char *
gxp_apikey_kind(const struct gxp_apikey *k)
{
	switch (k->kind) {
	case KEY_SECRET:
		return "a secret key (sb_secret_...)";
	case KEY_PUBLISHABLE:
		return "a publishable key (sb_publishable_...)";
	case KEY_JWT:
		return strcmp(k->role, "service_role") == 0 ?
		    "a legacy service_role key (JWT)" : strcmp(k->role, "anon") == 0 ?
		    "a legacy anon key (JWT, role anon)" : "a JWT that is not a service_role key";
	case KEY_OTHER:
		return "a key of unknown form (neither sb_secret_... nor a JWT)";
	default:
		return "no key";
	}
}

/* Why the key cannot write gxp's rows, or NULL. */
const char *
gxp_apikey_refused(const struct gxp_apikey *k)
{
	if (k->kind == KEY_PUBLISHABLE ||
	    (k->kind == KEY_JWT && strcmp(k->role, "anon") == 0))
		return "a publishable (anon) key only reaches what row level security "
		    "lets the public see; gxp-upload needs the secret key (sb_secret_..., "
		    "Project Settings > API Keys) or the legacy service_role key";
	return NULL;
}
