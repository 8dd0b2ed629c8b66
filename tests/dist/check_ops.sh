#!/bin/sh
# check_ops.sh - tests/dist/dist_ops.c on 2 ranks: the all-reduce op and
# its gradient, gradient buckets of 64 bytes against one process of the
# global batch, sums, agreements and broadcasts; then all of it again
# with every transfer in pieces of at most 5 elements (--chunk 5), as one
# of 2^31 elements or more goes.
# Run by meson test (suites "outside" and "dist").
set -u
. "$(dirname "$0")/mpi_env.sh"
$mpirun -np 2 "$TG_BUILD_ROOT/tests/dist_ops" &&
	$mpirun -np 2 "$TG_BUILD_ROOT/tests/dist_ops" --chunk 5
