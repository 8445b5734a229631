#!/bin/sh
# Layer benchmark: Strata's layer make/apply against tar|gzip and tar -xzf, with ratios.
# Takes a few minutes; work files go under /var/tmp and are removed afterwards.
set -eu
cd "$(dirname "$0")/.."
exec cargo bench -p strata-runtime --bench layers "$@"
