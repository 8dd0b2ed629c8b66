#!/bin/sh
# check_netns.sh - two hosts in one machine: two network namespaces joined
# by a veth pair (10.77.N.1 and 10.77.N.2), one rank in each, Open MPI over
# TCP between them (mpirun starts the second rank's daemon in the other
# namespace through a launch agent, where a cluster uses ssh). The run must
# be the same training as one process with the global batch: every step's
# loss to 1e-10 relative, the final tensors to 1e-9, and the gradients must
# have crossed the veth (its byte counters). Skipped with the reason where
# namespaces or veth pairs cannot be made (not root, no CAP_NET_ADMIN, no
# iproute2).
# Run by meson test (suites "outside" and "dist").
set -u
. "$(dirname "$0")/mpi_env.sh"
compare="$TG_BUILD_ROOT/tests/ckpt_compare"
if ! command -v ip >/dev/null 2>&1; then
	echo "SKIP: no ip command (Debian: iproute2)"
	exit 77
fi
dir=$(mktemp -d)
net=$(( $$ % 200 + 20 ))
a=tgA$$ b=tgB$$ va=tgva$$ vb=tgvb$$
cleanup() {
	ip netns del "$a" 2>/dev/null
	ip netns del "$b" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
if ! ip netns add "$a" 2>"$dir/err" || ! ip netns add "$b" 2>>"$dir/err" ||
   ! ip link add "$va" type veth peer name "$vb" 2>>"$dir/err"; then
	echo "SKIP: cannot make network namespaces and a veth pair here: $(cat "$dir/err")"
	exit 77
fi
ip link set "$va" netns "$a" && ip link set "$vb" netns "$b" &&
ip -n "$a" addr add "10.77.$net.1/24" dev "$va" && ip -n "$b" addr add "10.77.$net.2/24" dev "$vb" &&
ip -n "$a" link set "$va" up && ip -n "$b" link set "$vb" up &&
ip -n "$a" link set lo up && ip -n "$b" link set lo up || { echo "FAIL: setting up the veth pair"; exit 1; }

# The launch agent: mpirun calls it as `agent [ssh options] HOST COMMAND`
# for the rank on 10.77.N.2; it runs COMMAND in namespace b.
cat >"$dir/agent" <<AGENT
#!/bin/sh
while [ \$# -gt 0 ]; do case "\$1" in -*) shift ;; *) break ;; esac; done
echo "\$1" >>"$dir/launched"
shift
exec ip netns exec $b sh -c "\$*"
AGENT
chmod +x "$dir/agent"
printf '10.77.%s.1 slots=1\n10.77.%s.2 slots=1\n' "$net" "$net" >"$dir/hosts"

bytes() { ip -n "$a" -s link show "$va" | awk '/TX:/ { getline; print $1 }'; }
job="--data digits --epochs 3 --dtype f64 --no-bn --seed 3 --quiet"
"$train" $job --batch 64 --step-log "$dir/one.steps" --save "$dir/one.ckpt" >"$dir/one.out" 2>&1 ||
	{ echo "FAIL: the single process:"; cat "$dir/one.out"; exit 1; }
before=$(bytes)
timeout 120 ip netns exec "$a" mpirun -np 2 --hostfile "$dir/hosts" \
	--mca plm_rsh_agent "$dir/agent" --mca btl self,tcp \
	--mca btl_tcp_if_include "10.77.$net.0/24" --mca oob_tcp_if_include "10.77.$net.0/24" \
	"$train" --dist $job --batch 32 --step-log "$dir/two.steps" --save "$dir/two.ckpt" \
	>"$dir/two.out" 2>&1 || { echo "FAIL: the run over two namespaces:"; cat "$dir/two.out"; exit 1; }
after=$(bytes)
fails=0
echo "mpirun launched a daemon on: $(cat "$dir/launched" 2>/dev/null)"
grep -q "10.77.$net.2" "$dir/launched" 2>/dev/null || { echo "FAIL: no rank was started in namespace b"; fails=1; }
sent=$(( after - before ))
echo "sent over the veth from namespace a: $sent bytes"
# 69 steps, each an all-reduce of 50826 f64 gradients (0.4 MB)
[ "$sent" -gt 10000000 ] || { echo "FAIL: under 10 MB crossed the veth"; fails=1; }
same_steps "$dir/one.steps" "$dir/two.steps" 1e-10 || { echo "FAIL: the step losses differ"; fails=1; }
"$compare" "$dir/one.ckpt" "$dir/two.ckpt" 1e-9 >"$dir/cmp" || { cat "$dir/cmp"; fails=1; }
tail -1 "$dir/cmp"
[ "$fails" -eq 0 ] || exit 1
echo "two namespaces over TCP train as one process"
