#!/bin/sh
# Layer check (docs/architecture.md): reads the symbols of libkiln's and the CLI's object files
# with nm, prints which layer calls which, and fails when a layer calls one above it.
#   scripts/layer_check.sh OBJ:OBJ:...  [OBJ:OBJ:...]     (ctest passes the targets' objects)
# A layer is the folder under src/ (src/kernels/cpu/x.c is "kernels"); tools/ is the CLI.
# dist (the communicator, issue 13) calls only core and MPI; learn and above call it.
# The one allowed upward edge: core -> kernels (kiln_ctx_new picks the CPU backend table,
# the context owns the backend; see docs/architecture.md).
set -eu
ORDER="core kernels io dist autograd nn optim sched data report learn apps tools"
ALLOWED="core>kernels"
objs=$(printf '%s\n' "$@" | tr ':' '\n' | grep -v '^$')
[ -n "$objs" ] || { echo "layer_check: no object files given" >&2; exit 2; }
for o in $objs; do [ -f "$o" ] || { echo "layer_check: $o: no such object file" >&2; exit 2; }; done
# shellcheck disable=SC2086
nm -o $objs | awk -v order="$ORDER" -v allowed="$ALLOWED" '
function layer(path,   p) {
    if (path ~ /\/tools\//) return "tools"
    p = path; sub(/.*\/src\//, "", p); sub(/\/.*/, "", p); return p
}
BEGIN { n = split(order, L, " "); for (i = 1; i <= n; i++) rank[L[i]] = i }
{
    obj = $1; sub(/:[^:]*$/, "", obj)   # "path.o:" prefix (nm -o), then "[value] type name"
    if (NF == 3 && $2 ~ /^[TDBRCV]$/) def[$3] = layer(obj)
    else if (NF == 3 && $2 == "U") { nu++; uobj[nu] = obj; usym[nu] = $3 }
}
END {
    bad = 0
    for (i = 1; i <= nu; i++) {
        t = def[usym[i]]; if (t == "") continue
        f = layer(uobj[i]); if (f == t) continue
        edge[f ">" t] = 1
        if (rank[t] > rank[f] && index(" " allowed " ", " " f ">" t " ") == 0) {
            printf "layer_check: %s (layer %s) calls %s of layer %s, above it\n", uobj[i], f, usym[i], t > "/dev/stderr"
            bad = 1
        }
    }
    for (i = 1; i <= n; i++) {
        line = ""
        for (j = 1; j <= n; j++) if ((L[i] ">" L[j]) in edge) line = line (line == "" ? "" : ", ") L[j]
        printf "%-9s -> %s\n", L[i], line
    }
    exit bad
}'
