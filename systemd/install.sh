#!/usr/bin/env bash
# Install Switchyard as a systemd service. Run from anywhere; see --help.
# Idempotent: safe to re-run for upgrades. The config and env file are never overwritten.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)

SERVICE=switchyard
SVC_USER=switchyard
SVC_GROUP=switchyard

BIN_DEST=/usr/local/bin/switchyard
UNIT_DEST=/etc/systemd/system/switchyard.service
CONF_DIR=/etc/switchyard
CONF_DEST=$CONF_DIR/switchyard.toml
ENV_DEST=/etc/default/switchyard
SYSCTL_DEST=/etc/sysctl.d/60-switchyard.conf
DOC_DEST=/usr/local/share/doc/switchyard/README.md

usage() {
    cat <<EOF
Usage: $(basename "$0") [OPTIONS]

Build and install the switchyard binary, its systemd unit, an example config and an
environment file, raise net.core.rmem_max, validate the config, and enable + start
switchyard.service.

Options:
  --no-build        Do not run 'cargo build'; install an already built binary
                    (\${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/switchyard).
  --binary PATH     Install this binary instead of building (implies --no-build).
  --no-start        Install and daemon-reload, but do not enable or (re)start the service.
  --no-validate     Skip 'switchyard validate' (e.g. when the binary cannot run here).
  --root DIR        Lay the files out under DIR instead of / (DESTDIR-style staging, e.g.
                    for packaging or testing). Implies: no useradd, no chown, no sysctl, no
                    systemctl. The DESTDIR environment variable does the same.
  -h, --help        Show this help.

Installs (paths relative to the root):
$(printf '  %-44s %s\n' \
    "$BIN_DEST" "binary (replaced on every run)" \
    "$UNIT_DEST" "unit (replaced; customise with 'systemctl edit $SERVICE')" \
    "$CONF_DEST" "example config (only if absent)" \
    "$ENV_DEST" "environment file (only if absent)" \
    "$SYSCTL_DEST" "net.core.rmem_max / rmem_default" \
    "$DOC_DEST" "this directory's README")

On a real install (no --root) this must run as root. Build as your own user first and
then install, e.g.:  cargo build --release --bin switchyard && sudo $0 --no-build
EOF
}

log() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

BUILD=1
START=1
VALIDATE=1
BINARY=""
ROOT=${DESTDIR:-}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --no-start) START=0 ;;
        --no-validate) VALIDATE=0 ;;
        --binary)
            [[ $# -ge 2 ]] || die "--binary needs a PATH"
            BINARY=$2; BUILD=0; shift ;;
        --binary=*) BINARY=${1#*=}; BUILD=0 ;;
        --root)
            [[ $# -ge 2 ]] || die "--root needs a DIR"
            ROOT=$2; shift ;;
        --root=*) ROOT=${1#*=} ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

# Staging mode: everything under $ROOT, nothing touches the running system.
STAGING=0
if [[ -n "$ROOT" ]]; then
    STAGING=1
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
    [[ "$ROOT" != / ]] || { STAGING=0; ROOT=""; }
fi

if [[ $STAGING -eq 0 && $EUID -ne 0 ]]; then
    die "a system install must run as root (or use --root DIR to stage the files)"
fi

# ---------------------------------------------------------------------------------------
# 1. Build
# ---------------------------------------------------------------------------------------
if [[ $BUILD -eq 1 ]]; then
    log "building: cargo build --release --bin switchyard"
    build_cmd=(cargo build --release --bin switchyard)
    if [[ $EUID -eq 0 && -n "${SUDO_USER:-}" && "${SUDO_USER}" != root ]]; then
        # Under sudo: build as the invoking user, so target/ does not end up owned by root
        # and their rustup toolchain (usually only on their login PATH) is used.
        sudo -u "$SUDO_USER" -H bash -lc 'cd "$1" && shift && "$@"' _ "$REPO_DIR" "${build_cmd[@]}" \
            || die "build failed (build as your user first, then re-run with --no-build)"
    else
        command -v cargo >/dev/null 2>&1 \
            || die "cargo not found in PATH (build first, then re-run with --no-build or --binary PATH)"
        (cd "$REPO_DIR" && "${build_cmd[@]}") || die "build failed"
    fi
fi

if [[ -z "$BINARY" ]]; then
    BINARY="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/switchyard"
fi
[[ -f "$BINARY" && -x "$BINARY" ]] || die "binary not found or not executable: $BINARY"

for f in switchyard.service switchyard.toml switchyard.env README.md; do
    [[ -f "$SCRIPT_DIR/$f" ]] || die "missing $SCRIPT_DIR/$f"
done

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
CHANGED=0   # set when the binary, unit or sysctl file changed (decides on a restart)

# install_file MODE SRC DEST [OWNER:GROUP]: atomic replace (temp file + rename, so a
# running binary is never rewritten in place); no-op when DEST already has this content.
install_file() {
    local mode=$1 src=$2 dest=$3 owner=${4:-}
    local d="$ROOT$dest"
    mkdir -p "$(dirname "$d")"
    if [[ -f "$d" ]] && cmp -s "$src" "$d"; then
        chmod "$mode" "$d"
        [[ -z "$owner" || $STAGING -eq 1 ]] || chown "$owner" "$d"
        log "unchanged: $d"
        return 0
    fi
    local tmp="$d.tmp.$$"
    install -m "$mode" "$src" "$tmp"
    [[ -z "$owner" || $STAGING -eq 1 ]] || chown "$owner" "$tmp"
    mv -f "$tmp" "$d"
    CHANGED=1
    log "installed: $d"
}

# install_if_absent MODE SRC DEST [OWNER:GROUP]: never overwrites local configuration.
install_if_absent() {
    local mode=$1 src=$2 dest=$3 owner=${4:-}
    local d="$ROOT$dest"
    if [[ -e "$d" ]]; then
        log "kept existing: $d"
        if ! cmp -s "$src" "$d"; then
            log "  (differs from the shipped example $src)"
        fi
        return 0
    fi
    mkdir -p "$(dirname "$d")"
    install -m "$mode" "$src" "$d"
    [[ -z "$owner" || $STAGING -eq 1 ]] || chown "$owner" "$d"
    log "installed: $d"
}

have_systemd() { [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------
# 2. Service user and group
# ---------------------------------------------------------------------------------------
if [[ $STAGING -eq 0 ]]; then
    if ! getent group "$SVC_GROUP" >/dev/null; then
        groupadd --system "$SVC_GROUP"
        log "created group $SVC_GROUP"
    fi
    if ! getent passwd "$SVC_USER" >/dev/null; then
        nologin=/usr/sbin/nologin
        [[ -x $nologin ]] || nologin=/sbin/nologin
        useradd --system --no-create-home --home-dir /var/lib/switchyard \
            --shell "$nologin" --gid "$SVC_GROUP" --comment "Switchyard metrics dataplane" \
            "$SVC_USER"
        log "created user $SVC_USER"
    fi
else
    log "staging into $ROOT (no useradd, chown, sysctl or systemctl)"
fi

# ---------------------------------------------------------------------------------------
# 3. Files
# ---------------------------------------------------------------------------------------
install_file 0755 "$BINARY" "$BIN_DEST"
install_file 0644 "$SCRIPT_DIR/switchyard.service" "$UNIT_DEST"
install_file 0644 "$SCRIPT_DIR/README.md" "$DOC_DEST"

# Config directory and file: readable by the service user (ExecStartPre validates as that
# user), not world-readable, writable only by root.
mkdir -p "$ROOT$CONF_DIR"
chmod 0750 "$ROOT$CONF_DIR"
[[ $STAGING -eq 1 ]] || chown "root:$SVC_GROUP" "$CONF_DIR"
install_if_absent 0640 "$SCRIPT_DIR/switchyard.toml" "$CONF_DEST" "root:$SVC_GROUP"
install_if_absent 0640 "$SCRIPT_DIR/switchyard.env" "$ENV_DEST" "root:$SVC_GROUP"

# ---------------------------------------------------------------------------------------
# 4. Kernel socket buffers
# ---------------------------------------------------------------------------------------
# The service has no CAP_NET_ADMIN, so SO_RCVBUFFORCE is unavailable and SO_RCVBUF is capped
# by net.core.rmem_max: raise the cap to statsd.receive_buffer_bytes (32 MiB). rmem_default
# applies to every socket on the host that does not ask for a size, so it stays modest.
sysctl_tmp=$(mktemp)
trap 'rm -f "$sysctl_tmp"' EXIT
cat >"$sysctl_tmp" <<'EOF'
# Installed by switchyard's install.sh.
# switchyard runs without CAP_NET_ADMIN, so SO_RCVBUFFORCE is not available and its
# per-socket receive buffer (statsd.receive_buffer_bytes) is capped by rmem_max.
net.core.rmem_max = 33554432
# Default for sockets that do not set SO_RCVBUF (all sockets on the host): 1 MiB.
net.core.rmem_default = 1048576
EOF
install_file 0644 "$sysctl_tmp" "$SYSCTL_DEST"

if [[ $STAGING -eq 0 ]]; then
    if command -v sysctl >/dev/null 2>&1 && sysctl --system >/dev/null 2>&1; then
        log "applied sysctl settings: net.core.rmem_max=$(sysctl -n net.core.rmem_max)"
    else
        warn "could not apply $SYSCTL_DEST now (read-only /proc/sys, e.g. in a container?);" \
            "it applies at next boot. Until then receive buffers are capped by the current rmem_max."
    fi
fi

# ---------------------------------------------------------------------------------------
# 5. Validate the config with the installed binary
# ---------------------------------------------------------------------------------------
if [[ $VALIDATE -eq 1 ]]; then
    log "validating $ROOT$CONF_DEST"
    validate=("$ROOT$BIN_DEST" validate --config "$ROOT$CONF_DEST")
    if [[ $STAGING -eq 0 ]] && command -v runuser >/dev/null 2>&1; then
        # As the service user, like ExecStartPre, so an unreadable config is caught too.
        runuser -u "$SVC_USER" -- "${validate[@]}" \
            || die "config validation failed: fix $CONF_DEST and re-run"
    else
        "${validate[@]}" || die "config validation failed: fix $ROOT$CONF_DEST and re-run"
    fi
fi

# ---------------------------------------------------------------------------------------
# 6. systemd
# ---------------------------------------------------------------------------------------
if [[ $STAGING -eq 1 ]]; then
    log "staged under $ROOT; enable on the target with: systemctl enable --now $SERVICE"
    exit 0
fi
if ! have_systemd; then
    warn "systemd is not running here; skipping daemon-reload/enable/start"
    exit 0
fi

systemctl daemon-reload
if [[ $START -eq 0 ]]; then
    log "not enabling/starting (--no-start); to start: systemctl enable --now $SERVICE"
    if [[ $CHANGED -eq 1 ]] && systemctl is-active --quiet "$SERVICE"; then
        log "$SERVICE is running the previous version; apply with: systemctl restart $SERVICE"
    fi
    exit 0
fi

was_active=0
systemctl is-active --quiet "$SERVICE" && was_active=1
# Clear a previous "start request repeated too quickly" so this start is not refused.
systemctl reset-failed "$SERVICE" >/dev/null 2>&1 || true
systemctl enable --now "$SERVICE" \
    || die "$SERVICE failed to start; see: journalctl -u $SERVICE -n 50 --no-pager"
if [[ $was_active -eq 1 && $CHANGED -eq 1 ]]; then
    # enable --now leaves a running service alone: restart it so the new binary, unit or
    # socket-buffer cap takes effect (UDP sent during the restart is lost).
    log "restarting $SERVICE to pick up the changes"
    systemctl restart "$SERVICE" \
        || die "$SERVICE failed to restart; see: journalctl -u $SERVICE -n 50 --no-pager"
fi
systemctl --no-pager --lines=0 status "$SERVICE" || true
log "done. Logs: journalctl -u $SERVICE -f    Health: curl -fsS http://127.0.0.1:8081/healthz"
