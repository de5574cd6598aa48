-- Stand-in for supabase/vault 0.3.1, sql/supabase_vault--0.3.0.sql: the same table, view and
-- function signatures. Upstream encrypts with libsodium under a root key that pgsodium reads
-- from a file outside the database; here pgcrypto's AES-CBC does the same job under a key the
-- dev stack writes to `vault_root_key` in the data directory (mode 0600, server user only).

create function vault._root_key()
returns bytea
language sql
stable
security definer
set search_path = ''
as $$
  select decode(btrim(pg_catalog.pg_read_file('vault_root_key')), 'hex')
$$;

create function vault._crypto_aead_det_noncegen()
returns bytea
language sql
volatile
as $$
  select extensions.gen_random_bytes(16)
$$;

-- Upstream's ciphertext is libsodium's deterministic AEAD over the secret, with the row's id as
-- associated data (sql/supabase_vault--0.3.0.sql:40, 78, 109): a ciphertext copied to another
-- row, or its nonce changed, fails to decrypt (src/pgsodium.c:132). Here: AES-256-CBC under
-- the root key, then a 16-byte HMAC-SHA256 tag (the size of libsodium's, ABYTES) over the
-- associated data, nonce and ciphertext under a key derived from the root key, key_id and
-- context; the tag leads, the ciphertext follows. The bytes differ from upstream's, so a dump
-- of vault.secrets moves only between databases of the same kind.
create function vault._crypto_aead_det_mac(
  ciphertext bytea, additional bytea, key_id bigint, context bytea, nonce bytea
)
returns bytea
language sql
stable
security definer
set search_path = ''
as $$
  select substr(extensions.hmac(
    pg_catalog.int4send(pg_catalog.length(additional)) || additional || nonce || ciphertext,
    extensions.hmac(context || pg_catalog.int8send(key_id), vault._root_key(), 'sha256'),
    'sha256'), 1, 16)
$$;

create function vault._crypto_aead_det_encrypt(
  message bytea, additional bytea, key_id bigint, context bytea = 'pgsodium', nonce bytea = null
)
returns bytea
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  ciphertext bytea := extensions.encrypt_iv(message, vault._root_key(), nonce, 'aes-cbc/pad:pkcs');
begin
  return vault._crypto_aead_det_mac(ciphertext, additional, key_id, context, nonce) || ciphertext;
end
$$;

create function vault._crypto_aead_det_decrypt(
  message bytea, additional bytea, key_id bigint, context bytea = 'pgsodium', nonce bytea = null
)
returns bytea
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  ciphertext bytea := substr(message, 17);
begin
  if pg_catalog.length(message) < 16 then
    raise exception using errcode = 'XX000',
      message = 'pgsodium_crypto_aead_det_decrypt_by_id: invalid message';
  end if;
  if substr(message, 1, 16)
     <> vault._crypto_aead_det_mac(ciphertext, additional, key_id, context, nonce) then
    raise exception using errcode = 'XX000',
      message = 'pgsodium_crypto_aead_det_decrypt_by_id: invalid ciphertext';
  end if;
  return extensions.decrypt_iv(ciphertext, vault._root_key(), nonce, 'aes-cbc/pad:pkcs');
end
$$;

create table vault.secrets (
  id uuid primary key default gen_random_uuid(),
  name text,
  description text not null default '',
  secret text not null,
  key_id uuid,
  nonce bytea default vault._crypto_aead_det_noncegen(),
  created_at timestamptz not null default current_timestamp,
  updated_at timestamptz not null default current_timestamp
);

comment on table vault.secrets is 'Table with encrypted `secret` column for storing sensitive information on disk.';

create unique index on vault.secrets using btree (name) where name is not null;

create view vault.decrypted_secrets as
select s.id,
  s.name,
  s.description,
  s.secret,
  convert_from(
    vault._crypto_aead_det_decrypt(
      message := decode(s.secret, 'base64'),
      additional := convert_to(s.id::text, 'utf8'),
      key_id := 0,
      context := 'pgsodium'::bytea,
      nonce := s.nonce
    ),
    'utf8'
  ) as decrypted_secret,
  s.key_id,
  s.nonce,
  s.created_at,
  s.updated_at
from vault.secrets s;

create function vault.create_secret(
  new_secret text,
  new_name text = null,
  new_description text = '',
  -- unused, as upstream
  new_key_id uuid = null
)
returns uuid
security definer
language plpgsql
set search_path = ''
as $$
declare
  rec record;
begin
  insert into vault.secrets (secret, name, description)
  values (new_secret, new_name, new_description)
  returning * into rec;
  update vault.secrets s
     set secret = encode(vault._crypto_aead_det_encrypt(
           message := convert_to(rec.secret, 'utf8'),
           additional := convert_to(s.id::text, 'utf8'),
           key_id := 0,
           context := 'pgsodium'::bytea,
           nonce := rec.nonce
         ), 'base64')
   where id = rec.id;
  return rec.id;
end
$$;

create function vault.update_secret(
  secret_id uuid,
  new_secret text = null,
  new_name text = null,
  new_description text = null,
  -- unused, as upstream
  new_key_id uuid = null
)
returns void
security definer
language plpgsql
set search_path = ''
as $$
begin
  update vault.secrets s
     set secret = case when new_secret is null then s.secret
                       else encode(vault._crypto_aead_det_encrypt(
                              message := convert_to(new_secret, 'utf8'),
                              additional := convert_to(s.id::text, 'utf8'),
                              key_id := 0,
                              context := 'pgsodium'::bytea,
                              nonce := s.nonce
                            ), 'base64')
                  end,
         name = coalesce(new_name, s.name),
         description = coalesce(new_description, s.description),
         updated_at = now()
   where s.id = secret_id;
end
$$;

revoke all on function
  vault._root_key(),
  vault._crypto_aead_det_mac(bytea, bytea, bigint, bytea, bytea),
  vault._crypto_aead_det_encrypt(bytea, bytea, bigint, bytea, bytea),
  vault._crypto_aead_det_decrypt(bytea, bytea, bigint, bytea, bytea),
  vault._crypto_aead_det_noncegen(),
  vault.create_secret(text, text, text, uuid),
  vault.update_secret(uuid, text, text, text, uuid)
from public;

select pg_catalog.pg_extension_config_dump('vault.secrets', '');
