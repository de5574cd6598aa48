-- jobhook's stand-in for supabase/pg_jsonschema 0.3.3 (src/lib.rs), which wraps the Rust crate
-- jsonschema 0.17.1 built with default features off (pg_jsonschema's Cargo.toml), so that only
-- drafts 4, 6 and 7 exist and a schema without "$schema" is Draft 7 (jsonschema
-- src/schemas.rs:23, `Draft::default`), where formats are asserted (schemas.rs:30,
-- `validate_formats_by_default`) and unknown formats are ignored (compilation/options.rs:291).
--
-- Same names, signatures and messages (jsonschema src/error.rs:776-995, `Display`), for the
-- subset of Draft 7 that pydantic emits for a parameter model. Where the crate would quietly
-- do something else with a keyword outside that subset, the stand-in refuses it with SQLSTATE
-- 0A000 instead, so that a schema that works here cannot mean something different on hosted
-- Supabase; jobhook's registry refuses the same keywords before a type is synced.
-- tests/test_jsonschema.py runs every case through this, the `jsonschema` package's
-- Draft7Validator and the crate's own Python binding, and requires the same verdicts.

\echo Use "CREATE EXTENSION pg_jsonschema" to load this file. \quit

-- serde_json's Display of a value, which every message quotes: compact, keys in byte order
-- (serde_json's default map is a BTreeMap). With `typed`, numbers are shown as serde_json's
-- own equality (and the crate's hash) sees them: one written with a fraction, or too big for a
-- u64 or an i64, is an f64, which never equals an integer.
create function @extschema@._jsonschema_show(value jsonb, typed boolean default false)
returns text
language plpgsql
immutable strict parallel safe
set search_path = ''
as $$
begin
  case jsonb_typeof(value)
    when 'object' then
      return '{' || coalesce(
        (select string_agg(to_jsonb(e.key)::text || ':' || @extschema@._jsonschema_show(e.value, typed),
                           ',' order by e.key collate "C")
           from jsonb_each(value) as e), '') || '}';
    when 'array' then
      return '[' || coalesce(
        (select string_agg(@extschema@._jsonschema_show(a.value, typed), ',' order by a.n)
           from jsonb_array_elements(value) with ordinality as a (value, n)), '') || ']';
    when 'number' then
      if not typed then
        return value::text;
      end if;
      if value::text ~ '[.eE]' or value::numeric not between -9223372036854775808
                                                         and 18446744073709551615 then
        return 'f' || (value::numeric)::float8::text;
      end if;
      return 'i' || value::text;
    else
      return value::text;
  end case;
end;
$$;

-- An ECMA-262 pattern as a PostgreSQL regular expression, converted the way the crate converts
-- it for its regex engine (keywords/pattern.rs:106, `convert_regex`): \d, \w and \s are the
-- ASCII sets, \cX is a control character. Then what PostgreSQL's dialect would read otherwise:
-- `.` stops at a newline as in the crate's engine (PostgreSQL's matches it), and \xHH is two
-- digits (PostgreSQL's takes every hex digit that follows). Constructs PostgreSQL lacks are
-- refused rather than guessed at.
create function @extschema@._jsonschema_regex(pattern text)
returns text
language plpgsql
immutable strict parallel safe
set search_path = ''
as $$
declare
  out text := '';
  i integer := 1;
  n integer := length(pattern);
  c text;
  nxt text;
  in_class boolean := false;
  space_set constant text := E' \t\n\r\u000b\u000c\u2003\ufeff\u2029\u00a0';
begin
  while i <= n loop
    c := substr(pattern, i, 1);
    if c = '\' then
      nxt := substr(pattern, i + 1, 1);
      if nxt = '' then
        raise exception 'invalid pattern "%": it ends with a lone backslash', pattern
          using errcode = '2201B';
      end if;
      case
        when nxt = 'd' then out := out || case when in_class then '0-9' else '[0-9]' end;
        when nxt = 'w' then out := out || case when in_class then 'A-Za-z0-9_' else '[A-Za-z0-9_]' end;
        when nxt = 's' then out := out || case when in_class then space_set else '[' || space_set || ']' end;
        when nxt in ('D', 'W', 'S') and not in_class then
          out := out || case nxt when 'D' then '[^0-9]' when 'W' then '[^A-Za-z0-9_]'
                                 else '[^' || space_set || ']' end;
        when nxt in ('D', 'W', 'S') then
          raise exception 'pattern "%": \% inside a character class is not supported by the dev stack', pattern, nxt
            using errcode = '0A000';
        when nxt = 'c' and substr(pattern, i + 2, 1) ~ '^[A-Za-z]$' then
          out := out || chr(ascii(upper(substr(pattern, i + 2, 1))) - 64);
          i := i + 1;
        when nxt = 'x' and substr(pattern, i + 2, 2) ~ '^[0-9A-Fa-f]{2}$' then
          out := out || '\u00' || substr(pattern, i + 2, 2);
          i := i + 2;
        when nxt in ('p', 'P', 'k') then
          raise exception 'pattern "%": \% is not supported by the dev stack', pattern, nxt
            using errcode = '0A000';
        when nxt = 'b' and in_class then out := out || '\u0008';
        when nxt = 'b' then out := out || '\y';
        when nxt = 'B' then out := out || '\Y';
        when nxt = '/' then out := out || '/';
        else out := out || c || nxt;
      end case;
      i := i + 2;
      continue;
    end if;
    if in_class then
      if c = '[' and substr(pattern, i + 1, 1) in (':', '.', '=') then
        -- PostgreSQL would read a POSIX class here; ECMA-262 reads the characters.
        out := out || '\[';
      elsif c = ']' then
        in_class := false;
        out := out || c;
      else
        out := out || c;
      end if;
    elsif c = '[' then
      in_class := true;
      out := out || c;
      -- A ']' straight after '[' or '[^' closes an empty class in ECMA-262; PostgreSQL would
      -- take it as a literal.
      if substr(pattern, i + 1, 1) = '^' then
        out := out || '^';
        i := i + 1;
      end if;
      if substr(pattern, i + 1, 1) = ']' then
        raise exception 'pattern "%": an empty character class is not supported by the dev stack', pattern
          using errcode = '0A000';
      end if;
    elsif c = '.' then
      out := out || E'[^\n]';
    elsif c = '(' and substr(pattern, i, 3) = '(?<' and substr(pattern, i + 3, 1) not in ('=', '!') then
      raise exception 'pattern "%": named groups are not supported by the dev stack', pattern
        using errcode = '0A000';
    elsif c = '(' and substr(pattern, i, 2) = '(?' and substr(pattern, i + 2, 1) not in (':', '=', '!', '<') then
      raise exception 'pattern "%": inline flags are not supported by the dev stack', pattern
        using errcode = '0A000';
    else
      out := out || c;
    end if;
    i := i + 1;
  end loop;
  return out;
end;
$$;

-- The formats Draft 7 asserts (keywords/format.rs:430-500), as the crate checks them.
create function @extschema@._jsonschema_format_ok(format text, item text)
returns boolean
language plpgsql
immutable strict parallel safe
set search_path = ''
as $$
declare
  parts text[];
  at_ integer;
begin
  case format
    when 'date' then
      -- format.rs:85: `time::Date::parse` plus DATE_RE (format.rs:21), four-digit zero-padded.
      if item !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' then
        return false;
      end if;
      return @extschema@._jsonschema_calendar_ok(item);
    when 'date-time' then
      -- format.rs:110: RFC 3339 as the `time` crate parses it.
      parts := regexp_match(item,
        '^([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$');
      return parts is not null and @extschema@._jsonschema_calendar_ok(parts[1]);
    when 'time' then
      -- format.rs:29-31 (TIME_RE), quirks included: exactly six fraction digits, and '|' as a sign.
      return item ~ '^([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(\.[0-9]{6})?(([Zz])|([+|\-]([01][0-9]|2[0-3]):[0-5][0-9]))$';
    when 'email', 'idn-email' then
      -- format.rs:122 (`is_valid_email`): only the local part is looked at.
      at_ := strpos(item, '@');
      return at_ > 1 and left(item, 1) <> '.'
         and strpos(left(item, at_ - 1), '..') = 0 and substr(item, at_ - 1, 1) <> '.';
    when 'hostname', 'idn-hostname' then
      -- format.rs:164.
      return item <> '' and left(item, 1) <> '-' and right(item, 1) <> '-'
         and length(item) <= 255 and item !~ '[^[:alnum:].-]'
         and not exists (select from unnest(string_to_array(item, '.')) as p (part)
                          where length(p.part) > 63);
    when 'ipv4' then
      -- format.rs:204: Rust's Ipv4Addr, four decimal octets without leading zeros.
      return item ~ '^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$';
    when 'ipv6' then
      -- format.rs:222: Rust's Ipv6Addr; no zone, no prefix length.
      if item !~ '^[0-9A-Fa-f:.]+$' or strpos(item, ':') = 0 then
        return false;
      end if;
      begin
        return family(item::inet) = 6 and masklen(item::inet) = 128;
      exception when invalid_text_representation then
        return false;
      end;
    when 'uri' then
      -- format.rs:239: `url::Url::from_str`, which takes what follows a scheme almost as it
      -- comes (leading and trailing blanks stripped, spaces percent-encoded): the scheme is
      -- what it insists on.
      return item ~ '^[[:space:]]*[A-Za-z][A-Za-z0-9+.-]*:';
    when 'uri-reference', 'iri', 'iri-reference', 'uri-template', 'json-pointer',
         'relative-json-pointer', 'regex' then
      raise exception 'the format "%" is not supported by the dev stack''s pg_jsonschema', format
        using errcode = '0A000',
              hint = 'validate it in the handler, or use a pattern';
    else
      -- Unknown to Draft 7 (uuid, duration, binary, password, ...): an annotation only.
      return true;
  end case;
end;
$$;

create function @extschema@._jsonschema_calendar_ok(day text)
returns boolean
language plpgsql
immutable strict parallel safe
set search_path = ''
as $$
declare
  y integer := substr(day, 1, 4)::integer;
  m integer := substr(day, 6, 2)::integer;
  d integer := substr(day, 9, 2)::integer;
begin
  if m < 1 or m > 12 or d < 1 then
    return false;
  end if;
  return d <= case
    when m = 2 and (y % 4 = 0 and (y % 100 <> 0 or y % 400 = 0)) then 29
    when m = 2 then 28
    when m in (4, 6, 9, 11) then 30
    else 31 end;
end;
$$;

-- multipleOf as the crate decides it (keywords/multiple_of.rs), in f64 rather than exactly: so
-- 0.3 is not a multiple of 0.1 there (0.3 / 0.1 is 2.9999999999999996), and a negative number
-- passes every fractional divisor (Rust's `%` keeps the dividend's sign, and the remainder is
-- only compared with f64::EPSILON from above).
create function @extschema@._jsonschema_multiple_ok(item numeric, factor numeric)
returns boolean
language plpgsql
immutable strict parallel safe
set search_path = ''
as $$
declare
  x float8 := item::float8;
  m float8 := factor::float8;
  q float8;
begin
  if x = 0 then
    return true;
  end if;
  if m = trunc(m) then
    -- MultipleOfIntegerValidator: `item.fract() == 0. && item % multiple_of == 0.`; both are
    -- whole numbers by then, which int8 holds exactly if they fit.
    if x <> trunc(x) then
      return false;
    end if;
    if abs(x) < 9e18 and m < 9e18 then
      return x::int8 % m::int8 = 0;
    end if;
    return item % factor = 0;
  end if;
  -- MultipleOfFloatValidator. Where the quotient would overflow (or underflow, which
  -- PostgreSQL raises on), the crate's remainder is NaN and it decides exactly instead.
  if (m < 1 and abs(x) > 1.7e308 * m) or abs(x) < 1e-300 then
    return item % factor = 0;
  end if;
  q := x / m;
  return q - trunc(q) < 2.220446049250313e-16;
end;
$$;

-- "#", "#/$defs/Name" and the like, against the root document (JSON Pointer, RFC 6901).
create function @extschema@._jsonschema_resolve(root jsonb, reference text)
returns jsonb
language plpgsql
immutable strict parallel safe
set search_path = ''
as $$
declare
  path text[];
  target jsonb;
begin
  if reference = '#' then
    return root;
  end if;
  if left(reference, 2) <> '#/' then
    raise exception 'the reference "%" is not supported by the dev stack''s pg_jsonschema', reference
      using errcode = '0A000', hint = 'only references into the same schema ("#/...") are';
  end if;
  select array_agg(replace(replace(p.part, '~1', '/'), '~0', '~') order by p.n) into path
    from unnest(string_to_array(substr(reference, 3), '/')) with ordinality as p (part, n);
  target := root #> path;
  if target is null then
    raise exception 'Invalid reference: %', reference using errcode = '22023';
  end if;
  return target;
end;
$$;

-- Every error of `instance` against `schema`, in the crate's words; with `first`, at most one
-- (what the boolean functions need).
create function @extschema@._jsonschema_errors(
  schema jsonb, root jsonb, instance jsonb, first boolean, depth integer)
returns text[]
language plpgsql
immutable parallel safe
set search_path = ''
as $$
declare
  errors text[] := '{}';
  keyword text;
  value jsonb;
  kind text := jsonb_typeof(instance);
  types text[];
  shown text;
  extra text[];
  item jsonb;
  key text;
  matched integer;
  number numeric;
  found_error text[];
  keywords jsonb;
  names jsonb;
  i integer;
  j integer;
begin
  if depth > 64 then
    raise exception 'the schema nests or recurses more than 64 levels here' using errcode = '54001';
  end if;
  if jsonb_typeof(schema) = 'boolean' then
    if schema = 'false' then
      return array['False schema does not allow ' || @extschema@._jsonschema_show(instance)];
    end if;
    return errors;
  end if;
  if jsonb_typeof(schema) is distinct from 'object' then
    raise exception 'a schema must be an object or a boolean, got %', @extschema@._jsonschema_show(schema)
      using errcode = '22023';
  end if;
  -- Draft 7: a $ref stands for its target; keywords beside it are ignored.
  if schema ? '$ref' then
    return @extschema@._jsonschema_errors(
      @extschema@._jsonschema_resolve(root, schema ->> '$ref'), root, instance, first, depth + 1);
  end if;

  -- The crate compiles an object's keywords in map order, which is byte order; a verdict alone
  -- (`first`) needs no order. A verdict is what every insert asks for, so its path is made of
  -- expressions PL/pgSQL evaluates without a query: the keys as a jsonpath array, walked by
  -- index, in jsonb's own key order (the order jsonb_each gives too).
  if first then
    keywords := jsonb_path_query_array(schema, '$.keyvalue().key');
  else
    keywords := (select coalesce(jsonb_agg(e.key order by e.key collate "C"), '[]')
                   from jsonb_object_keys(schema) as e (key));
  end if;
  for i in 0 .. jsonb_array_length(keywords) - 1 loop
    exit when first and cardinality(errors) > 0;
    keyword := keywords ->> i;
    value := schema -> keyword;
    case keyword
      when 'type' then
        if jsonb_typeof(value) = 'array' then
          types := array(select jsonb_array_elements_text(value));
        else
          types := array[value #>> '{}'];
        end if;
        if not (kind = any(types)
                or (kind = 'number' and 'integer' = any(types)
                    and (instance #>> '{}')::numeric = trunc((instance #>> '{}')::numeric))) then
          errors := errors || case when cardinality(types) = 1
            then format('%s is not of type "%s"', @extschema@._jsonschema_show(instance), types[1])
            -- The crate names the types from a bit set, which is their alphabetical order.
            else format('%s is not of types %s', @extschema@._jsonschema_show(instance),
                        (select string_agg(format('"%s"', t), ', ' order by t collate "C")
                           from unnest(types) as t)) end;
        end if;
      when 'enum' then
        if not exists (select from jsonb_array_elements(value) as o where o.value = instance) then
          errors := errors || format('%s is not one of %s', @extschema@._jsonschema_show(instance),
                                     @extschema@._jsonschema_show(value));
        end if;
      when 'const' then
        if value <> instance then
          errors := errors || format('%s was expected', @extschema@._jsonschema_show(value));
        end if;
      when 'minLength', 'maxLength' then
        if kind = 'string' and (keyword = 'minLength' and length(instance #>> '{}') < value::numeric
                                or keyword = 'maxLength' and length(instance #>> '{}') > value::numeric) then
          errors := errors || format('%s is %s than %s character%s', @extschema@._jsonschema_show(instance),
                                     case keyword when 'minLength' then 'shorter' else 'longer' end,
                                     value, case when value::numeric = 1 then '' else 's' end);
        end if;
      when 'pattern' then
        if kind = 'string'
           and (instance #>> '{}') !~ @extschema@._jsonschema_regex(value #>> '{}') then
          errors := errors || format('%s does not match "%s"', @extschema@._jsonschema_show(instance),
                                     value #>> '{}');
        end if;
      when 'format' then
        if kind = 'string' and not @extschema@._jsonschema_format_ok(value #>> '{}', instance #>> '{}') then
          errors := errors || format('%s is not a "%s"', @extschema@._jsonschema_show(instance), value #>> '{}');
        end if;
      when 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf' then
        if kind = 'number' then
          number := (instance #>> '{}')::numeric;
          shown := @extschema@._jsonschema_show(instance);
          if keyword = 'minimum' and number < value::numeric then
            errors := errors || format('%s is less than the minimum of %s', shown, value);
          elsif keyword = 'maximum' and number > value::numeric then
            errors := errors || format('%s is greater than the maximum of %s', shown, value);
          elsif keyword = 'exclusiveMinimum' and number <= value::numeric then
            errors := errors || format('%s is less than or equal to the minimum of %s', shown, value);
          elsif keyword = 'exclusiveMaximum' and number >= value::numeric then
            errors := errors || format('%s is greater than or equal to the maximum of %s', shown, value);
          elsif keyword = 'multipleOf'
                and not @extschema@._jsonschema_multiple_ok(number, value::numeric) then
            -- The crate keeps the divisor as an f64 and shows it as Rust does (2.0 as "2").
            errors := errors || format('%s is not a multiple of %s', shown, trim_scale(value::numeric));
          end if;
        end if;
      when 'minItems', 'maxItems' then
        if kind = 'array' and (keyword = 'minItems' and jsonb_array_length(instance) < value::numeric
                               or keyword = 'maxItems' and jsonb_array_length(instance) > value::numeric) then
          errors := errors || format('%s has %s than %s item%s', @extschema@._jsonschema_show(instance),
                                     case keyword when 'minItems' then 'less' else 'more' end,
                                     value, case when value::numeric = 1 then '' else 's' end);
        end if;
      when 'uniqueItems' then
        -- Up to 15 items the crate compares them pairwise, numbers by value (1 equals 1.0),
        -- as jsonb does; past that it hashes them, and then 1 and 1.0 differ
        -- (keywords/unique_items.rs, ITEMS_SIZE_THRESHOLD).
        if kind = 'array' and value = 'true'
           and (case when jsonb_array_length(instance) <= 15
                  then (select count(distinct a.value) from jsonb_array_elements(instance) as a)
                  else (select count(distinct @extschema@._jsonschema_show(a.value, true))
                          from jsonb_array_elements(instance) as a) end)
               < jsonb_array_length(instance) then
          errors := errors || format('%s has non-unique elements', @extschema@._jsonschema_show(instance));
        end if;
      when 'items' then
        if jsonb_typeof(value) = 'array' then
          raise exception 'the keyword "items" with an array of schemas is not supported by the dev stack''s pg_jsonschema'
            using errcode = '0A000', hint = 'use a list of one type, or a nested model, for the parameter';
        end if;
        if kind = 'array' then
          for item in select a.value from jsonb_array_elements(instance) as a loop
            errors := errors || @extschema@._jsonschema_errors(value, root, item, first, depth + 1);
            exit when first and cardinality(errors) > 0;
          end loop;
        end if;
      when 'properties' then
        if kind = 'object' and first then
          -- The instance's keys that are properties: in jsonb's key order, as the properties'
          -- own keys would come.
          names := jsonb_path_query_array(instance, '$.keyvalue().key');
          for j in 0 .. jsonb_array_length(names) - 1 loop
            key := names ->> j;
            continue when not value ? key;
            errors := errors || @extschema@._jsonschema_errors(value -> key, root, instance -> key, true, depth + 1);
            exit when cardinality(errors) > 0;
          end loop;
        elsif kind = 'object' then
          -- Only the properties the instance has; in byte order, as the crate reports them.
          for key, item in
            select p.key, p.value
              from jsonb_each(value) as p
             where instance ? p.key
             order by p.key collate "C"
          loop
            errors := errors || @extschema@._jsonschema_errors(item, root, instance -> key, first, depth + 1);
          end loop;
        end if;
      when 'additionalProperties' then
        if kind = 'object' then
          -- The keys no property names, in byte order; found without a query, and sorted with
          -- one only when there are two or more.
          extra := '{}';
          names := jsonb_path_query_array(instance, '$.keyvalue().key');
          for j in 0 .. jsonb_array_length(names) - 1 loop
            key := names ->> j;
            if not coalesce(schema -> 'properties' ? key, false) then
              extra := extra || key;
            end if;
          end loop;
          if cardinality(extra) > 1 then
            extra := array(select k from unnest(extra) as k order by k collate "C");
          end if;
          if value = 'false' and not schema ? 'properties' then
            -- Without "properties" the crate treats it as a false schema for the first key's
            -- value (keywords/additional_properties.rs, AdditionalPropertiesFalseValidator).
            if cardinality(extra) > 0 then
              errors := errors || ('False schema does not allow '
                                   || @extschema@._jsonschema_show(instance -> extra[1]));
            end if;
          elsif value = 'false' then
            if cardinality(extra) > 0 then
              errors := errors || format('Additional properties are not allowed (%s %s unexpected)',
                (select string_agg(format('''%s''', k), ', ') from unnest(extra) as k),
                case when cardinality(extra) = 1 then 'was' else 'were' end);
            end if;
          else
            foreach key in array extra loop
              errors := errors || @extschema@._jsonschema_errors(value, root, instance -> key, first, depth + 1);
              exit when first and cardinality(errors) > 0;
            end loop;
          end if;
        end if;
      when 'required' then
        if kind = 'object' then
          for j in 0 .. jsonb_array_length(value) - 1 loop
            if not instance ? (value ->> j) then
              errors := errors || format('%s is a required property', to_jsonb(value ->> j)::text);
              exit when first;
            end if;
          end loop;
        end if;
      when 'minProperties', 'maxProperties' then
        if kind = 'object' then
          matched := (select count(*) from jsonb_object_keys(instance));
          if keyword = 'minProperties' and matched < value::numeric
             or keyword = 'maxProperties' and matched > value::numeric then
            errors := errors || format('%s has %s than %s propert%s', @extschema@._jsonschema_show(instance),
                                       case keyword when 'minProperties' then 'less' else 'more' end,
                                       value, case when value::numeric = 1 then 'y' else 'ies' end);
          end if;
        end if;
      when 'propertyNames' then
        if kind = 'object' and value = 'false' then
          -- One error for the object, not one per name (keywords/property_names.rs,
          -- PropertyNamesBooleanValidator).
          if instance <> '{}' then
            errors := errors || ('False schema does not allow ' || @extschema@._jsonschema_show(instance));
          end if;
        elsif kind = 'object' then
          for key in select k from jsonb_object_keys(instance) as k order by k collate "C" loop
            errors := errors || @extschema@._jsonschema_errors(value, root, to_jsonb(key), first, depth + 1);
            exit when first and cardinality(errors) > 0;
          end loop;
        end if;
      when 'allOf' then
        for item in select a.value from jsonb_array_elements(value) as a loop
          errors := errors || @extschema@._jsonschema_errors(item, root, instance, first, depth + 1);
          exit when first and cardinality(errors) > 0;
        end loop;
      when 'anyOf' then
        if not exists (
          select from jsonb_array_elements(value) as a
           where cardinality(@extschema@._jsonschema_errors(a.value, root, instance, true, depth + 1)) = 0
        ) then
          errors := errors || format('%s is not valid under any of the schemas listed in the ''anyOf'' keyword',
                                     @extschema@._jsonschema_show(instance));
        end if;
      when 'oneOf' then
        select count(*) into matched
          from jsonb_array_elements(value) as a
         where cardinality(@extschema@._jsonschema_errors(a.value, root, instance, true, depth + 1)) = 0;
        if matched = 0 then
          errors := errors || format('%s is not valid under any of the schemas listed in the ''oneOf'' keyword',
                                     @extschema@._jsonschema_show(instance));
        elsif matched > 1 then
          errors := errors || format('%s is valid under more than one of the schemas listed in the ''oneOf'' keyword',
                                     @extschema@._jsonschema_show(instance));
        end if;
      when 'not' then
        found_error := @extschema@._jsonschema_errors(value, root, instance, true, depth + 1);
        if cardinality(found_error) = 0 then
          errors := errors || format('%s is not allowed for %s', @extschema@._jsonschema_show(value),
                                     @extschema@._jsonschema_show(instance));
        end if;
      when '$defs', 'definitions', 'title', 'description', 'default', 'examples', '$comment',
           'readOnly', 'writeOnly', 'deprecated', 'discriminator', '$schema' then
        -- Annotations: no assertion in Draft 7 (or, for pydantic's `discriminator`, not a
        -- Draft 7 keyword at all, which the crate ignores).
        null;
      else
        if left(keyword, 2) <> 'x-' then
          raise exception 'the keyword "%" is not supported by the dev stack''s pg_jsonschema', keyword
            using errcode = '0A000',
                  hint = 'parameter models may use what pydantic emits for plain fields, lists, '
                         'dicts, nested models, unions, literals and enums';
        end if;
    end case;
  end loop;
  return errors;
end;
$$;

-- The three entry points are PL/pgSQL rather than SQL functions: PostgreSQL 15 plans a SQL
-- function's body again in every transaction that calls it, PL/pgSQL once per session, and
-- every insert into public.jobs calls one. Each name in them is qualified, so they need no
-- `set search_path` (whose save and restore would cost as much again).
create function @extschema@.json_matches_schema(schema json, instance json)
returns boolean
language plpgsql
immutable strict parallel safe
as $$
begin
  return pg_catalog.cardinality(@extschema@._jsonschema_errors(
    schema::pg_catalog.jsonb, schema::pg_catalog.jsonb, instance::pg_catalog.jsonb, true, 0))
    operator(pg_catalog.=) 0;
end;
$$;

create function @extschema@.jsonb_matches_schema(schema json, instance jsonb)
returns boolean
language plpgsql
immutable strict parallel safe
as $$
begin
  return pg_catalog.cardinality(@extschema@._jsonschema_errors(
    schema::pg_catalog.jsonb, schema::pg_catalog.jsonb, instance, true, 0))
    operator(pg_catalog.=) 0;
end;
$$;

create function @extschema@.jsonschema_validation_errors(schema json, instance json)
returns text[]
language plpgsql
immutable strict parallel safe
as $$
begin
  return @extschema@._jsonschema_errors(
    schema::pg_catalog.jsonb, schema::pg_catalog.jsonb, instance::pg_catalog.jsonb, false, 0);
end;
$$;

-- Upstream checks the schema against its meta-schema (lib.rs:16). The stand-in checks the
-- shapes of the keywords it supports, compiles every pattern, resolves every reference, and
-- refuses (0A000) what it does not support anywhere in the schema, reached or not.
create function @extschema@._jsonschema_check(node jsonb, root jsonb, depth integer)
returns boolean
language plpgsql
immutable parallel safe
set search_path = ''
as $$
declare
  keyword text;
  value jsonb;
  sub jsonb;
begin
  if jsonb_typeof(node) = 'boolean' then
    return true;
  end if;
  if jsonb_typeof(node) is distinct from 'object' or depth > 64 then
    raise notice 'Invalid JSON schema: % is not a schema', @extschema@._jsonschema_show(node);
    return false;
  end if;
  for keyword, value in select e.key, e.value from jsonb_each(node) as e loop
    case
      when keyword in ('properties', '$defs', 'definitions') then
        if jsonb_typeof(value) <> 'object' then
          raise notice 'Invalid JSON schema: "%" is not an object', keyword;
          return false;
        end if;
        for sub in select e.value from jsonb_each(value) as e loop
          if not @extschema@._jsonschema_check(sub, root, depth + 1) then
            return false;
          end if;
        end loop;
      when keyword in ('allOf', 'anyOf', 'oneOf') then
        if jsonb_typeof(value) <> 'array' or jsonb_array_length(value) = 0 then
          raise notice 'Invalid JSON schema: "%" is not a non-empty array', keyword;
          return false;
        end if;
        for sub in select a.value from jsonb_array_elements(value) as a loop
          if not @extschema@._jsonschema_check(sub, root, depth + 1) then
            return false;
          end if;
        end loop;
      when keyword in ('additionalProperties', 'items', 'propertyNames', 'not') then
        if keyword = 'items' and jsonb_typeof(value) = 'array' then
          -- the validator names what is unsupported
          perform @extschema@._jsonschema_errors(node, root, '[]', false, 0);
        end if;
        if not @extschema@._jsonschema_check(value, root, depth + 1) then
          return false;
        end if;
      when keyword = 'type' then
        if not (jsonb_typeof(value) = 'string' and value #>> '{}' in
                  ('null', 'boolean', 'object', 'array', 'number', 'integer', 'string')
                or jsonb_typeof(value) = 'array' and jsonb_array_length(value) > 0
                   and not exists (
                     select from jsonb_array_elements(value) as t
                      where jsonb_typeof(t.value) <> 'string' or t.value #>> '{}' not in
                            ('null', 'boolean', 'object', 'array', 'number', 'integer', 'string'))
                   and (select count(distinct t.value) from jsonb_array_elements(value) as t)
                       = jsonb_array_length(value)) then
          raise notice 'Invalid JSON schema: "type" is %', @extschema@._jsonschema_show(value);
          return false;
        end if;
      when keyword = 'required' then
        if jsonb_typeof(value) <> 'array' or exists (
             select from jsonb_array_elements(value) as r where jsonb_typeof(r.value) <> 'string')
           or (select count(distinct r.value) from jsonb_array_elements(value) as r)
              < jsonb_array_length(value) then
          raise notice 'Invalid JSON schema: "required" is %', @extschema@._jsonschema_show(value);
          return false;
        end if;
      when keyword = 'enum' and jsonb_typeof(value) <> 'array' then
        raise notice 'Invalid JSON schema: "enum" is %', @extschema@._jsonschema_show(value);
        return false;
      when keyword in ('minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum')
           and jsonb_typeof(value) <> 'number'
        -- The meta-schema's nonNegativeInteger, as the crate then reads it (`as_u64`, which
        -- 2.0 fails as much as -1 does).
        or keyword in ('minLength', 'maxLength', 'minItems', 'maxItems', 'minProperties',
                       'maxProperties')
           and not (jsonb_typeof(value) = 'number' and value::text ~ '^[0-9]+$')
        or keyword = 'multipleOf' and not (jsonb_typeof(value) = 'number' and value::numeric > 0)
        or keyword = 'uniqueItems' and jsonb_typeof(value) <> 'boolean'
        or keyword in ('pattern', 'format', '$ref') and jsonb_typeof(value) <> 'string' then
        raise notice 'Invalid JSON schema: "%" is %', keyword, @extschema@._jsonschema_show(value);
        return false;
      when keyword = 'pattern' then
        perform '' ~ @extschema@._jsonschema_regex(value #>> '{}');
      when keyword = 'format' then
        perform @extschema@._jsonschema_format_ok(value #>> '{}', '');
      when keyword = '$ref' then
        perform @extschema@._jsonschema_resolve(root, value #>> '{}');
      else
        -- Leaves the validator knows (or refuses by name).
        perform @extschema@._jsonschema_errors(jsonb_build_object(keyword, value), root, 'null', false, 0);
    end case;
  end loop;
  return true;
end;
$$;

create function @extschema@.jsonschema_is_valid(schema json)
returns boolean
language sql
immutable strict parallel safe
set search_path = ''
return @extschema@._jsonschema_check(schema::jsonb, schema::jsonb, 0);
