#!/usr/bin/env bash
# End-to-end test of the Docker deployment: the image, the compose mesh of four peers, and the mesh's
# promises under a crash, a partition and a restart, all on a local bridge network (offline).
#
#   bash deploy/test.sh            # needs docker, docker-compose 1.29, curl, python3; root (or sudo -n)
#                                  # for nsenter into a disconnected container's network namespace
#
# Steps: build the image (deploy/build-image.sh, under a test tag); `docker-compose up -d` under a unique
# project name, with a fresh network key, a free subnet and free API ports; wait for one mesh of four with
# one coordinator; two probe containers join (one by multicast only, one through `--peer ana:7000`, which
# needs name resolution inside the scratch image) and leave gracefully; chat through POST /messages on every
# peer; SIGKILL the coordinator and check that the three others elect the most senior survivor while chat
# goes on; `docker network disconnect` one peer, chat on both sides, reconnect it and check the parts merge;
# start the killed peer again (same ID back); finally check convergence: equal history digests, every
# message the test was told was sent is in every peer's history, exactly one coordinator, one log file per
# peer in the shared logs volume. Everything it made is removed on exit, also when interrupted.
#
# Monitoring (when the Prometheus server is installed on the host: Debian package `prometheus`, which
# ./test.sh installs): the Prometheus image of the compose profile "monitoring" is built offline too
# (build-image.sh --prometheus) and its service runs next to the peers; through its query API the test
# checks that it scrapes all four peers (up) with exactly one coordinator (sum(chatmesh_is_coordinator) = 1),
# that after the coordinator's crash the killed peer's target is down, the term rose (max(chatmesh_term))
# and the sum is 1 again on a survivor, and at the end that all four are up again with one coordinator.
# Without the binary that part is skipped, and the test says so.
#
# Environment: CHATMESH_BIN (the binary to package, default target/release/chatmesh, built if missing),
# CHATMESH_COMPOSE_FILE (default deploy/compose.yaml), KEEP=1 (leave the mesh running for inspection; the
# command that removes it is printed).
set -euo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COMPOSE_FILE=${CHATMESH_COMPOSE_FILE:-$DEPLOY/compose.yaml}
PEERS=(ana bruno carla davi)
T0=$(date +%s.%N)
START_DAY=$(date -u +%F)

now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }
say() { printf '[%6ss] %s\n' "$(since "$T0")" "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || fail "$1 is not installed (needed: $2)"; }

need docker "the Docker engine client"
need docker-compose "docker-compose 1.29 (the Python one)"
need curl "the control API checks"
need python3 "JSON checks"
need nsenter "reaching the API of a disconnected container"
# The monitoring part: Prometheus from the Debian package, packaged into an image like the node.
PROM_BIN=${PROMETHEUS:-$(command -v prometheus || echo /usr/bin/prometheus)}
if [ -x "$PROM_BIN" ]; then MONITORING=1; else MONITORING=0; fi

# Root for nsenter (into a container's network namespace while it is cut off from the host).
if [ "$(id -u)" = 0 ]; then
    NSENTER=(nsenter)
elif sudo -n true 2>/dev/null; then
    NSENTER=(sudo -n nsenter)
else
    fail "run as root (or with passwordless sudo): nsenter reaches a disconnected container's control API"
fi
docker info >/dev/null 2>&1 || fail "the Docker engine does not answer (docker info)"

PROJECT=cmtest$$$RANDOM
IMAGE=chatmesh:test-$PROJECT
NET=${PROJECT}_mesh
TMP=$(mktemp -d "${TMPDIR:-/tmp}/chatmesh-test.XXXXXX")
LEDGER=$TMP/ledger
ENDPOINTS=$TMP/endpoints
PROBES=()
IMAGE_BUILT=0
PROM_IMAGE=chatmesh-prometheus:test-$PROJECT
PROM_IMAGE_BUILT=0
COMPOSE_UP=0
DONE=0
: >"$LEDGER"

compose() { docker-compose --ansi never -f "$COMPOSE_FILE" -p "$PROJECT" "$@"; }

diagnose() {
    echo "---- diagnostics ----" >&2
    python3 "$TMP/mesh.py" show "${PEERS[@]}" >&2 || true
    for p in "${PEERS[@]}"; do
        echo "---- last lines of $p (docker-compose logs) ----" >&2
        compose logs --no-color --tail 25 "$p" 2>&1 | sed 's/^/  /' >&2 || true
    done
    for c in "${PROBES[@]:-}"; do
        [ -n "$c" ] || continue
        echo "---- probe $c ----" >&2
        docker logs --tail 15 "$c" 2>&1 | sed 's/^/  /' >&2 || true
    done
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM HUP
    if [ "$rc" = 1 ] && [ "$COMPOSE_UP" = 1 ]; then diagnose; fi
    if [ "${KEEP:-0}" = 1 ] && [ "$COMPOSE_UP" = 1 ]; then
        echo "KEEP=1: the mesh is still running. Remove it with:" >&2
        echo "  docker-compose -f $COMPOSE_FILE -p $PROJECT down -v; docker rmi $IMAGE$([ "$PROM_IMAGE_BUILT" = 1 ] && echo " $PROM_IMAGE"); rm -rf $TMP" >&2
        exit "$rc"
    fi
    for c in "${PROBES[@]:-}"; do [ -n "$c" ] && docker rm -f "$c" >/dev/null 2>&1; done
    if [ "$COMPOSE_UP" = 1 ]; then
        CHATMESH_IMAGE=$IMAGE CHATMESH_KEY_FILE=$TMP/network.key compose down -v --remove-orphans --timeout 5 \
            >"$TMP/down.log" 2>&1 || { echo "cleanup: docker-compose down failed:" >&2; cat "$TMP/down.log" >&2; }
    fi
    [ "$IMAGE_BUILT" = 1 ] && docker rmi "$IMAGE" >/dev/null 2>&1
    [ "$PROM_IMAGE_BUILT" = 1 ] && docker rmi "$PROM_IMAGE" >/dev/null 2>&1
    rm -rf "$TMP"
    if [ "$rc" != 0 ] && [ "$DONE" = 0 ]; then echo "test.sh: FAILED (exit $rc), cleaned up" >&2; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "test.sh: interrupted" >&2; exit 130' INT
trap 'echo "test.sh: terminated" >&2; exit 143' TERM HUP

# ---------------------------------------------------------------------------------------------------
# The JSON side: polling the control APIs, the ledger of sent messages, the checks.
cat >"$TMP/mesh.py" <<'PY'
import json, os, subprocess, sys, time, urllib.parse, urllib.request, urllib.error

TMP = os.path.dirname(os.path.abspath(__file__))
LEDGER = os.path.join(TMP, "ledger")
NSENTER = os.environ.get("NSENTER", "nsenter").split()

def endpoints():
    eps = {}
    with open(os.path.join(TMP, "endpoints")) as f:
        for line in f:
            if line.strip():
                name, ep = line.split()
                eps[name] = ep
    return eps

def request(name, method, path, body=None, timeout=3.0):
    """(status, json) from a peer's control API; raises OSError when it does not answer."""
    ep = endpoints()[name]
    data = json.dumps(body).encode() if body is not None else None
    if ep.startswith("netns:"):
        # The container is cut off from the host: curl inside its network namespace.
        cmd = NSENTER + ["-t", ep[6:], "-n", "curl", "-sS", "-m", str(int(timeout)), "-X", method,
                         "-w", "\n%{http_code}", "http://127.0.0.1:8080" + path]
        if data is not None:
            cmd += ["-H", "content-type: application/json", "--data-binary", data.decode()]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 2)
        if r.returncode != 0:
            raise OSError(f"curl in {name}'s namespace: {r.stderr.strip()}")
        text, _, code = r.stdout.rpartition("\n")
        return int(code), json.loads(text)
    req = urllib.request.Request(ep + path, data=data, method=method,
                                 headers={"content-type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")

def get(name, path):
    code, j = request(name, "GET", path)
    if code != 200:
        raise OSError(f"GET {path} on {name}: HTTP {code} {j}")
    return j

def ledger():
    out = []
    with open(LEDGER) as f:
        for line in f:
            if line.strip():
                mid, sender, text = line.rstrip("\n").split("\t", 2)
                out.append((mid, sender, text))
    return out

def fmt_status(name):
    try:
        s = get(name, "/status")
    except Exception as e:
        return f"  {name:6} unreachable: {e}"
    alive = ",".join(f'{m["name"]}#{m["id"]}' for m in s["members"] if m["state"] == "alive")
    gone = ",".join(f'{m["name"]}#{m["id"]}:{m["state"]}' for m in s["members"] if m["state"] != "alive")
    c = s.get("coordinator") or {}
    return (f'  {name:6} #{s["id"]} {s["role"]:11} term {s["term"]:<3} coordinator {c.get("name")}#{c.get("id")}'
            f' alive [{alive}]{" gone [" + gone + "]" if gone else ""} history {s["history"]["count"]}'
            f' {s["history"]["digest"][:12]} pending_acks {s["pending_acks"]}'
            f'{" ELECTION" if s.get("election_running") else ""}')

def mesh_state(names):
    """None when `names` form exactly one settled mesh; otherwise why not. Also returns the statuses."""
    st = {}
    for n in names:
        try:
            st[n] = get(n, "/status")
        except Exception as e:
            return f"{n} does not answer: {e}", st
    for n, s in st.items():
        alive = sorted(m["name"] for m in s["members"] if m["state"] == "alive")
        if alive != sorted(names):
            return f"{n} sees alive {alive}, expected {sorted(names)}", st
        if s.get("election_running"):
            return f"{n} is running an election", st
    views = {(s["term"], s["coordinator"]["key"]) for s in st.values()}
    if len(views) != 1:
        return f"the peers disagree on (term, coordinator): {sorted((n, s['term'], s['coordinator']['name']) for n, s in st.items())}", st
    coords = [n for n, s in st.items() if s["role"] == "coordinator"]
    if len(coords) != 1:
        return f"{len(coords)} peers say they are coordinator: {coords}", st
    return None, st

def sync_state(names, senders, acked):
    hist, st = {}, {}
    for n in names:
        try:
            st[n] = get(n, "/status")
            hist[n] = {m["id"] for m in get(n, "/history")}
        except Exception as e:
            return f"{n} does not answer: {e}"
    want = [(mid, s) for mid, s, _ in ledger() if senders is None or s in senders]
    for n in names:
        missing = [mid for mid, _ in want if mid not in hist[n]]
        if missing:
            return f"{n} lacks {len(missing)} of the {len(want)} sent messages (e.g. {missing[0]})"
    digests = {st[n]["history"]["digest"] for n in names}
    if len(digests) != 1:
        return "digests differ: " + ", ".join(f'{n}={st[n]["history"]["digest"][:12]}/{st[n]["history"]["count"]}' for n in names)
    if acked:
        pend = {n: st[n]["pending_acks"] for n in names if st[n]["pending_acks"]}
        if pend:
            return f"messages still waiting for acknowledgements: {pend}"
    return None

def wait(what, timeout, probe):
    t0 = time.monotonic()
    why = "not checked"
    while True:
        why = probe()
        if why is None:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            print(f"timed out after {timeout:.0f}s waiting for {what}: {why}", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.1)

def prom(queries):
    """Prometheus's answers to `queries` (its HTTP query API), all evaluated at one instant: for each, the
    samples as a list of (labels, value)."""
    at = f"{time.time():.3f}"
    out = {}
    for q in queries:
        url = os.environ["PROM_URL"] + "/api/v1/query?" + urllib.parse.urlencode({"query": q, "time": at})
        with urllib.request.urlopen(url, timeout=3) as resp:
            j = json.loads(resp.read())
        if j.get("status") != "success" or j["data"]["resultType"] != "vector":
            raise OSError(f"{q}: {j}")
        out[q] = [(r["metric"], float(r["value"][1])) for r in j["data"]["result"]]
    return out

def prom_state(up, coordinator, term_above, term_is):
    """None when Prometheus shows: the targets `up` (peer -> 0 or 1, every target), the series of
    chatmesh_is_coordinator exactly those of the peers up, summing to 1, on `coordinator`, and
    max(chatmesh_term) above `term_above` or equal to `term_is`; otherwise why not. Also a summary."""
    qs = ['up{job="chatmesh"}', "chatmesh_is_coordinator", "sum(chatmesh_is_coordinator)",
          "max(chatmesh_term)", "min(chatmesh_term)"]
    try:
        r = prom(qs)
    except Exception as e:
        return f"Prometheus does not answer: {e}", ""
    got_up = {m.get("instance"): v for m, v in r[qs[0]]}
    is_c = {m.get("instance"): v for m, v in r[qs[1]]}
    one = lambda q: r[q][0][1] if len(r[q]) == 1 else None
    total, tmax, tmin = one(qs[2]), one(qs[3]), one(qs[4])
    summary = (f'up {" ".join(f"{n}={v:g}" for n, v in sorted(got_up.items()))}; '
               f'chatmesh_is_coordinator {" ".join(f"{n}={v:g}" for n, v in sorted(is_c.items()))}; '
               f'sum(chatmesh_is_coordinator)={total}; max(chatmesh_term)={tmax}; min(chatmesh_term)={tmin}')
    if got_up != up:
        return f"targets: {summary}", summary
    if sorted(is_c) != sorted(n for n, v in up.items() if v == 1):
        return f"chatmesh_is_coordinator series are not those of the peers up: {summary}", summary
    if total != 1 or [n for n, v in is_c.items() if v == 1] != [coordinator]:
        return f"not exactly one coordinator, {coordinator}: {summary}", summary
    if tmax is None or (term_above is not None and not tmax > term_above) or (term_is is not None and tmax != term_is):
        return f"max(chatmesh_term) is not {'above ' + str(term_above) if term_above is not None else term_is}: {summary}", summary
    return None, summary

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "send":
        # send NAME TEXT [NAME TEXT ...]: POST /messages; each ID the peer answered goes into the ledger
        for name, text in zip(args[0::2], args[1::2]):
            try:
                code, j = request(name, "POST", "/messages", {"text": text})
            except Exception as e:
                print(f"POST /messages on {name}: {e}", file=sys.stderr)
                sys.exit(1)
            if code != 201 or not isinstance(j, dict) or "id" not in j:
                print(f"POST /messages on {name} answered HTTP {code}: {j}", file=sys.stderr)
                sys.exit(1)
            with open(LEDGER, "a") as f:
                f.write(f'{j["id"]}\t{name}\t{text}\n')
            print(j["id"])
    elif cmd == "wait-mesh":
        timeout, names = float(args[0]), args[1:]
        box = {}
        def probe():
            why, st = mesh_state(names)
            box["st"] = st
            return why
        dt = wait(f"one mesh of {','.join(names)}", timeout, probe)
        s = box["st"][names[0]]
        print(f'{dt:.2f} {s["coordinator"]["name"]} {s["term"]}')
    elif cmd == "wait-sync":
        # wait-sync TIMEOUT [--from a,b] [--acked] NAME...
        timeout, rest = float(args[0]), args[1:]
        senders, acked = None, False
        while rest and rest[0].startswith("--"):
            if rest[0] == "--from":
                senders, rest = set(rest[1].split(",")), rest[2:]
            elif rest[0] == "--acked":
                acked, rest = True, rest[1:]
            else:
                sys.exit(f"unknown option {rest[0]}")
        dt = wait(f"equal histories on {','.join(rest)}", timeout, lambda: sync_state(rest, senders, acked))
        print(f"{dt:.2f}")
    elif cmd == "wait-member":
        # wait-member TIMEOUT MEMBER STATE NAME...: every NAME sees MEMBER in STATE
        timeout, member, state, names = float(args[0]), args[1], args[2], args[3:]
        def probe():
            for n in names:
                try:
                    s = get(n, "/status")
                except Exception as e:
                    return f"{n} does not answer: {e}"
                got = next((m["state"] for m in s["members"] if m["name"] == member), "absent")
                if got != state:
                    return f"{n} sees {member} {got}"
            return None
        print(f"{wait(f'{member} {state}', timeout, probe):.2f}")
    elif cmd == "field":
        # field NAME KEY: a top-level status field
        print(get(args[0], "/status")[args[1]])
    elif cmd == "member-id":
        # member-id NAME MEMBER: MEMBER's ID in NAME's view
        s = get(args[0], "/status")
        print(next(m["id"] for m in s["members"] if m["name"] == args[1]))
    elif cmd == "member-state":
        s = get(args[0], "/status")
        print(next((m["state"] for m in s["members"] if m["name"] == args[1]), "absent"))
    elif cmd == "prom-wait":
        # prom-wait TIMEOUT COORDINATOR TERM|above:TERM PEER=0|1...: what prom_state checks
        timeout, coordinator, term, ups = float(args[0]), args[1], args[2], args[3:]
        up = {u.split("=")[0]: float(u.split("=")[1]) for u in ups}
        above = float(term[6:]) if term.startswith("above:") else None
        exact = None if above is not None else float(term)
        box = {}
        def probe():
            why, box["summary"] = prom_state(up, coordinator, above, exact)
            return why
        dt = wait("Prometheus's view", timeout, probe)
        print(f'{dt:.2f} {box["summary"]}')
    elif cmd == "show":
        for n in args:
            print(fmt_status(n))
    elif cmd == "count":
        print(len(ledger()))
    else:
        sys.exit(f"unknown command {cmd}")

main()
PY
export NSENTER="${NSENTER[*]}"
mesh() { python3 "$TMP/mesh.py" "$@"; }

# Timings, for the summary.
declare -A TIMING=()
ORDER=()
timing() { TIMING[$1]=$2; ORDER+=("$1"); }

# ---------------------------------------------------------------------------------------------------
say "project $PROJECT (temporary files in $TMP)"

# A free /24 for the bridge (172.28.77 is the compose default; a running demo mesh may hold it).
USED=$(docker network inspect $(docker network ls -q) --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' 2>/dev/null || true)
USED="$USED $(ip -4 route 2>/dev/null | awk '{print $1}' | tr '\n' ' ')"
PREFIX=""
start=$((78 + RANDOM % 177))
for x in $(seq "$start" 254) $(seq 78 $((start - 1))) 77; do
    case " $USED " in *" 172.28.$x."*) continue ;; esac
    PREFIX=172.28.$x; break
done
[ -n "$PREFIX" ] || fail "no free 172.28.x.0/24 subnet for the test network"
# Five free ports on 127.0.0.1: the control APIs and Prometheus.
read -r -a PORTS <<<"$(python3 -c '
import socket
ss = [socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')"
# A fresh network key (deploy/network.key is the demo key): what deploy/README.md tells users to do.
head -c 32 /dev/urandom | base64 >"$TMP/network.key"
chmod 0644 "$TMP/network.key"    # the node runs as uid 10001 in the container
export CHATMESH_IMAGE=$IMAGE CHATMESH_KEY_FILE=$TMP/network.key CHATMESH_NET_PREFIX=$PREFIX \
    CHATMESH_API_PORT_ANA=${PORTS[0]} CHATMESH_API_PORT_BRUNO=${PORTS[1]} \
    CHATMESH_API_PORT_CARLA=${PORTS[2]} CHATMESH_API_PORT_DAVI=${PORTS[3]} \
    CHATMESH_PROMETHEUS_IMAGE=$PROM_IMAGE CHATMESH_PROMETHEUS_PORT=${PORTS[4]} PROM_URL=http://127.0.0.1:${PORTS[4]}
declare -A PORT=([ana]=${PORTS[0]} [bruno]=${PORTS[1]} [carla]=${PORTS[2]} [davi]=${PORTS[3]})
declare -A ADDR=([ana]=$PREFIX.11 [bruno]=$PREFIX.12 [carla]=$PREFIX.13 [davi]=$PREFIX.14)
write_endpoints() {
    # write_endpoints [NAME PID]: every peer through its published port, NAME through its namespace.
    : >"$ENDPOINTS"
    for p in "${PEERS[@]}"; do
        if [ "${1:-}" = "$p" ]; then echo "$p netns:$2"; else echo "$p http://127.0.0.1:${PORT[$p]}"; fi >>"$ENDPOINTS"
    done
}
write_endpoints
say "subnet $PREFIX.0/24, control APIs on 127.0.0.1:${PORTS[*]:0:4}"
if [ "$MONITORING" = 1 ]; then
    say "monitoring: Prometheus ($PROM_BIN) in an image built offline, on 127.0.0.1:${PORTS[4]}"
else
    say "monitoring SKIPPED: no Prometheus server on this host (install the Debian package \`prometheus\`, as ./test.sh does)"
fi

# 1. The image.
t=$(now)
IMAGE_BUILT=1
BUILD_ARGS=(-t "$IMAGE")
[ -n "${CHATMESH_BIN:-}" ] && BUILD_ARGS+=(-b "$CHATMESH_BIN")
bash "$DEPLOY/build-image.sh" "${BUILD_ARGS[@]}" 2>"$TMP/build.log" || { cat "$TMP/build.log" >&2; fail "building the image failed"; }
timing "build image" "$(since "$t")"
say "built $IMAGE ($(grep -o 'chatmesh [0-9.]*, [0-9.]* MB' "$TMP/build.log" || true)) in ${TIMING[build image]}s"
if [ "$MONITORING" = 1 ]; then
    t=$(now)
    PROM_IMAGE_BUILT=1
    bash "$DEPLOY/build-image.sh" --prometheus -t "$PROM_IMAGE" -b "$PROM_BIN" 2>"$TMP/build-prom.log" \
        || { cat "$TMP/build-prom.log" >&2; fail "building the Prometheus image failed"; }
    timing "build Prometheus image" "$(since "$t")"
    say "built $PROM_IMAGE ($(grep -o 'version [^ ]*' "$TMP/build-prom.log" | head -1), $(grep -o '[0-9.]* MB$' "$TMP/build-prom.log" || true)) in ${TIMING[build Prometheus image]}s"
fi

# 2. The compose mesh.
t=$(now)
COMPOSE_UP=1
# With monitoring, the peers and the prometheus service (naming it enables its profile; grafana, whose
# image would have to be pulled, stays out).
SERVICES=()
[ "$MONITORING" = 1 ] && SERVICES=("${PEERS[@]}" prometheus)
compose up -d "${SERVICES[@]}" >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log" >&2; fail "docker-compose up failed"; }
out=$(mesh wait-mesh 30 "${PEERS[@]}") || fail "the four peers did not form one mesh"
read -r dt COORD TERM <<<"$out"
# The containers, by service (one docker call: docker-compose itself is slow to start on a loaded machine).
declare -A CID=()
while read -r svc id; do CID[$svc]=$id; done < <(docker ps -a --filter "label=com.docker.compose.project=$PROJECT" \
    --format '{{.Label "com.docker.compose.service"}} {{.ID}}')
for p in "${PEERS[@]}"; do [ -n "${CID[$p]:-}" ] || fail "no container for $p"; done
timing "compose up -> one mesh of 4" "$(since "$t")"
say "one mesh of 4 after ${TIMING[compose up -> one mesh of 4]}s: coordinator $COORD (term $TERM)"
mesh show "${PEERS[@]}"
declare -A ID=()
for p in "${PEERS[@]}"; do ID[$p]=$(mesh field "$p" id); done
# top NAME...: the highest-ranked (most senior: lowest ID) of these peers by the IDs they got at the start
# (IDs are stable).
top() { local best=""; for p in "$@"; do if [ -z "$best" ] || [ "${ID[$p]}" -lt "${ID[$best]}" ]; then best=$p; fi; done; echo "$best"; }
expect_coordinator() {
    # expect_coordinator GOT NAME...: GOT must be the highest-ranked of NAME... (what an election elects)
    local got=$1; shift
    local want; want=$(top "$@")
    [ "$got" = "$want" ] || fail "the coordinator of $* is $got, expected the most senior, $want (#${ID[$want]})"
}
expect_same_coordinator() {
    # expect_same_coordinator GOT WANT WHAT: a live coordinator is never displaced (by joins, restarts, merges
    # with a smaller part).
    [ "$1" = "$2" ] || fail "after $3 the coordinator is $1, not $2: a live coordinator was displaced"
}
expect_coordinator "$COORD" "${PEERS[@]}"
# prom_check WHAT COORDINATOR TERM|above:TERM PEER=0|1...: Prometheus's query API agrees (see prom_state).
prom_check() {
    [ "$MONITORING" = 1 ] || return 0
    local what=$1; shift
    local t; t=$(now)
    out=$(mesh prom-wait 40 "$@") || fail "Prometheus does not show $what"
    read -r dt summary <<<"$out"
    timing "Prometheus: $what" "$(since "$t")"
    say "Prometheus shows $what (${dt}s): $summary"
}
prom_check "the mesh of 4" "$COORD" "$TERM" ana=1 bruno=1 carla=1 davi=1

# 3. Probes from outside compose: multicast discovery, and name resolution inside the scratch image.
t=$(now)
probe() {
    # probe NAME ARGS...: a throw-away peer on the mesh network (its log stays inside its container).
    local name=$1; shift
    local c=${PROJECT}_probe_$name
    PROBES+=("$c")
    docker run -d --name "$c" --network "$NET" -e CHATMESH_NAME="$name" \
        -e CHATMESH_NETWORK_KEY_FILE=/run/chatmesh/network.key -v "$TMP/network.key:/run/chatmesh/network.key:ro" \
        "$IMAGE" --ui plain --data-dir /data --log-dir /tmp/logs --listen 0.0.0.0:7000 "$@" >/dev/null \
        || fail "could not start the probe container $name"
}
# eva knows nobody: only multicast on the bridge can bring her in.
probe eva
# fabio listens to another multicast group, so only --peer ana:7000 (Docker's DNS, glibc NSS) brings him in.
probe fabio --group 239.255.77.78:7777 --peer ana:7000
mesh wait-member 20 eva alive "${PEERS[@]}" >/dev/null || fail "probe eva (multicast only) did not join the mesh"
mesh wait-member 20 fabio alive "${PEERS[@]}" >/dev/null || fail "probe fabio (--peer ana:7000, a name resolved inside the scratch image) did not join"
# His own word for it (his output may trail the members' view by a moment). Not `grep -q`: with pipefail,
# its early exit can fail the pipeline through docker logs' SIGPIPE.
joined() { docker logs "${PROJECT}_probe_fabio" 2>&1 | grep -c "in the mesh as #" >/dev/null; }
for _ in $(seq 50); do joined && break; sleep 0.2; done
joined || fail "fabio does not say he joined the mesh"
say "probes joined: eva by multicast, fabio through --peer ana:7000 (name resolution works in the image)"
docker stop -t 5 "${PROJECT}_probe_eva" "${PROJECT}_probe_fabio" >/dev/null
out=$(mesh wait-mesh 20 "${PEERS[@]}") || fail "the mesh did not settle after the probes left"
read -r dt COORD_AFTER TERM <<<"$out"
expect_same_coordinator "$COORD_AFTER" "$COORD" "two probes joined and left"
timing "probes join and leave" "$(since "$t")"
say "probes left gracefully; coordinator $COORD again (term $TERM)"

# 4. Chat through every peer.
t=$(now)
msgs=()
for round in 1 2; do for p in "${PEERS[@]}"; do msgs+=("$p" "hello $round from $p"); done; done
mesh send "${msgs[@]}" >/dev/null || fail "sending through the peers failed"
dt=$(mesh wait-sync 20 "${PEERS[@]}") || fail "the first messages did not reach every peer"
timing "8 messages everywhere" "$(since "$t")"
say "$(mesh count) messages sent through all 4 peers, every peer holds them (${dt}s)"

# 5. Crash of the coordinator (SIGKILL), chat during the election.
VICTIM=$COORD
SURV=()
for p in "${PEERS[@]}"; do [ "$p" != "$VICTIM" ] && SURV+=("$p"); done
t=$(now)
docker kill "${CID[$VICTIM]}" >/dev/null || fail "docker kill $VICTIM failed"
# Chat while the survivors elect: one message through each, concurrently with the wait below.
msgs=()
for p in "${SURV[@]}"; do msgs+=("$p" "during the failover, from $p"); done
mesh send "${msgs[@]}" >/dev/null &
SENDER=$!
out=$(mesh wait-mesh 15 "${SURV[@]}") || fail "the survivors did not elect a new coordinator"
read -r dt COORD2 TERM2 <<<"$out"
expect_coordinator "$COORD2" "${SURV[@]}"
timing "failover after SIGKILL (incl. docker kill)" "$(since "$t")"
wait "$SENDER" || fail "chat stopped while the coordinator was down (a send during the failover failed)"
for p in "${SURV[@]}"; do
    [ "$(mesh member-state "$p" "$VICTIM")" = failed ] || fail "$p does not see $VICTIM as failed"
done
say "killed coordinator $VICTIM; ${SURV[*]} agree on $COORD2 (term $TERM2, the most senior survivor) after ${TIMING[failover after SIGKILL (incl. docker kill)]}s (${dt}s after docker kill returned; 3 messages sent meanwhile)"
msgs=()
for p in "${SURV[@]}"; do msgs+=("$p" "after the failover, from $p"); done
mesh send "${msgs[@]}" >/dev/null || fail "sending after the failover failed"
dt=$(mesh wait-sync 20 "${SURV[@]}") || fail "the survivors' histories did not converge after the failover"
say "chat goes on: survivors converged (${dt}s)"
ups=()
for p in "${PEERS[@]}"; do if [ "$p" = "$VICTIM" ]; then ups+=("$p=0"); else ups+=("$p=1"); fi; done
prom_check "the failover" "$COORD2" "above:$TERM" "${ups[@]}"

# 6. Partition: cut the lowest-ranked (most junior) survivor off the network, chat on both sides.
CUT=""
for p in "${SURV[@]}"; do
    if [ -z "$CUT" ] || [ "${ID[$p]}" -gt "${ID[$CUT]}" ]; then CUT=$p; fi
done
MAIN=()
for p in "${SURV[@]}"; do [ "$p" != "$CUT" ] && MAIN+=("$p"); done
CUT_C=${CID[$CUT]}
CUT_PID=$(docker inspect -f '{{.State.Pid}}' "$CUT_C")
t=$(now)
T_CUT=$t
docker network disconnect "$NET" "$CUT_C" || fail "docker network disconnect $CUT failed"
write_endpoints "$CUT" "$CUT_PID"
out=$(mesh wait-mesh 15 "${MAIN[@]}") || fail "${MAIN[*]} did not settle without $CUT"
read -r dt COORD3 TERM3 <<<"$out"
expect_same_coordinator "$COORD3" "$COORD2" "$CUT was cut off"
out=$(mesh wait-mesh 15 "$CUT") || fail "$CUT did not become the coordinator of its own part"
read -r dt COORD4 TERM4 <<<"$out"
timing "partition detected on both sides" "$(since "$t")"
say "disconnected $CUT: ${MAIN[*]} follow $COORD3 (term $TERM3); $CUT coordinates itself (term $TERM4), after ${TIMING[partition detected on both sides]}s"
msgs=()
for i in 1 2; do for p in "$CUT" "${MAIN[@]}"; do msgs+=("$p" "partitioned $i, from $p"); done; done
mesh send "${msgs[@]}" >/dev/null || fail "sending on both sides of the partition failed"
dt=$(mesh wait-sync 20 --from "$(IFS=,; echo "${MAIN[*]}")" "${MAIN[@]}") || fail "the main side did not converge during the partition"
say "chatted on both sides of the partition"

# 7. Heal: reconnect with the same address and alias; the parts merge. The partition lasts at least 4 s,
# longer than the nodes' link timeout (3 s), so that no TCP link survives it and the parts must find each
# other again through discovery (beacons).
HOLD=$(awk -v a="$(now)" -v b="$T_CUT" 'BEGIN { d = 4 - (a - b); print (d > 0 ? d : 0) }')
sleep "$HOLD"
timing "partition held" "$(since "$T_CUT")"
t=$(now)
docker network connect --ip "${ADDR[$CUT]}" --alias "$CUT" "$NET" "$CUT_C" || fail "docker network connect $CUT failed"
write_endpoints
out=$(mesh wait-mesh 30 "${SURV[@]}") || fail "the parts did not merge after $CUT was reconnected"
read -r dt COORD5 TERM5 <<<"$out"
# The larger part's coordinator stays: $CUT, alone, elected itself and joins back.
expect_same_coordinator "$COORD5" "$COORD2" "the partition healed"
dt=$(mesh wait-sync 30 "${SURV[@]}") || fail "histories did not converge after the partition healed"
timing "merge after reconnect" "$(since "$t")"
say "reconnected $CUT: one mesh again under $COORD5 (term $TERM5), histories equal, after ${TIMING[merge after reconnect]}s"

# 8. The killed peer starts again, with its old ID, and catches up.
t=$(now)
compose start "$VICTIM" >"$TMP/start.log" 2>&1 || { cat "$TMP/start.log" >&2; fail "docker-compose start $VICTIM failed"; }
out=$(mesh wait-mesh 30 "${PEERS[@]}") || fail "$VICTIM did not rejoin the mesh"
read -r dt COORD6 TERM6 <<<"$out"
# $VICTIM outranks everyone, but a restarted member follows the live coordinator.
expect_same_coordinator "$COORD6" "$COORD2" "$VICTIM restarted"
timing "restart of $VICTIM -> one mesh of 4" "$(since "$t")"
[ "$(mesh field "$VICTIM" id)" = "${ID[$VICTIM]}" ] || fail "$VICTIM came back with ID $(mesh field "$VICTIM" id), not ${ID[$VICTIM]}"
say "$VICTIM restarted with its ID #${ID[$VICTIM]}; coordinator $COORD6 (term $TERM6)"
mesh send "$VICTIM" "back again, from $VICTIM" >/dev/null || fail "sending through the restarted $VICTIM failed"

# 9. Convergence.
t=$(now)
dt=$(mesh wait-sync 30 --acked "${PEERS[@]}") || fail "the final histories did not converge"
out=$(mesh wait-mesh 5 "${PEERS[@]}") || fail "not exactly one coordinator at the end"
read -r dt COORD7 TERM7 <<<"$out"
expect_same_coordinator "$COORD7" "$COORD2" "the final convergence"
timing "final convergence" "$(since "$t")"
say "converged: every peer holds all $(mesh count) sent messages, equal digests, no pending acks, one coordinator ($COORD7)"
prom_check "all 4 again" "$COORD7" "$TERM7" ana=1 bruno=1 carla=1 davi=1

# One log file per peer in the shared volume (copied out through a container: the image has no shell).
rm -rf "$TMP/logs"
docker cp "${CID[ana]}:/logs" "$TMP/logs" || fail "could not copy /logs out of the ana container"
for p in "${PEERS[@]}"; do
    n=$(find "$TMP/logs" -maxdepth 1 -name "chatmesh-$p.*.log" | wc -l)
    # A run across midnight (UTC) may have rotated once: two files then.
    if [ "$n" != 1 ] && ! { [ "$n" = 2 ] && [ "$START_DAY" != "$(date -u +%F)" ]; }; then
        fail "expected one log file for $p in the logs volume, found $n: $(ls "$TMP/logs" | tr '\n' ' ')"
    fi
    f=$(find "$TMP/logs" -maxdepth 1 -name "chatmesh-$p.*.log" | head -1)
    [ -s "$f" ] || fail "the log file of $p is empty"
done
others=$(find "$TMP/logs" -mindepth 1 | grep -v -E '/chatmesh-(ana|bruno|carla|davi)\.[0-9-]+\.log$' || true)
[ -z "$others" ] || fail "unexpected files in the logs volume: $others"
say "logs volume: $(ls "$TMP/logs" | tr '\n' ' ')"
mesh show "${PEERS[@]}"

# 10. Graceful shutdown: SIGTERM (through docker-init) makes every node leave and exit 0 well within the
# compose stop_grace_period (5 s); exit 137 would mean Docker had to SIGKILL it.
t=$(now)
compose stop >"$TMP/stop.log" 2>&1 || { cat "$TMP/stop.log" >&2; fail "docker-compose stop failed"; }
timing "docker-compose stop (graceful leave)" "$(since "$t")"
for p in "${PEERS[@]}"; do
    code=$(docker inspect -f '{{.State.ExitCode}}' "${CID[$p]}")
    [ "$code" = 0 ] || fail "$p exited with status $code on SIGTERM (137: it did not stop within the grace period)"
done
say "docker-compose stop: all 4 left the mesh and exited 0 in ${TIMING[docker-compose stop (graceful leave)]}s"

DONE=1
TOTAL=$(since "$T0")
echo
echo "PASS: deploy/test.sh in ${TOTAL}s"
for k in "${ORDER[@]}"; do printf '  %-42s %6ss\n' "$k" "${TIMING[$k]}"; done
