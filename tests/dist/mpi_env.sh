# mpi_env.sh - sourced by the tests of data-parallel training: finds mpirun
# and the flags that make it work here, or skips (exit 77, meson's "skip")
# with the reason. Sets $mpirun (a command line to prefix) and $train.
train="${TG_BUILD_ROOT:?run through meson test}/demos/train"
if ! command -v mpirun >/dev/null 2>&1; then
	echo "SKIP: mpirun is not installed (Debian: openmpi-bin; tests/run installs it)"
	exit 77
fi
if "$train" --dist --data iris --iters 1 --quiet 2>&1 | grep -q 'without MPI'; then
	echo "SKIP: this build has no MPI (meson setup -Dmpi=enabled, with libopenmpi-dev)"
	exit 77
fi
# As root (containers, CI), Open MPI needs to be told; on a machine with
# fewer cores than ranks, --oversubscribe. Shared memory may be refused in a
# container: TCP over loopback then.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
mpirun="mpirun --oversubscribe"
probe=$(mktemp -d)
if ! $mpirun -np 2 "$train" --dist --data iris --iters 1 --quiet >"$probe/out" 2>&1; then
	mpirun="mpirun --oversubscribe --mca btl self,tcp"
	if ! $mpirun -np 2 "$train" --dist --data iris --iters 1 --quiet >"$probe/out" 2>&1; then
		echo "SKIP: mpirun cannot start two ranks here:"
		cat "$probe/out"
		rm -rf "$probe"
		exit 77
	fi
fi
rm -rf "$probe"

# same_steps A B TOL: two --step-log files with the same steps, each loss
# within TOL relative; prints the largest difference
same_steps() {
	awk -v tol="$3" '
		NR == FNR { loss[$1] = $2; n++; next }
		{
			m++
			if (!($1 in loss)) { print "step " $1 " only in the second"; bad = 1; next }
			d = loss[$1] - $2; if (d < 0) d = -d
			r = d / (loss[$1] < 0 ? -loss[$1] : loss[$1])
			if (r > worst) { worst = r; at = $1 }
			if (r > tol) { printf "step %d: %.17g and %.17g differ by %.3g\n", $1, loss[$1], $2, r; bad = 1 }
		}
		END {
			if (n != m || n == 0) { print n " steps against " m; bad = 1 }
			printf "%d steps, largest relative difference %.3g (step %d)\n", m, worst, at
			exit bad
		}' "$1" "$2"
}
