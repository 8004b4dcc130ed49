# Sourced by share_scratch.sh and more_seeds.sh (issue #18): the one way their studies' pieces are copied.
#
#   copy_once FROM TO   FROM (a file or a folder) copied to TO unless TO exists (then it returns 1 and copies
#                       nothing); through a temporary name beside TO, renamed when whole, so an interrupted copy
#                       leaves no TO (its temporary copy is removed when the calling script exits). FROM is never
#                       modified. A failed copy stops the calling script (explicitly: set -e does not act
#                       inside a function called as "copy_once ... || ...", which is how the callers use it).
COPY_ONCE_TMP=""
trap '[ -n "$COPY_ONCE_TMP" ] && rm -rf "$COPY_ONCE_TMP"' EXIT
copy_once() {
  [ -e "$2" ] && return 1
  mkdir -p "$(dirname "$2")" || { echo "copy_once: cannot make the folder of $2" >&2; exit 1; }
  COPY_ONCE_TMP="$2.partial.$$"
  cp -a "$1" "$COPY_ONCE_TMP" || { echo "copy_once: copying $1 failed" >&2; exit 1; }
  mv "$COPY_ONCE_TMP" "$2" || { echo "copy_once: renaming the copy of $1 to $2 failed" >&2; exit 1; }
  COPY_ONCE_TMP=""
}
