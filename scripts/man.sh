#!/usr/bin/env bash
# Writes the manual pages into OUTDIR/man{1,5,8}:
#   batchctl(1), batchd(8)        generated from the argument parsers
#                                 (swift-argument-parser's generate-manual)
#   batchd-manifest(5)            from docs/manifest.md (go-md2man)
#   batchd.yaml(5)                from the annotated etc/batchd/batchd.yaml
# Usage: scripts/man.sh OUTDIR BINDIR   (BINDIR holds batchd, batchctl and
# generate-manual: swift build --product generate-manual)
set -euo pipefail
out=$1 bin=$2
cd "$(dirname "$0")/.."
mkdir -p "$out/man1" "$out/man5" "$out/man8"
date=$(git log -1 --format=%cs 2>/dev/null || date +%F)

"$bin/generate-manual" "$bin/batchctl" --section 1 --date "$date" --authors "the batchd authors" -o "$out/man1" >/dev/null
"$bin/generate-manual" "$bin/batchd" --section 8 --date "$date" --authors "the batchd authors" -o "$out/man8" >/dev/null
# batchd has no subcommands; the generator's synopsis says it has one.
sed -i '/^\.Ar subcommand$/d' "$out/man8/batchd.8"

# Tables become lists, links plain references (scripts/md-tables-to-lists.py);
# a text line go-md2man leaves starting with a quote is shielded from roff.
prose() { python3 scripts/md-tables-to-lists.py; }
roff() { go-md2man | sed "s/^'/\\\\\&'/"; }

{
  echo "% BATCHD-MANIFEST 5 \"$date\" batchd \"File Formats\""
  echo
  echo "# NAME"
  echo
  echo "batchd-manifest - a batchd job manifest (job.yaml)"
  echo
  echo "# DESCRIPTION"
  echo
  # The document without its title; its sections become the page's.
  sed '1{/^# /d}' docs/manifest.md | sed -E 's/^## /# /; s/^### /## /' | prose
  echo
  echo "# SEE ALSO"
  echo
  echo "batchctl(1), batchd(8), batchd.yaml(5); the JSON Schema in /usr/share/batchd/manifest.schema.json"
} | roff > "$out/man5/batchd-manifest.5"

{
  echo "% BATCHD.YAML 5 \"$date\" batchd \"File Formats\""
  echo
  echo "# NAME"
  echo
  echo "batchd.yaml - the batchd daemon's configuration"
  echo
  echo "# DESCRIPTION"
  echo
  echo "batchd(8) and batchctl(1) read the same file: /etc/batchd/batchd.yaml for the"
  echo "system service, ~/.config/batchd/batchd.yaml for a user service, or the one"
  echo "named with --config (or \$BATCHD_CONFIG). Relative paths in it are relative"
  echo "to its own directory. A key it does not know is an error naming the key and"
  echo "the nearest known one. SIGHUP reloads it (systemctl reload batchd); what a"
  echo "reload can change is in docs/operations.md. Secrets (Azure keys, client"
  echo "secrets) never go here: they come from the environment or systemd"
  echo "credentials."
  echo
  echo "# THE ANNOTATED DEFAULT"
  echo
  echo "Every key, with its default and what it does:"
  echo
  echo '```'
  cat etc/batchd/batchd.yaml
  echo '```'
  echo
  echo "# FILES"
  echo
  echo "/etc/batchd/types/NAME.yaml"
  echo ": job types manifests may name (batchd-manifest(5), \"Job types and parameters\")"
  echo
  echo "# SEE ALSO"
  echo
  echo "batchd(8), batchctl(1), batchd-manifest(5)"
} | roff > "$out/man5/batchd.yaml.5"
