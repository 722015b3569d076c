-- supabase-waituntil: range fingerprints for the reconciler (optional).
--
-- The reconciler finds lost inserts and deletes by counting rows per range, and lost updates
-- by scanning a change column (updated_at). A table without a change column can opt in to
-- fingerprints instead ("fingerprint": true in its policy): for any range of its list, this
-- function returns the row count and the sum, modulo 2^64, of a 64-bit hash of each row.
-- Sums are order-free and additive, as in Negentropy's range-based set reconciliation: the
-- reconciler compares them with the same sums over the cache, range by range, and reads only
-- the rows of the ranges that differ.
--
-- Both sides must hash the same bytes. The cache holds each row as PostgREST rendered it
-- (JSON, numbers parsed as doubles); so the hash is not of a text but of a canonical encoding
-- of the row's JSON values that both sides compute alike (waituntil.cache.fingerprint):
--   null n, true t, false f; an integer written without a point or an exponent i<digits>;
--   any other number d<the 16 hex digits of its IEEE-754 double>; a string s<bytes>:<text>;
--   an array [<items>]; an object {<key as a string><value>...}, keys in byte order.
-- The row is the object of the cached columns, as to_json renders it: the same texts
-- PostgREST sends. The row hash is the first 16 hex digits of md5 of that encoding.
--
-- SECURITY INVOKER (the default): it runs as the caller's role, so Row Level Security decides
-- which rows it sees, exactly as for the reads it stands in for. It reads tables of the
-- caller's search path (PostgREST's exposed schema) only, by name, quoted.
--
-- Cost: the database hashes every row of the ranges it is asked about: the whole table once a
-- cycle (about 1 s per 100,000 rows here), then only the ranges that differ.

create or replace function public.waituntil_canonical(value json)
returns text
language plpgsql
immutable
strict
parallel safe
as $$
declare
  kind text := json_typeof(value);
  result text;
begin
  if kind = 'null' then
    return 'n';
  elsif kind = 'boolean' then
    return case when value::text = 'true' then 't' else 'f' end;
  elsif kind = 'number' then
    if value::text ~ '^-?[0-9]+$' then
      -- As a number, not as written: a double's -0 is written "-0", which JSON parsers read
      -- as the integer 0.
      return 'i' || (value::text)::numeric::text || ';';
    end if;
    return 'd' || encode(float8send((value::text)::float8), 'hex');
  elsif kind = 'string' then
    result := value #>> '{}';
    return 's' || octet_length(result) || ':' || result;
  elsif kind = 'array' then
    select '[' || coalesce(string_agg(public.waituntil_canonical(item), '' order by n), '')
           || ']'
      into result
      from json_array_elements(value) with ordinality as items(item, n);
    return result;
  end if;
  select '{' || coalesce(string_agg(
           's' || octet_length(key) || ':' || key || public.waituntil_canonical(item),
           '' order by convert_to(key, 'UTF8')), '') || '}'
    into result
    from json_each(value) as entries(key, item);
  return result;
end
$$;

-- One bound of a range, in list order: "position >= lower" (at_or_after) or "position <
-- upper" (not at_or_after), where a position is [order value, key] (or [key] for a list
-- ordered by its key) and nulls sort last ascending, first descending, as Postgres sorts.
create or replace function public.waituntil_bound(
  relation regclass,
  key_column text,
  order_column text,
  descending boolean,
  bound json,
  at_or_after boolean
)
returns text
language plpgsql
stable
as $$
declare
  key_type text;
  order_type text;
  key_value text;
  order_value json;
  typed text;
  operator text;
begin
  select format_type(atttypid, atttypmod) into key_type
    from pg_attribute where attrelid = relation and attname = key_column and not attisdropped;
  if key_type is null then
    raise exception 'column %.% does not exist', relation, key_column using errcode = '42703';
  end if;
  key_value := format('%L::%s', bound ->> (json_array_length(bound) - 1), key_type);
  if order_column is null then
    return format('%I %s %s', key_column, case when at_or_after then '>=' else '<' end, key_value);
  end if;
  select format_type(atttypid, atttypmod) into order_type
    from pg_attribute where attrelid = relation and attname = order_column and not attisdropped;
  if order_type is null then
    raise exception 'column %.% does not exist', relation, order_column using errcode = '42703';
  end if;
  order_value := bound -> 0;
  if json_typeof(order_value) = 'null' then
    -- The bound sits among the nulls: ascending they come last, descending first.
    if at_or_after = descending then
      return format('(%1$I is not null or (%1$I is null and %2$I %3$s %4$s))', order_column,
                    key_column, case when at_or_after then '>=' else '<' end, key_value);
    end if;
    return format('(%1$I is null and %2$I %3$s %4$s)', order_column, key_column,
                  case when at_or_after then '>=' else '<' end, key_value);
  end if;
  typed := format('%L::%s', order_value #>> '{}', order_type);
  operator := case when at_or_after <> descending then '>' else '<' end;
  return format('(%1$I %2$s %3$s or (%1$I = %3$s and %4$I %5$s %6$s)%7$s)', order_column,
                operator, typed, key_column, case when at_or_after then '>=' else '<' end,
                key_value,
                case when at_or_after <> descending then format(' or %I is null', order_column)
                     else '' end);
end
$$;

-- The count and fingerprint of one range of a table's list; with_rows adds each row's key
-- and hash (for a small range whose fingerprint differs). Returns
-- {"count": n, "fingerprint": "<sum mod 2^64, decimal>", "rows": [[key, "<hash>"], ...]}.
create or replace function public.waituntil_fingerprint(
  table_name text,
  key_column text,
  columns text[] default null,
  order_column text default null,
  descending boolean default false,
  lower_bound json default null,
  upper_bound json default null,
  with_rows boolean default false
)
returns json
language plpgsql
stable
as $$
declare
  relation regclass := to_regclass(quote_ident(table_name));
  row_json text;
  conditions text[] := array['true'];
  query text;
  result json;
begin
  if relation is null then
    raise exception 'relation "%" does not exist', table_name using errcode = '42P01';
  end if;
  if columns is null then
    row_json := 'to_json(t)';
  else
    select 'json_build_object(' || string_agg(format('%L, t.%I', c, c), ', ' order by n) || ')'
      into row_json from unnest(columns) with ordinality as listed(c, n);
  end if;
  if lower_bound is not null then
    conditions := conditions || public.waituntil_bound(
      relation, key_column, order_column, descending, lower_bound, true);
  end if;
  if upper_bound is not null then
    conditions := conditions || public.waituntil_bound(
      relation, key_column, order_column, descending, upper_bound, false);
  end if;
  query := format(
    'with hashed as (select t.%1$I as key, (''x'' || substr(md5(public.waituntil_canonical(%2$s)), 1, 16))::bit(64)::bigint as hash from %3$s t where %4$s) '
    'select json_build_object(''count'', count(*), ''fingerprint'', '
    '(((coalesce(sum(hash), 0) %% 18446744073709551616) + 18446744073709551616) %% 18446744073709551616)::text, '
    '''rows'', case when %5$L then coalesce(json_agg(json_build_array(key, '
    '((hash::numeric + 18446744073709551616) %% 18446744073709551616)::text)), ''[]'') end) from hashed',
    key_column, row_json, relation, array_to_string(conditions, ' and '), with_rows);
  execute query into result;
  return result;
end
$$;

grant execute on function public.waituntil_canonical(json) to anon, authenticated, service_role;
grant execute on function public.waituntil_bound(regclass, text, text, boolean, json, boolean)
  to anon, authenticated, service_role;
grant execute on function public.waituntil_fingerprint(text, text, text[], text, boolean, json,
  json, boolean) to anon, authenticated, service_role;
