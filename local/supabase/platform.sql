-- What a Supabase project holds before its own migrations run, as far as this project needs it:
-- the API roles, the default grants on public, auth.uid()/role()/jwt() for policies, pg_net's
-- queue and response tables (same names and columns) and Supabase's webhook trigger function.
-- Applied by local/supabase/postgres.py to a new database, in the transaction that then runs
-- supabase/migrations and supabase/seed.sql. Roles belong to the cluster: created once.
do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
    create role authenticated nologin noinherit;
    create role service_role nologin noinherit bypassrls;
    -- PostgREST logs in as authenticator and switches to the JWT's role per request.
    create role authenticator login noinherit;
    grant anon, authenticated, service_role to authenticator;
  end if;
end $$;

create schema extensions;
create schema auth;
create schema net;
create schema supabase_functions;
create schema supabase_migrations;

grant usage on schema public, extensions, auth to anon, authenticated, service_role;
-- Supabase grants the API roles everything on what postgres creates in public; Row Level
-- Security and a migration's own revokes narrow it.
alter default privileges for role postgres in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on sequences to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on functions to anon, authenticated, service_role;

create function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb
$$;
create function auth.role() returns text language sql stable as $$
  select auth.jwt() ->> 'role'
$$;
create function auth.uid() returns uuid language sql stable as $$
  select nullif(auth.jwt() ->> 'sub', '')::uuid
$$;

-- The applied migrations, as the Supabase CLI records them.
create table supabase_migrations.schema_migrations (
  version text primary key,
  statements text[],
  name text
);

-- pg_net: both tables unlogged, as there (a crash loses queued requests). The local stack's
-- dispatcher (local/supabase/net.py) plays the background worker.
create unlogged table net.http_request_queue (
  id bigserial,
  method text not null check (method in ('GET', 'POST', 'DELETE')),
  url text not null,
  headers jsonb,
  body bytea,
  timeout_milliseconds int not null
);
create unlogged table net._http_response (
  id bigint,
  status_code integer,
  content_type text,
  headers jsonb,
  content text,
  timed_out bool,
  error_msg text,
  created timestamptz not null default now()
);
create index on net._http_response (created);

create function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds int default 5000
) returns bigint language plpgsql security definer set search_path = net as $$
declare
  request_id bigint;
begin
  if not exists (select from jsonb_object_keys(coalesce(headers, '{}')) k
                 where lower(k) = 'content-type') then
    headers := coalesce(headers, '{}') || '{"Content-Type": "application/json"}';
  end if;
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values ('POST', url, headers, convert_to(body::text, 'UTF8'), timeout_milliseconds)
  returning id into request_id;
  -- pg_net wakes its worker; a notification is delivered only if this transaction commits.
  perform pg_notify('pg_net', '');
  return request_id;
end $$;

-- Supabase's Database Webhook function: http_request(url, method, headers, params, timeout_ms).
create table supabase_functions.hooks (
  id bigserial primary key,
  hook_table_id integer not null,
  hook_name text not null,
  created_at timestamptz not null default now(),
  request_id bigint
);

create function supabase_functions.http_request() returns trigger
language plpgsql security definer set search_path = supabase_functions as $$
declare
  request_id bigint;
  payload jsonb;
  url text := TG_ARGV[0]::text;
  method text := TG_ARGV[1]::text;
  headers jsonb := '{"Content-Type": "application/json"}';
  params jsonb := '{}';
  timeout_ms integer := 1000;
begin
  if url is null or url = 'null' then
    raise exception 'url argument is missing';
  end if;
  if method is distinct from 'POST' then
    raise exception 'method argument % is invalid (the local stack sends POST)', method;
  end if;
  if TG_ARGV[2] is not null and TG_ARGV[2] <> 'null' then
    headers := TG_ARGV[2]::jsonb;
  end if;
  if TG_ARGV[3] is not null and TG_ARGV[3] <> 'null' then
    params := TG_ARGV[3]::jsonb;
  end if;
  if TG_ARGV[4] is not null and TG_ARGV[4] <> 'null' then
    timeout_ms := TG_ARGV[4]::integer;
  end if;
  payload := jsonb_build_object(
    'old_record', OLD, 'record', NEW, 'type', TG_OP, 'table', TG_TABLE_NAME,
    'schema', TG_TABLE_SCHEMA
  );
  request_id := net.http_post(url, payload, params, headers, timeout_ms);
  insert into supabase_functions.hooks (hook_table_id, hook_name, request_id)
  values (TG_RELID, TG_NAME, request_id);
  return NEW;
end $$;

grant usage on schema net, supabase_functions to anon, authenticated, service_role;
revoke all on function net.http_post from public;
revoke all on function supabase_functions.http_request from public;
grant execute on function net.http_post, supabase_functions.http_request
  to anon, authenticated, service_role;
