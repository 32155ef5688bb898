#!/bin/sh
# Installs the Debian packages that hold the data sets kiln's examples, tests and benchmarks
# use, and says where their files are. Idempotent: packages already installed are left alone.
#
#   scripts/get-data.sh                 Fashion-MNIST and the R data packages (MovieLens, fine
#                                       foods, Ames, Jane Austen), where the archive has them
#   scripts/get-data.sh --vision        Fashion-MNIST only (dataset-fashion-mnist, 30 MB)
#   scripts/get-data.sh --export DIR    also write the R data sets as plain files under DIR, the
#                                       layout of /work/shared/datasets (needs Rscript, pulled in
#                                       by the r-cran-* packages); existing files are kept
#   scripts/get-data.sh --dry-run       say what would be installed, install nothing
# Run as root (or with sudo available).
set -eu

VISION="dataset-fashion-mnist"
RDATA="r-cran-dslabs r-cran-modeldata r-cran-janeaustenr"
pkgs="$VISION $RDATA"
export_dir=""
dry=0
while [ $# -gt 0 ]; do
    case "$1" in
    --vision) pkgs="$VISION" ;;
    --export) [ $# -ge 2 ] || { echo "get-data: --export needs a folder" >&2; exit 2; }; export_dir="$2"; shift ;;
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "get-data: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
available() { apt-cache show "$1" >/dev/null 2>&1; }

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=""
for p in $pkgs; do installed "$p" || missing="$missing $p"; done
if [ -n "$missing" ]; then
    [ $dry -eq 1 ] || $SUDO apt-get update -qq
    want=""
    for p in $missing; do
        if available "$p"; then want="$want $p"; else echo "get-data: $p is not in this system's archive, skipped" >&2; fi
    done
    if [ -n "$want" ]; then
        if [ $dry -eq 1 ]; then
            echo "get-data: would install$want"
        else
            echo "get-data: installing$want"
            # shellcheck disable=SC2086 # $want is a list of names
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $want >/dev/null
        fi
    fi
fi

say() { installed "$1" && echo "  $2" || echo "  ($1 not installed) $2"; }
echo "get-data: the data sets"
say dataset-fashion-mnist "fashion-mnist: /usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (kiln: source name 'fashion-mnist')"
case " $pkgs " in *" r-cran-dslabs "*)
    say r-cran-dslabs "MovieLens (movielens): /usr/lib/R/site-library/dslabs/data/"
    say r-cran-modeldata "fine foods (small_fine_foods), Ames (ames): /usr/lib/R/site-library/modeldata/data/"
    say r-cran-janeaustenr "Jane Austen's novels: /usr/lib/R/site-library/janeaustenr/data/"
    [ -n "$export_dir" ] || echo "  (R data files: --export DIR writes them as CSV and text)" ;;
esac

[ -n "$export_dir" ] || exit 0
if ! command -v Rscript >/dev/null 2>&1; then
    echo "get-data: --export needs Rscript (installed with the r-cran-* packages)" >&2
    exit 1
fi
[ $dry -eq 1 ] && { echo "get-data: would export to $export_dir"; exit 0; }
mkdir -p "$export_dir/movielens" "$export_dir/fine_foods" "$export_dir/ames" "$export_dir/austen"
Rscript --vanilla - "$export_dir" <<'EOF'
out <- commandArgs(trailingOnly = TRUE)[1]
put <- function(df, rel) {
  p <- file.path(out, rel)
  if (file.exists(p)) { cat("  kept   ", p, "\n"); return(invisible()) }
  write.csv(df, p, row.names = FALSE)
  cat("  wrote  ", p, "\n")
}
if (requireNamespace("dslabs", quietly = TRUE)) {
  data("movielens", package = "dslabs")
  put(movielens[, c("userId", "movieId", "rating", "timestamp")], "movielens/ratings.csv")
  m <- movielens[!duplicated(movielens$movieId), c("movieId", "title", "year", "genres")]
  put(m, "movielens/movies.csv")
}
if (requireNamespace("modeldata", quietly = TRUE)) {
  data("small_fine_foods", package = "modeldata")
  put(training_data[, c("review", "score")], "fine_foods/train.csv")
  put(testing_data[, c("review", "score")], "fine_foods/test.csv")
  data("ames", package = "modeldata")
  put(as.data.frame(ames), "ames/ames.csv")
}
if (requireNamespace("janeaustenr", quietly = TRUE)) {
  books <- c(emma = "emma", mansfield_park = "mansfieldpark", northanger_abbey = "northangerabbey",
             persuasion = "persuasion", pride_prejudice = "prideprejudice", sense_sensibility = "sensesensibility")
  for (f in names(books)) {
    p <- file.path(out, "austen", paste0(f, ".txt"))
    if (file.exists(p)) { cat("  kept   ", p, "\n"); next }
    writeLines(get(books[[f]], envir = asNamespace("janeaustenr")), p)
    cat("  wrote  ", p, "\n")
  }
}
EOF
