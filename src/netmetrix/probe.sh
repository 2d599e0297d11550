#!/bin/sh
# netmetrix sh probe: prints one sealed message of this host's basic metrics,
# for hosts without python (<host probe="sh"/>; issue #18).  POSIX sh: dash,
# BusyBox sh, bash, ksh.  Uploaded by `netmetrix upload` beside its key file
# <script>.<collector>.key; run by `netmetrix execute` as
#
#     /bin/sh .cache/netmetrix/client.sh CHALLENGE COLLECTOR     (from the login's home)
#     /bin/sh .cache/netmetrix/client.sh --watch COLLECTOR       (`netmetrix watch`)
#
# It prints exactly one line on stdout: the envelope of probe.py's protocol 1,
# always alg HS256 (no encryption: sh has no AES; SSH encrypts the channel):
#
#     NMX1.<b64url header JSON>.<b64url payload JSON>.<b64url HMAC-SHA256(mac key,
#         "NMX1.<header>.<payload>")>
#
# Metrics (Linux /proc): uptime_sec, load1/5/15, cpu_count, cpu_percent (since
# the previous run, kept in <script>.<collector>.state, or since the previous
# tick in watch mode; else over SAMPLE_WINDOW), mem_total_bytes, mem_available_bytes, mem_percent, swap_percent,
# procs_total, procs_running, disk_total_bytes/disk_used_bytes/disk_percent
# per mount (`df -P -k`; network and FUSE mounts only under timeout(1)) and
# probe_duration_sec.  What it cannot read is named in the message's errors.
#
# The HMAC is computed by the host's `openssl dgst -sha256` as RFC 2104 spells
# it, H((K ^ opad) . H((K ^ ipad) . message)), the padded key written into the
# pipe by the shell's printf builtin: the key is never in any command's argv,
# which every user of the host can read in ps (`openssl dgst -hmac KEY` and
# `-macopt hexkey:KEY` would put it there).  No openssl: exit 6 saying so.
#
# Key file, written by the collector (mode 0600; never printed):
#     netmetrix-sh-key 1
#     host NAME
#     kid KEY ID (16 hex)
#     mac HMAC KEY (64 hex: probe.subkey(key, "mac"))
# The probe refuses (exit 5) a key, state or probe file that is a symbolic link,
# not owned by the user running it, or writable (the key: readable) by others.
#
# Watch mode reads one request line per tick, "CHALLENGE IDLE DEADLINE"
# (seconds), answers each with one envelope, and ends, status 0, at EOF or
# when no line came within IDLE seconds.  Every run has a watchdog: after
# NETMETRIX_DEADLINE seconds (one-shot) or a tick's DEADLINE, it says so on
# stderr and kills the run's process group, so nothing lingers.
#
# Exit status: 0 message printed; 2 bad arguments; 3 key file missing or
# invalid; 5 refused an unsafe file; 6 no openssl.

set -f  # fields are split on purpose below, never globbed
umask 077
LC_ALL=C
export LC_ALL

PROBE_VERSION=0.1.0-sh
PROC=${NETMETRIX_PROC:-/proc}  # where /proc is: tests point it at a captured tree
SAMPLE_WINDOW=0.2  # seconds of /proc/stat for cpu_percent when no previous run says more
MAX_STATE_AGE=3600  # seconds: an older previous run says little about now
LOCAL_DF_DEADLINE=5
REMOTE_DF_DEADLINE=2
MAX_LABEL=256
EXIT_USAGE=2
EXIT_KEY=3
EXIT_UNSAFE=5
EXIT_NO_OPENSSL=6

PSEUDO_FS=" autofs binfmt_misc bpf configfs debugfs devfs devpts devtmpfs efivarfs erofs
 fdescfs fuse.gvfsd-fuse fuse.lxcfs fuse.portal fuse.snapfuse fusectl hugetlbfs
 iso9660 linprocfs linsysfs mqueue nfsd nsfs proc procfs pstore ramfs rootfs
 rpc_pipefs securityfs selinuxfs squashfs sysfs tmpfs tracefs "
REMOTE_FS=" 9p afpfs afs beegfs ceph cifs coda davfs gfs2 glusterfs gpfs lustre ncpfs nfs
 nfs4 ocfs2 orangefs smb3 smbfs sshfs vboxsf virtiofs webdav "
NL='
'
TAB='	'
BLANKS=" $TAB$NL"
IFS=$BLANKS

say() { printf 'netmetrix sh probe: %s\n' "$1" >&2; }

# ------------------------------------------------------------ files and key

# refuse FILE SECRET: exit 5 unless FILE is a regular file of ours that others
# cannot write (SECRET=1: nor read), as probe.py's check_private.
refuse_unsafe() {
    if [ -L "$1" ]; then reason="is a symbolic link"
    elif [ ! -f "$1" ]; then return 0  # missing: the caller says so
    elif [ ! -O "$1" ]; then reason="not owned by the user that runs the probe"
    elif ! mode=$(ls -ld -- "$1" 2>/dev/null); then reason="its mode cannot be read (ls)"
    else
        mode=${mode%% *}
        case $2:$mode in
            1:????[!-]* | 1:?????[!-]* | 1:??????[!-]* | 1:???????[!-]* | 1:????????[!-]* \
                | 1:?????????[!-]*) reason="readable or writable by group/others ($mode)" ;;
            0:?????[!-]* | 0:????????[!-]*) reason="writable by group/others ($mode)" ;;
            *) return 0 ;;
        esac
    fi
    printf 'netmetrix probe: refused %s: %s\n' "$1" "$reason" >&2
    exit "$EXIT_UNSAFE"
}

# read_key FILE: sets HOST, KID and the HMAC pads; exit 3 when FILE is unusable.
read_key() {
    refuse_unsafe "$1" 1
    HOST='' KID='' mac='' version=''
    if [ -f "$1" ] && [ -r "$1" ]; then
        while read -r field value; do
            case $field in
                netmetrix-sh-key) version=$value ;;
                host) HOST=$value ;;
                kid) KID=$value ;;
                mac) mac=$value ;;
            esac
        done <"$1"
    else
        say "cannot read key $1: missing or unreadable"
        exit "$EXIT_KEY"
    fi
    if [ "$version" = 1 ] && hex_of "$KID" 16 && hex_of "$mac" 64; then
        case $HOST in
            '' | *[!A-Za-z0-9._-]*) ;;
            *)
                KEY_SEEN=$(ls -ild -- "$1" 2>/dev/null)
                make_pads "$mac"
                mac=
                return 0 ;;
        esac
    fi
    mac=
    say "cannot read key $1: not a netmetrix sh key file (run upload)"
    exit "$EXIT_KEY"
}

hex_of() {  # TEXT LENGTH: TEXT is LENGTH lowercase hex digits
    case $1 in '' | *[!0-9a-f]*) return 1 ;; esac
    [ ${#1} -eq "$2" ]
}

# make_pads HEX: IPAD and OPAD, the 64-byte key XOR 0x36 and 0x5c as printf
# escapes (\ooo); computed without forks or commands, so the key stays in this shell.
make_pads() {
    hex=$1 IPAD='' OPAD='' i=0
    while [ "$i" -lt 64 ]; do
        byte=0
        if [ -n "$hex" ]; then
            byte=$((0x${hex%"${hex#??}"}))
            hex=${hex#??}
        fi
        inner=$((byte ^ 54)) outer=$((byte ^ 92))
        IPAD=$IPAD\\$((inner / 64))$((inner / 8 % 8))$((inner % 8))
        OPAD=$OPAD\\$((outer / 64))$((outer / 8 % 8))$((outer % 8))
        i=$((i + 1))
    done
}

# ------------------------------------------------------------ sealing

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '=\n'; }

# hmac_b64url TEXT: HMAC-SHA256 of TEXT under the key, base64url.
# The pads are printf formats on purpose: their \ooo escapes are the key's bytes.
# shellcheck disable=SC2059
hmac_b64url() {
    {
        printf "$OPAD"
        { printf "$IPAD"; printf '%s' "$1"; } | openssl dgst -sha256 -binary
    } | openssl dgst -sha256 -binary | b64url
}

# seal CHALLENGE PAYLOAD TIME: print the envelope line.
seal() {
    header=$(printf '{"alg":"HS256","ch":"%s","host":"%s","kid":"%s","ts":%s,"v":1}' \
        "$1" "$HOST" "$KID" "$3" | b64url)
    body=$(printf '%s' "$2" | b64url)
    tag=$(hmac_b64url "NMX1.$header.$body")
    case $header:$body:$tag in
        ?*:?*:???????????????????????????????????????????) ;;
        *) say "openssl failed to seal the message"; return 1 ;;
    esac
    printf 'NMX1.%s.%s.%s\n' "$header" "$body" "$tag"
}

# ------------------------------------------------------------ samples

SAMPLES='' ERRORS=''

add() {  # METRIC VALUE [LABELS JSON]: a sample, if VALUE is a JSON number
    case $2 in
        '' | *[!0-9.]* | *.*.* | .* | *. | 0[0-9]*) error "$1: not a number: $2" ;;
        *) SAMPLES="$SAMPLES${SAMPLES:+,}[\"$1\",{${3-}},$2]" ;;
    esac
}

error() {  # TEXT: one of the message's errors (printable ASCII only)
    case $1 in
        *[!\ -~]*) set -- "an unprintable error" ;;
    esac
    json_string "$1"
    ERRORS="$ERRORS${ERRORS:+,}$REPLY"
}

json_string() {  # TEXT -> REPLY, quoted for JSON (TEXT is printable ASCII)
    rest=$1 REPLY=
    while :; do
        case $rest in
            *[\\\"]*)
                head=${rest%%[\\\"]*}
                rest=${rest#"$head"}
                REPLY="$REPLY$head\\${rest%"${rest#?}"}"
                rest=${rest#?} ;;
            *) break ;;
        esac
    done
    REPLY="\"$REPLY$rest\""
}

# percent PART WHOLE: 100 * PART / WHOLE in [0, 100] with 3 decimals -> REPLY (0.0 if WHOLE <= 0)
percent() {
    if [ "$2" -le 0 ]; then REPLY=0.0; return; fi
    milli=$((100000 * $1 / $2))
    [ "$milli" -lt 0 ] && milli=0
    [ "$milli" -gt 100000 ] && milli=100000
    REPLY=$((milli / 1000)).$((milli / 100 % 10))$((milli / 10 % 10))$((milli % 10))
}

centis() {  # "12345.67" (/proc/uptime) -> REPLY=1234567
    case $1 in
        *.??) REPLY=${1%.*}${1#*.} ;;
        *.?) REPLY=${1%.*}${1#*.}0 ;;
        *) REPLY=${1%.*}00 ;;
    esac
    while case $REPLY in 0?*) true ;; *) false ;; esac; do REPLY=${REPLY#0}; done
}

seconds() {  # centiseconds -> REPLY as a decimal
    REPLY=$(($1 / 100)).$(($1 / 10 % 10))$(($1 % 10))
}

uptime_gauges() {
    if read -r up _ 2>/dev/null <"$PROC/uptime"; then add uptime_sec "$up"
    else error "uptime: cannot read /proc/uptime"; fi
    if read -r l1 l5 l15 _ 2>/dev/null <"$PROC/loadavg"; then
        add load1 "$l1"; add load5 "$l5"; add load15 "$l15"
    else error "loadavg: cannot read /proc/loadavg"; fi
}

# read_stat: CPU_TOTAL, CPU_BUSY (jiffies, as probe.cpu_counter), CPUS, RUNNING
read_stat() {
    CPU_TOTAL='' CPU_BUSY='' CPUS=0 RUNNING=''
    while read -r name user nice system idle_j iowait irq softirq steal _; do
        case $name in
            cpu)
                CPU_TOTAL=$((user + nice + system + idle_j + ${iowait:-0} + ${irq:-0} \
                    + ${softirq:-0} + ${steal:-0}))
                CPU_BUSY=$((CPU_TOTAL - idle_j - ${iowait:-0})) ;;
            cpu[0-9]*) CPUS=$((CPUS + 1)) ;;
            procs_running) RUNNING=$user ;;
        esac
    done <"$PROC/stat"
}

stat_gauges() {
    if [ ! -r "$PROC/stat" ]; then
        error "stat: cannot read /proc/stat"
        return
    fi
    read_stat
    add cpu_count "$CPUS"
    add procs_running "$RUNNING"
}

# cpu_rate TOTAL BUSY: cpu_percent since that earlier reading of read_stat
cpu_rate() {
    read_stat
    if [ -z "$CPU_TOTAL" ]; then
        error "cpu_percent: no cpu line in /proc/stat"
        return
    fi
    percent $((CPU_BUSY - $2)) $((CPU_TOTAL - $1))
    add cpu_percent "$REPLY"
}

memory_gauges() {
    total='' avail='' free=0 buffers=0 cached=0 reclaimable=0 swap_total=0 swap_free=0
    if [ ! -r "$PROC/meminfo" ]; then
        error "meminfo: cannot read /proc/meminfo"
        return
    fi
    while read -r name kb _; do
        case $name in
            MemTotal:) total=$kb ;;
            MemAvailable:) avail=$kb ;;
            MemFree:) free=$kb ;;
            Buffers:) buffers=$kb ;;
            Cached:) cached=$kb ;;
            SReclaimable:) reclaimable=$kb ;;
            SwapTotal:) swap_total=$kb ;;
            SwapFree:) swap_free=$kb ;;
        esac
    done <"$PROC/meminfo"
    if [ -z "$total" ]; then
        error "meminfo: no MemTotal"
        return
    fi
    # kernels before 3.14: free's old estimate; LXC mixes host and container numbers
    [ -n "$avail" ] || avail=$((free + buffers + cached + reclaimable))
    [ "$avail" -le "$total" ] || avail=$free
    add mem_total_bytes $((total * 1024))
    add mem_available_bytes $((avail * 1024))
    percent $((total - avail)) "$total"
    add mem_percent "$REPLY"
    percent $((swap_total - swap_free)) "$swap_total"
    add swap_percent "$REPLY"
}

procs_gauge() {
    count=0
    set +f
    for entry in "$PROC"/[0-9]*; do
        case ${entry#"$PROC"/} in *[!0-9]*) ;; *) count=$((count + 1)) ;; esac
    done
    set -f
    add procs_total "$count"
}

# ------------------------------------------------------------ disks

unescape_mount() {  # /proc/mounts' octal escapes -> REPLY; backslash last
    REPLY=$1
    # shellcheck disable=SC1003 # '\134:\' is "\134", then a backslash
    for pair in '\040: ' '\011:	' '\012:'"$NL" '\134:\'; do
        from=${pair%%:*} to=${pair#*:} rest=$REPLY REPLY=
        while :; do
            case $rest in
                *"$from"*) REPLY=$REPLY${rest%%"$from"*}$to; rest=${rest#*"$from"} ;;
                *) break ;;
            esac
        done
        REPLY=$REPLY$rest
    done
}

is_pseudo() {
    case $PSEUDO_FS in *[\ "$NL"]"$1"[\ "$NL"]*) return 0 ;; esac
    case $1 in cgroup*) return 0 ;; esac
    return 1
}

is_remote() {
    case $REMOTE_FS in *[\ "$NL"]"$1"[\ "$NL"]*) return 0 ;; esac
    case $1 in *fuse*) return 0 ;; esac
    return 1
}

# visible_mounts FILE: "MOUNTPOINT<tab>DEVICE<tab>FSTYPE" lines (fields still
# escaped: no tab or newline in them) worth watching, as probe.select_mounts:
# the last mount on a mountpoint wins, pseudo filesystems are left out, a device
# is reported once, at its shortest mountpoint.
visible_mounts() {
    IFS=$BLANKS seen=
    while read -r device mountpoint fstype _; do
        kept=
        IFS=$NL
        for line in $seen; do
            [ "${line%%"$TAB"*}" = "$mountpoint" ] || kept="$kept$line$NL"
        done
        IFS=$BLANKS
        seen="$kept$mountpoint$TAB$device$TAB$fstype"
    done <"$1"
    chosen=
    IFS=$NL
    for line in $seen; do
        mountpoint=${line%%"$TAB"*} fstype=${line##*"$TAB"}
        device=${line#*"$TAB"} device=${device%"$TAB"*}
        is_pseudo "$fstype" && continue
        case $device in
            */*)
                kept='' longer=''
                for other in $chosen; do
                    theirs=${other#*"$TAB"} theirs=${theirs%"$TAB"*}
                    if [ "$theirs" = "$device" ]; then
                        ours=${other%%"$TAB"*}
                        if [ ${#mountpoint} -lt ${#ours} ]; then continue; fi
                        longer=1
                    fi
                    kept="$kept$other$NL"
                done
                chosen=$kept
                [ -z "$longer" ] || continue ;;
        esac
        chosen="$chosen$line$NL"
    done
    IFS=$BLANKS
    printf '%s' "$chosen"
}

disk_gauges() {
    mounts=$PROC/mounts
    [ -r "$mounts" ] || mounts=$PROC/self/mounts
    if [ ! -r "$mounts" ]; then
        error "mounts: cannot read /proc/mounts"
        return
    fi
    limit=
    command -v timeout >/dev/null 2>&1 && limit=timeout
    chosen=$(visible_mounts "$mounts")  # with blanks as IFS: read splits its fields
    IFS=$NL
    for line in $chosen; do
        IFS=$BLANKS
        disk_gauge "${line%%"$TAB"*}" "${line##*"$TAB"}"
    done
    IFS=$BLANKS
}

disk_gauge() {  # ESCAPED MOUNTPOINT, FSTYPE: its samples from df
    unescape_mount "$1"
    path=$REPLY
    case $path in
        *[!\ -~]*) error "disk: a mount path that is not printable ASCII skipped"; return ;;
    esac
    if [ ${#path} -gt "$MAX_LABEL" ]; then
        error "disk: a mount path over $MAX_LABEL characters skipped"
        return
    fi
    json_string "$path"
    label=$REPLY
    deadline=$LOCAL_DF_DEADLINE
    if is_remote "$2"; then
        if [ -z "$limit" ]; then
            error "disk $path ($2): skipped, no timeout(1) to bound a hung server"
            return
        fi
        deadline=$REMOTE_DF_DEADLINE
    fi
    if ! out=$(${limit:+$limit $deadline} df -P -k -- "$path" 2>/dev/null); then
        error "disk $path ($2): df failed or gave no answer within ${deadline}s"
        return
    fi
    df_line "${out##*"$NL"}" "$label"
}

number() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }

# df_line LINE LABEL: the samples of df -P -k's line "FS BLOCKS USED AVAIL N% MOUNTPOINT"
# (FS and MOUNTPOINT may hold blanks: the numbers are found by their shape)
df_line() {
    # shellcheck disable=SC2086 # split into fields on purpose (set -f: no globbing)
    set -- $1 "$NL" "$2"
    while [ $# -ge 7 ]; do
        if number "$2" && number "$3" && number "$4" && [ "$5" != "${5%\%}" ] \
            && number "${5%\%}"; then
            total=$2 used=$3 avail=$4
            while [ "$1" != "$NL" ]; do shift; done
            [ "$total" -gt 0 ] || return 0  # size 0: a pseudo filesystem not listed
            label="\"mount\":$2"
            add disk_total_bytes $((total * 1024)) "$label"
            add disk_used_bytes $((used * 1024)) "$label"
            percent "$used" $((used + avail))
            add disk_percent "$REPLY" "$label"
            return 0
        fi
        shift
    done
    error "disk: cannot read df's answer"
}

# ------------------------------------------------------------ state between runs

# load_state UPTIME: PREV_TOTAL and PREV_BUSY from the state file, when it was
# written earlier in this boot (uptime in centiseconds) and at most
# MAX_STATE_AGE ago: cpu_percent then covers the time since the previous run,
# as probe.py's does.  Another user's or a writable state file is refused (exit
# 5): a planted one would make up cpu_percent, sealed with this host's key.
load_state() {
    [ -n "${STATE-}" ] || return 0
    refuse_unsafe "$STATE" 0
    [ -f "$STATE" ] || return 0
    { read -r magic version && read -r was total busy; } 2>/dev/null <"$STATE" || return 0
    [ "$magic $version" = "netmetrix-sh-state 1" ] || return 0
    number "$was" && number "$total" && number "$busy" || return 0
    [ "$was" -lt "$1" ] && [ $(($1 - was)) -le $((MAX_STATE_AGE * 100)) ] || return 0
    PREV_TOTAL=$total PREV_BUSY=$busy
}

# save_state UPTIME: this run's CPU counters for the next run; written to a new
# file (noclobber) and renamed over the old one, never written through it.
save_state() {
    [ -n "$CPU_TOTAL" ] || return 0
    temp="$STATE.$$"
    if ! (set -C && printf 'netmetrix-sh-state 1\n%s %s %s\n' "$1" "$CPU_TOTAL" "$CPU_BUSY" \
        >"$temp") 2>/dev/null || ! mv -f "$temp" "$STATE" 2>/dev/null; then
        rm -f "$temp" 2>/dev/null
        error "state $STATE: cannot be written"
    fi
}

# ------------------------------------------------------------ one message

# collect CHALLENGE: print one envelope; PREV_TOTAL/PREV_BUSY (watch) keep the
# previous reading of /proc/stat, else cpu_percent samples SAMPLE_WINDOW.
collect() {
    SAMPLES='' ERRORS=''
    read -r up _ 2>/dev/null <"$PROC/uptime" || up=0
    centis "$up"
    began=$REPLY
    uptime_gauges
    stat_gauges
    memory_gauges
    procs_gauge
    [ -n "${PREV_TOTAL-}" ] || load_state "$began"
    if [ -z "${PREV_TOTAL-}" ]; then
        read_stat
        PREV_TOTAL=$CPU_TOTAL PREV_BUSY=$CPU_BUSY
        sleep "$SAMPLE_WINDOW" 2>/dev/null || sleep 1
    fi
    if [ -n "$PREV_TOTAL" ]; then cpu_rate "$PREV_TOTAL" "$PREV_BUSY"; fi
    PREV_TOTAL=$CPU_TOTAL PREV_BUSY=$CPU_BUSY
    [ -z "${SAVE_STATE-}" ] || save_state "$began"
    disk_gauges
    read -r up _ 2>/dev/null <"$PROC/uptime" || up=0
    centis "$up"
    took=$((REPLY - began))
    [ "$took" -ge 0 ] || took=0
    seconds "$took"
    add probe_duration_sec "$REPLY"
    now=$(date +%s)
    case $now in '' | *[!0-9]*) now=0 ;; esac
    payload="{\"duration\":$REPLY,\"errors\":[$ERRORS],\"probe\":\"$PROBE_VERSION\""
    payload="$payload,\"samples\":[$SAMPLES],\"time\":$now}"
    seal "$1" "$payload" "$now"
}

# ------------------------------------------------------------ timers

# start_timer SECONDS ACTION: run the function ACTION after SECONDS, in the
# background; TIMER is its pid, for stop_timer.  The sleep holds none of the
# channel's descriptors, so a timer never keeps the collector waiting.
start_timer() {
    # shellcheck disable=SC2217 # </dev/null: the sleep holds none of the channel's ends
    (sleep "$1" </dev/null >/dev/null 2>&1 && "$2") >/dev/null &
    TIMER=$!
}

# stop_timer PID: end a timer and its sleep.  A signal to the timer's shell
# alone would leave the sleep behind, and a trap set inside it could come too
# late: so STOP it (it can start nothing more), KILL its children, then it.
stop_timer() {
    [ -n "$1" ] || return 0
    kill -s STOP "$1" 2>/dev/null || return 0
    set +f
    for stat in /proc/[0-9]*/stat; do
        read -r pid _ _ parent _ 2>/dev/null <"$stat" || continue
        [ "$parent" != "$1" ] || kill -s KILL "$pid" 2>/dev/null
    done
    set -f
    kill -s KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}

deadline_passed() {  # the run's own deadline: end its whole process group
    say "still running after its ${deadline}s deadline; ending"
    kill -s KILL 0
}

silence_passed() { kill -s TERM "$ME"; }

stop_timers() {
    stop_timer "${WATCHDOG-}"
    stop_timer "${SILENCE-}"
    WATCHDOG='' SILENCE=''
}

# ------------------------------------------------------------ main

usage() {
    printf 'usage: %s CHALLENGE COLLECTOR | --watch COLLECTOR\n' "$0" >&2
    exit "$EXIT_USAGE"
}

valid_collector() {
    case $1 in '' | *[!0-9a-z]*) usage ;; esac
    [ ${#1} -le 32 ] || usage
}

valid_challenge() { hex_of "$1" 32; }

need_openssl() {
    if ! command -v openssl >/dev/null 2>&1; then
        say "openssl not found: install openssl"
        exit "$EXIT_NO_OPENSSL"
    fi
}

one_shot() {
    valid_challenge "$1" || usage
    valid_collector "$2"
    trap stop_timers EXIT
    deadline=${NETMETRIX_DEADLINE-}
    case $deadline in
        '' | *[!0-9.]* | .* | *.*.*) ;;
        *) start_timer "$deadline" deadline_passed; WATCHDOG=$TIMER ;;
    esac
    refuse_unsafe "$0" 0
    need_openssl
    read_key "$0.$2.key"
    STATE="$0.$2.state" SAVE_STATE=1
    collect "$1"
}

# watch COLLECTOR: one envelope per request line; ends at EOF or after IDLE
# seconds of silence (a timer that TERMs this shell, which then exits 0).
watch() {
    valid_collector "$1"
    trap stop_timers EXIT
    trap 'say "no request for ${idle}s; ending"; exit 0' TERM
    refuse_unsafe "$0" 0
    need_openssl
    key_file="$0.$1.key"
    read_key "$key_file"
    STATE="$0.$1.state"  # read for the first tick, never written: ticks keep it in memory
    ME=$$ idle=60
    while :; do
        start_timer "$idle" silence_passed
        SILENCE=$TIMER
        IFS='' read -r request || exit 0
        stop_timer "$SILENCE"
        SILENCE=''
        # shellcheck disable=SC2086 # split into fields on purpose (set -f: no globbing)
        set -- $request
        if [ $# -lt 3 ] || ! valid_challenge "$1"; then
            say "bad request: expected CHALLENGE IDLE DEADLINE"
            exit "$EXIT_USAGE"
        fi
        idle=$2 deadline=$3
        case $idle:$deadline in
            *[!0-9.:]* | :* | *:)
                say "bad request: IDLE and DEADLINE are seconds"
                exit "$EXIT_USAGE" ;;
        esac
        [ "$(ls -ild -- "$key_file" 2>/dev/null)" = "$KEY_SEEN" ] || read_key "$key_file"
        start_timer "$deadline" deadline_passed
        WATCHDOG=$TIMER
        collect "$1" || exit 1
        stop_timer "$WATCHDOG"
        WATCHDOG=''
    done
}

case ${1-} in
    --watch) [ $# -eq 2 ] || usage; watch "$2" ;;
    *) [ $# -eq 2 ] || usage; one_shot "$1" "$2" ;;
esac
