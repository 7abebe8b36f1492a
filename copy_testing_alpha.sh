#!/usr/bin/env bash
# Copies each DIR/alpha/<stem>.png to DIR/alpha_copy/<stem>_<k>.png, k = 0..19, so that every
# Composition-1K merged image <stem>_<k>.png has a ground truth of the same name.
# (utils.evaluation.evaluate and the test dataset pair <stem>_<k> with alpha/<stem> without this copy.)
set -euo pipefail

if [ $# -ne 1 ] || [ ! -d "$1/alpha" ]; then
    echo "usage: $0 DIR" >&2
    echo "  DIR: the Composition-1K test folder holding alpha/ (e.g. \"Test_set/Adobe-licensed images\")" >&2
    [ $# -eq 1 ] && echo "error: no folder $1/alpha" >&2
    exit 2
fi

dir=$1
mkdir -p "$dir/alpha_copy"
count=0
for file in "$dir/alpha"/*; do
    [ -f "$file" ] || continue
    name=$(basename "$file")
    stem=${name%.*}
    for k in $(seq 0 19); do
        cp "$file" "$dir/alpha_copy/${stem}_${k}.png"
    done
    count=$((count + 1))
done
echo "copied $count alpha mattes x 20 to $dir/alpha_copy"
