-- What a Supabase project holds before its migrations run, as far as this project needs it: the
-- API roles, the default grants on public, auth.jwt()/role()/uid() for policies, pg_net's queue
-- and response tables (same names and columns) and Supabase's webhook trigger function. Applied
-- to a new database in the transaction that then runs supabase/migrations and supabase/seed.sql.
do $$ begin
  if not exists (select from pg_roles where rolname = 'anon') then  -- roles are the cluster's
    create role anon nologin noinherit;
    create role authenticated nologin noinherit;
    create role service_role nologin noinherit bypassrls;
    create role authenticator login noinherit;  -- PostgREST's login; it becomes the JWT's role
    grant anon, authenticated, service_role to authenticator;
  end if;
end $$;
create schema extensions;
create schema auth;
create schema net;
create schema supabase_functions;
create schema supabase_migrations;
grant usage on schema public, extensions, auth, net, supabase_functions
  to anon, authenticated, service_role;
-- Supabase grants the API roles all on what postgres creates in public; RLS narrows it.
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;

create function auth.jwt() returns jsonb language sql stable
  as $$ select coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $$;
create function auth.role() returns text language sql stable as $$ select auth.jwt() ->> 'role' $$;
create function auth.uid() returns uuid language sql stable
  as $$ select nullif(auth.jwt() ->> 'sub', '')::uuid $$;

create table supabase_migrations.schema_migrations (
  version text primary key, statements text[], name text
);

create unlogged table net.http_request_queue (
  id bigserial, method text not null, url text not null, headers jsonb, body bytea,
  timeout_milliseconds int not null
);
create unlogged table net._http_response (
  id bigint, status_code integer, content_type text, headers jsonb, content text, timed_out bool,
  error_msg text, created timestamptz not null default now()
);
create index on net._http_response (created);

create function net.http_post(
  url text, body jsonb default '{}', params jsonb default '{}',
  headers jsonb default '{"Content-Type": "application/json"}', timeout_milliseconds int default 5000
) returns bigint language plpgsql security definer set search_path = net as $$
declare
  request_id bigint;
begin
  if not exists (select from jsonb_object_keys(headers) k where lower(k) = 'content-type') then
    headers := headers || '{"Content-Type": "application/json"}';
  end if;
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values ('POST', url, headers, convert_to(body::text, 'UTF8'), timeout_milliseconds)
  returning id into request_id;
  perform pg_notify('pg_net', '');  -- wakes the worker, only if this transaction commits
  return request_id;
end $$;

create table supabase_functions.hooks (
  id bigserial primary key, hook_table_id integer not null, hook_name text not null,
  created_at timestamptz not null default now(), request_id bigint
);

-- A Database Webhook: http_request(url, method, headers, params, timeout_ms), as Supabase's.
create function supabase_functions.http_request() returns trigger
language plpgsql security definer set search_path = supabase_functions as $$
declare
  request_id bigint;
  payload jsonb;
  headers jsonb := coalesce(nullif(TG_ARGV[2], 'null'), '{"Content-Type": "application/json"}');
  params jsonb := coalesce(nullif(TG_ARGV[3], 'null'), '{}');
  timeout_ms integer := coalesce(nullif(TG_ARGV[4], 'null'), '1000');
begin
  if TG_ARGV[0] is null or TG_ARGV[0] = 'null' then
    raise exception 'url argument is missing';
  elsif TG_ARGV[1] is distinct from 'POST' then
    raise exception 'method argument % is invalid (the local stack sends POST)', TG_ARGV[1];
  end if;
  payload := jsonb_build_object(
    'old_record', OLD, 'record', NEW, 'type', TG_OP, 'table', TG_TABLE_NAME,
    'schema', TG_TABLE_SCHEMA
  );
  request_id := net.http_post(TG_ARGV[0], payload, params, headers, timeout_ms);
  insert into supabase_functions.hooks (hook_table_id, hook_name, request_id)
  values (TG_RELID, TG_NAME, request_id);
  return NEW;
end $$;
revoke all on function net.http_post, supabase_functions.http_request from public;
grant execute on function net.http_post, supabase_functions.http_request
  to anon, authenticated, service_role;
