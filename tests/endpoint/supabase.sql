-- supabase.sql: what a fresh Supabase project has before sql/schema.sql and
-- sql/rls.sql run, reduced to what they and the test endpoint touch: the
-- API roles, the login role the API servers connect as, the default grants
-- on public, and the two Storage tables with RLS on.  Test equipment only.

-- Roles belong to the cluster: a second database (a test's) finds them.
-- Supabase gives service_role BYPASSRLS.  Here it does not have it, so the
-- policies in sql/rls.sql are what let gxp write: what passes here passes
-- there too.
do $$
begin
	if not exists (select 1 from pg_roles where rolname = 'authenticator') then
		create role anon nologin noinherit;
		create role authenticated nologin noinherit;
		create role service_role nologin noinherit nobypassrls;
		create role authenticator login noinherit;
		grant anon, authenticated, service_role to authenticator;
	end if;
end
$$;

grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public
	grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public
	grant all on sequences to anon, authenticated, service_role;

create schema storage;
grant usage on schema storage to anon, authenticated, service_role;

create table storage.buckets (
	id text primary key,
	name text not null unique,
	owner uuid,
	public boolean default false,
	file_size_limit bigint,
	allowed_mime_types text[],
	created_at timestamptz default now(),
	updated_at timestamptz default now()
);

create table storage.objects (
	id uuid primary key default gen_random_uuid(),
	bucket_id text references storage.buckets (id),
	name text,
	owner uuid,
	metadata jsonb,
	version text,
	created_at timestamptz default now(),
	updated_at timestamptz default now(),
	last_accessed_at timestamptz default now(),
	unique (bucket_id, name)
);

alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;
grant all on storage.buckets, storage.objects to anon, authenticated, service_role;
