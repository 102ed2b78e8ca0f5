#!/usr/bin/env bash
# Restore a backup made by scripts/backup.sh into DATABASE_URL (an empty database) and DJANGO_MEDIA_ROOT.
#   scripts/restore.sh BACKUP_DIR
set -euo pipefail
src=${1:?usage: scripts/restore.sh BACKUP_DIR}
: "${DATABASE_URL:?set DATABASE_URL to the (empty) database to restore into}"
media=${DJANGO_MEDIA_ROOT:-var/media}
pg_restore --no-owner --exit-on-error --dbname="$DATABASE_URL" "$src/database.dump"
mkdir -p "$media"
tar -C "$media" -xzf "$src/media.tar.gz"
echo "restored $src into the database and $media"
