#!/usr/bin/env bash
# Installs (if missing) and starts a local PostgreSQL, and makes sure the role `chat` (password
# `chat`, allowed to create databases) exists. Idempotent. Prints nothing on stdout.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
  pg_createcluster "$version" main >&2
fi
if ! pg_lsclusters -h | awk '$1=="'"$version"'" && $2=="main" {print $4}' | grep -q online; then
  pg_ctlcluster "$version" main start >&2
fi
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q" && break
  sleep 1
done
# Over the local socket as the postgres superuser (peer authentication).
su postgres -c "psql -q -v ON_ERROR_STOP=1 -d postgres" >&2 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chat') THEN
    CREATE ROLE chat LOGIN PASSWORD 'chat' CREATEDB;
  END IF;
END $$;
SQL
