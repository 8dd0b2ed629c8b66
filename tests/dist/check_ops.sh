#!/bin/sh
# check_ops.sh - tests/dist/dist_ops.c on 2 ranks: the all-reduce op and
# its gradient, gradient buckets of 64 bytes against one process of the
# global batch, sums, agreements and broadcasts; then all of it again
# with every transfer in pieces of at most 5 elements (--chunk 5), as one
# of 2^31 elements or more goes. Freed memory is filled (MALLOC_PERTURB_),
# so a batch norm that reads its freed tg_dist fails at once.
# Run by meson test (suites "outside" and "dist").
set -u
. "$(dirname "$0")/mpi_env.sh"
export MALLOC_PERTURB_=165
$mpirun -np 2 -x MALLOC_PERTURB_ "$TG_BUILD_ROOT/tests/dist_ops" &&
	$mpirun -np 2 -x MALLOC_PERTURB_ "$TG_BUILD_ROOT/tests/dist_ops" --chunk 5
