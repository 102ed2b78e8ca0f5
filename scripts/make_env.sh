#!/usr/bin/env bash
# Writes .env (or FILE) from .env.example with new random secrets: DJANGO_SECRET_KEY and POSTGRES_PASSWORD.
# Never overwrites an existing file. Usage: scripts/make_env.sh [FILE]   (`make env` runs it for .env)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${1:-$root/.env}"
if [ -e "$target" ]; then
  echo "$target exists; it is left as it is (move it away first to make a new one)." >&2
  exit 1
fi
random() { "${PYTHON:-python3}" -c "import secrets; print(secrets.token_urlsafe($1))"; }
# URL-safe characters only (letters, digits, - and _): the password goes into DATABASE_URL as it is.
key="$(random 50)"
password="$(random 32)"
tmp="$(mktemp "$target.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
sed -e "s|^DJANGO_SECRET_KEY=.*|DJANGO_SECRET_KEY=$key|" \
    -e "s|^POSTGRES_PASSWORD=.*|POSTGRES_PASSWORD=$password|" "$root/.env.example" > "$tmp"
grep -q "^DJANGO_SECRET_KEY=$key\$" "$tmp" && grep -q "^POSTGRES_PASSWORD=$password\$" "$tmp" || {
  echo ".env.example has no DJANGO_SECRET_KEY= or POSTGRES_PASSWORD= line to fill" >&2
  exit 1
}
chmod 600 "$tmp"
mv -n "$tmp" "$target"
[ ! -e "$tmp" ] || { echo "$target appeared meanwhile; it is left as it is." >&2; exit 1; }
trap - EXIT
echo "Wrote $target with a new DJANGO_SECRET_KEY and POSTGRES_PASSWORD (readable by you only)."
