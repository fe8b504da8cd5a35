#!/usr/bin/env bash
# Integration test of Examples/GLibDaemon with real D-Bus clients, on a
# private session bus (dbus-run-session):
#   1. every method, called once with `gdbus call`, each reply checked exactly
#      (SHA-256 against sha256sum, directory sizes against find);
#   2. bad input: missing paths, wrong argument types (gdbus and dbus-send),
#      unknown methods; each must get its D-Bus error name, and the daemon
#      must keep serving;
#   3. the Heartbeat signal, seen by `gdbus monitor`;
#   4. 8 clients at once, 100 calls each, every reply checked; then the
#      daemon's pool counters must add up exactly;
#   5. a second instance must fail (the name is taken);
#   6. SIGTERM with 6 Sleep calls in flight (4 running, 2 queued): each gets
#      its reply or the shutdown error, never nothing; the daemon exits 0,
#      promptly, and gives its name back; then SIGINT on a fresh daemon.
# Everything is bounded by `timeout`, so it cannot hang CI.
#
#   bash scripts/daemon-test.sh            # builds GLibDaemon first
#   bash scripts/daemon-test.sh PATH       # tests an already built binary
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${DAEMON_TEST_INSIDE:-}" != 1 ]; then
    bin=${1:-}
    if [ -z "$bin" ]; then
        swift build --enable-all-traits --product GLibDaemon
        bin="$(swift build --enable-all-traits --show-bin-path)/GLibDaemon"
    fi
    start=$(date +%s)
    DAEMON_TEST_INSIDE=1 timeout 300 dbus-run-session -- bash "$0" "$bin"
    echo "daemon-test: passed in $(($(date +%s) - start)) s"
    exit 0
fi

# ---- From here on we run inside dbus-run-session. ----
bin=$1
dest=org.swiftaio.Daemon
path=/org/swiftaio/Daemon
iface=org.swiftaio.Daemon1
work=$(mktemp -d)
daemon_pid=""
cleanup() {
    [ -n "$daemon_pid" ] && kill -KILL "$daemon_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "daemon-test: FAILED: $*" >&2
    if [ -f "$work/daemon.log" ]; then
        echo "--- last lines of the daemon's log ---" >&2
        tail -n 30 "$work/daemon.log" >&2
    fi
    exit 1
}
step() { printf -- '--- %s\n' "$*"; }

# call METHOD ARGS...: prints the reply, or gdbus's error message; never fails.
call() {
    local method=$1; shift
    timeout 30 gdbus call --session --timeout 20 --dest "$dest" --object-path "$path" \
        --method "$iface.$method" "$@" 2>&1 || true
}
expect_reply() {  # WANT METHOD ARGS...
    local want=$1 got; shift
    got=$(call "$@")
    [ "$got" = "$want" ] || fail "$*: got '$got', want '$want'"
    echo "ok  $*  ->  $got"
}
expect_error() {  # ERROR-NAME METHOD ARGS...
    local name=$1 got; shift
    got=$(call "$@")
    case "$got" in
        *"GDBus.Error:$name:"*) echo "ok  $*  ->  $name" ;;
        *) fail "$*: got '$got', want the error $name" ;;
    esac
}
counter() {  # NAME: one counter from Statistics
    call Statistics | grep -oE "'$1': (uint64 )?[0-9]+" | grep -oE '[0-9]+$'
}
wait_for_name() {  # wait until the daemon owns its name (at most 20 s)
    local i
    for ((i = 0; i < 200; i++)); do
        if gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
            --method org.freedesktop.DBus.NameHasOwner "$dest" 2>/dev/null | grep -q true; then
            return 0
        fi
        kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited before owning $dest"
        sleep 0.1
    done
    fail "the daemon did not own $dest within 20 s"
}
start_daemon() {
    "$bin" --heartbeat 1 --workers 4 >>"$work/daemon.log" 2>&1 &
    daemon_pid=$!
    wait_for_name
}
stop_daemon() {  # SIGNAL: send it, wait (at most 10 s), check exit status 0
    kill -"$1" "$daemon_pid"
    local status=0
    timeout 10 tail -s 0.05 --pid="$daemon_pid" -f /dev/null || fail "the daemon did not exit within 10 s of SIG$1"
    wait "$daemon_pid" || status=$?
    daemon_pid=""
    [ "$status" -eq 0 ] || fail "the daemon exited with status $status after SIG$1"
}

# ---- Files with known contents ----
printf 'hello from the daemon test\n' >"$work/a.txt"
head -c 1048576 /dev/urandom >"$work/b.bin"
: >"$work/empty"
tree=$work/tree
mkdir -p "$tree/x/y/z" "$tree/empty-dir"
head -c 12345 /dev/urandom >"$tree/one"
head -c 70000 /dev/urandom >"$tree/x/two"
printf 'three' >"$tree/x/y/three"
head -c 200000 /dev/urandom >"$tree/x/y/z/four"
ln -s "$work/b.bin" "$tree/x/link-not-counted"
sha_a=$(sha256sum "$work/a.txt" | cut -d' ' -f1)
sha_b=$(sha256sum "$work/b.bin" | cut -d' ' -f1)
sha_empty=$(sha256sum "$work/empty" | cut -d' ' -f1)
tree_bytes=$(find "$tree" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
tree_files=$(find "$tree" -type f | wc -l)

step "starting the daemon on a private session bus"
start_daemon
echo "daemon pid $daemon_pid owns $dest"

step "each method once"
expect_reply "('$sha_a',)" Sha256 "$work/a.txt"
expect_reply "('$sha_b',)" Sha256 "$work/b.bin"
expect_reply "('$sha_empty',)" Sha256 "$work/empty"
expect_reply "(uint64 $tree_bytes, uint64 $tree_files)" DirectorySize "$tree"
expect_reply "('slept 100 ms',)" Sleep 100
stats=$(call Statistics)
for key in bottom-halves-run eventfd-writes loop-iterations pool-jobs-completed requests-in-flight; do
    grep -q "'$key'" <<<"$stats" || fail "Statistics has no '$key': $stats"
done
echo "ok  Statistics  ->  $stats"
sequential_ok=5

step "bad input"
expect_error org.freedesktop.DBus.Error.FileNotFound Sha256 "$work/no-such-file"
expect_error org.freedesktop.DBus.Error.FileNotFound DirectorySize "$work/no-such-dir"
expect_error org.freedesktop.DBus.Error.InvalidArgs Sha256 "$tree"           # a directory
expect_error org.freedesktop.DBus.Error.InvalidArgs DirectorySize "$work/a.txt"  # not a directory
expect_error org.freedesktop.DBus.Error.InvalidArgs Sha256 /dev/zero           # not a regular file
expect_error org.freedesktop.DBus.Error.InvalidArgs Sha256 relative/path
expect_error org.freedesktop.DBus.Error.InvalidArgs Sleep 120000
expect_error org.freedesktop.DBus.Error.InvalidArgs Sha256 "$work/a.txt" extra-argument
expect_error org.freedesktop.DBus.Error.UnknownMethod NoSuchMethod
pool_failed=5  # the first five reached the pool and failed there
got=$(timeout 30 dbus-send --session --print-reply --reply-timeout=20000 --dest="$dest" "$path" \
    "$iface.Sha256" uint32:42 2>&1 || true)
case "$got" in
    *org.freedesktop.DBus.Error.InvalidArgs*) echo "ok  dbus-send Sha256 uint32:42  ->  InvalidArgs" ;;
    *) fail "dbus-send Sha256 uint32:42: got '$got', want InvalidArgs" ;;
esac
expect_reply "('$sha_a',)" Sha256 "$work/a.txt"  # still serving
sequential_ok=$((sequential_ok + 1))

step "the Heartbeat signal (gdbus monitor for 2.5 s)"
timeout 2.5 gdbus monitor --session --dest "$dest" >"$work/monitor.log" 2>&1 || true
beats=$(grep -c "$iface.Heartbeat (uint64 " "$work/monitor.log" || true)
[ "$beats" -ge 2 ] || fail "saw $beats Heartbeat signals in 2.5 s, want at least 2: $(cat "$work/monitor.log")"
echo "ok  $beats Heartbeat signals"

step "8 clients at once, 100 calls each"
client() {  # ID: 100 calls, each reply checked; writes its count of correct replies
    local id=$1 i got want ok=0
    for ((i = 0; i < 100; i++)); do
        case $(((i + id) % 4)) in
            0) got=$(call Sha256 "$work/a.txt"); want="('$sha_a',)" ;;
            1) got=$(call Sha256 "$work/b.bin"); want="('$sha_b',)" ;;
            2) got=$(call DirectorySize "$tree"); want="(uint64 $tree_bytes, uint64 $tree_files)" ;;
            3) got=$(call Sleep 2); want="('slept 2 ms',)" ;;
        esac
        if [ "$got" = "$want" ]; then
            ok=$((ok + 1))
        else
            echo "client $id, call $i: got '$got', want '$want'" >>"$work/wrong-replies"
        fi
    done
    echo "$ok" >"$work/client-$id.ok"
}
parallel_start=$(date +%s%N)
clients=()
for id in 0 1 2 3 4 5 6 7; do
    client "$id" &
    clients+=($!)
done
wait "${clients[@]}"  # not a bare `wait`: that would wait for the daemon too
parallel_ms=$((($(date +%s%N) - parallel_start) / 1000000))
[ -f "$work/wrong-replies" ] && fail "wrong replies: $(head -5 "$work/wrong-replies")"
correct=$(cat "$work"/client-*.ok | awk '{ s += $1 } END { print s + 0 }')
[ "$correct" -eq 800 ] || fail "$correct correct replies of 800"
echo "ok  800 correct replies in $parallel_ms ms"
kill -0 "$daemon_pid" || fail "the daemon died"

completed=$(counter pool-jobs-completed)
failed=$(counter pool-jobs-failed)
in_flight=$(counter requests-in-flight)
[ "$completed" -eq $((sequential_ok + 800)) ] || fail "pool-jobs-completed is $completed, want $((sequential_ok + 800))"
[ "$failed" -eq "$pool_failed" ] || fail "pool-jobs-failed is $failed, want $pool_failed"
[ "$in_flight" -eq 0 ] || fail "requests-in-flight is $in_flight, want 0"
echo "ok  counters: $completed pool jobs completed, $failed failed, none in flight"

step "a second instance cannot take the name"
status=0
timeout 20 "$bin" >"$work/second.log" 2>&1 || status=$?
[ "$status" -eq 1 ] || fail "the second instance exited with $status, want 1: $(cat "$work/second.log")"
grep -q "cannot own $dest" "$work/second.log" || fail "the second instance did not say why: $(cat "$work/second.log")"
echo "ok  it exits 1: $(grep -o "cannot own.*" "$work/second.log")"
expect_reply "('slept 1 ms',)" Sleep 1  # the first one still serves

step "SIGTERM with 6 Sleep(5000) calls in flight (4 workers: 4 running, 2 queued)"
sleepers=()
for i in 1 2 3 4 5 6; do
    call Sleep 5000 >"$work/sleep-$i.out" &
    sleepers+=($!)
done
for ((i = 0; i < 100; i++)); do
    [ "$(counter requests-in-flight)" = 6 ] && break
    sleep 0.1
done
[ "$(counter requests-in-flight)" = 6 ] || fail "the 6 Sleep calls did not all arrive"
term_start=$(date +%s%N)
stop_daemon TERM
term_ms=$((($(date +%s%N) - term_start) / 1000000))
wait "${sleepers[@]}"
for i in 1 2 3 4 5 6; do
    got=$(cat "$work/sleep-$i.out")
    case "$got" in
        "('slept 5000 ms',)" | *"GDBus.Error:org.freedesktop.DBus.Error.Failed: shutting down"*) ;;
        *) fail "in-flight Sleep $i: got '$got', want its reply or the shutdown error" ;;
    esac
done
echo "ok  all 6 in-flight calls answered: $(sort "$work"/sleep-*.out | uniq -c | sed 's/^ *//' | paste -sd';')"
grep -q "every request answered" "$work/daemon.log" || fail "the daemon did not report draining"
grep -q "stopped cleanly" "$work/daemon.log" || fail "the daemon did not stop cleanly"
[ "$term_ms" -lt 4000 ] || fail "the daemon took $term_ms ms to exit; running jobs should be interrupted"
echo "ok  exit status 0, $term_ms ms after SIGTERM: $(grep -o "every request answered.*" "$work/daemon.log")"
expect_error org.freedesktop.DBus.Error.ServiceUnknown Sha256 "$work/a.txt"  # the name is gone

step "SIGINT on a fresh daemon"
start_daemon
expect_reply "('$sha_a',)" Sha256 "$work/a.txt"
stop_daemon INT
echo "ok  exit status 0 after SIGINT"
