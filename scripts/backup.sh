#!/usr/bin/env bash
# Back up the database and the stored images into one folder:
#   scripts/backup.sh BACKUP_DIR            (reads DATABASE_URL and DJANGO_MEDIA_ROOT, default var/media)
# Restore with scripts/restore.sh BACKUP_DIR.
set -euo pipefail
dest=${1:?usage: scripts/backup.sh BACKUP_DIR}
: "${DATABASE_URL:?set DATABASE_URL to the PostgreSQL database to back up}"
media=${DJANGO_MEDIA_ROOT:-var/media}
mkdir -p "$dest"
# Custom format: compressed, restorable table by table, consistent snapshot of a live database.
pg_dump --format=custom --no-owner --file="$dest/database.dump" "$DATABASE_URL"
tar -C "$media" -czf "$dest/media.tar.gz" .
echo "backup written to $dest (database.dump, media.tar.gz)"
