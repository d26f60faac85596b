#!/usr/bin/env bash
# Installs (or uninstalls) ugro-monitor, ugroctl, the systemd unit, the sysusers file and an
# initial /etc/ugro/ugro.toml. Run `scripts/install.sh --help` for the options.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/install.sh [--no-build] [--dry-run] [--uninstall] [--help]

Builds the release binaries and installs
  $PREFIX/bin/ugro-monitor, $PREFIX/bin/ugroctl        (mode 0755)
  $SYSTEMD_DIR/ugro-monitor.service                    (mode 0644)
  /usr/lib/sysusers.d/ugro-monitor.conf                (mode 0644)
  /etc/ugro/ugro.toml from config/ugro.example.toml    (mode 0644; only if it does not exist,
                                                        an existing config is never overwritten)

Options:
  --no-build    do not run cargo; install the binaries already in $UGRO_BIN_DIR
  --dry-run     print every action instead of performing it (needs neither root nor a build)
  --uninstall   remove the binaries, the unit and the sysusers file; /etc/ugro and
                /var/lib/ugro are kept
  -h, --help    show this help

Environment:
  PREFIX        installation prefix for the binaries        [/usr/local]
  DESTDIR       staging root put in front of every installed path (packaging) [empty]
  SYSTEMD_DIR   where the unit goes                         [/etc/systemd/system]
  UGRO_BIN_DIR  directory to take the built binaries from   [target/release]

Build as your own user, then install as root:
  cargo build --release --locked -p ugro-monitor -p ugroctl
  sudo scripts/install.sh --no-build
USAGE
}

build=1
dry_run=0
uninstall=0
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --dry-run) dry_run=1 ;;
        --uninstall) uninstall=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "install.sh: unknown argument '$arg'" >&2
            usage >&2
            exit 2
            ;;
    esac
done

# Everything below is relative to the repository root, whatever the caller's cwd.
repo_root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd -- "$repo_root"

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
UGRO_BIN_DIR=${UGRO_BIN_DIR:-target/release}
PREFIX=${PREFIX%/}
DESTDIR=${DESTDIR%/}
SYSTEMD_DIR=${SYSTEMD_DIR%/}

# Paths on the target system (what the unit and the printed hints refer to) ...
bin_dir="$PREFIX/bin"
unit_path="$SYSTEMD_DIR/ugro-monitor.service"
sysusers_dir="/usr/lib/sysusers.d"
sysusers_path="$sysusers_dir/ugro-monitor.conf"
config_dir="/etc/ugro"
config_path="$config_dir/ugro.toml"
# ... and where they are written now.
d_bin_dir="$DESTDIR$bin_dir"
d_unit_path="$DESTDIR$unit_path"
d_sysusers_path="$DESTDIR$sysusers_path"
d_config_path="$DESTDIR$config_path"

binaries=(ugro-monitor ugroctl)

die() {
    echo "install.sh: $*" >&2
    exit 1
}

# Prints a command (shell-quoted) and runs it, unless this is a dry run.
run() {
    local line
    line=$(printf '%q ' "$@")
    printf '%s\n' "${line% }"
    if [[ $dry_run -eq 0 ]]; then
        "$@"
    fi
}

# Prints a note; in a dry run as a comment so every line stays one action.
note() {
    if [[ $dry_run -eq 1 ]]; then
        printf '# %s\n' "$*"
    else
        printf '%s\n' "$*"
    fi
}

if [[ $dry_run -eq 0 && -z $DESTDIR && $EUID -ne 0 ]]; then
    die "installing into / needs root: run it with sudo (build first and pass --no-build), or set DESTDIR for a staged install"
fi

# A service the manager still knows must be stopped and disabled before its files go away.
service_in_use() {
    [[ -z $DESTDIR && -d /run/systemd/system ]] || return 1
    command -v systemctl >/dev/null 2>&1 || return 1
    systemctl is-active --quiet ugro-monitor.service || systemctl is-enabled --quiet ugro-monitor.service
}

if [[ $uninstall -eq 1 ]]; then
    if [[ $dry_run -eq 0 ]] && service_in_use; then
        die "ugro-monitor.service is still active or enabled: run 'systemctl disable --now ugro-monitor' first"
    fi
    for b in "${binaries[@]}"; do
        run rm -f -- "$d_bin_dir/$b"
    done
    run rm -f -- "$d_unit_path"
    run rm -f -- "$d_sysusers_path"
    note "kept $DESTDIR$config_dir (configuration) and $DESTDIR/var/lib/ugro (database, summaries, known_hosts); remove them by hand if no longer needed"
    note "kept the user and group 'ugro'; remove them with: userdel ugro"
    echo
    echo "Next: systemctl daemon-reload"
    exit 0
fi

if [[ $build -eq 1 ]]; then
    if [[ $dry_run -eq 0 ]] && ! command -v cargo >/dev/null 2>&1; then
        die "cargo not found: build as your own user (cargo build --release --locked -p ugro-monitor -p ugroctl) and rerun with --no-build"
    fi
    run cargo build --release --locked -p ugro-monitor -p ugroctl
fi
if [[ $dry_run -eq 0 ]]; then
    for b in "${binaries[@]}"; do
        [[ -x "$UGRO_BIN_DIR/$b" ]] || die "$UGRO_BIN_DIR/$b not found: build it (drop --no-build) or set UGRO_BIN_DIR"
    done
fi

# Binaries.
run install -d -m 0755 "$d_bin_dir"
for b in "${binaries[@]}"; do
    run install -m 0755 "$UGRO_BIN_DIR/$b" "$d_bin_dir/$b"
done

# The unit names /usr/local/bin/ugro-monitor; point it at $PREFIX/bin when that differs.
run install -d -m 0755 "$DESTDIR$SYSTEMD_DIR"
if [[ $bin_dir == /usr/local/bin ]]; then
    run install -m 0644 systemd/ugro-monitor.service "$d_unit_path"
elif [[ $dry_run -eq 1 ]]; then
    note "the unit's /usr/local/bin/ugro-monitor is rewritten to $bin_dir/ugro-monitor"
    run install -m 0644 systemd/ugro-monitor.service "$d_unit_path"
else
    unit_tmp=$(mktemp)
    trap 'rm -f -- "$unit_tmp"' EXIT
    sed "s|/usr/local/bin/ugro-monitor|$bin_dir/ugro-monitor|g" systemd/ugro-monitor.service >"$unit_tmp"
    note "the unit's /usr/local/bin/ugro-monitor is rewritten to $bin_dir/ugro-monitor"
    run install -m 0644 "$unit_tmp" "$d_unit_path"
fi

# System user.
run install -d -m 0755 "$DESTDIR$sysusers_dir"
run install -m 0644 systemd/ugro-monitor.sysusers "$d_sysusers_path"

# Configuration: never overwrite what an operator has.
run install -d -m 0755 "$DESTDIR$config_dir"
if [[ -e $d_config_path ]]; then
    note "kept existing $d_config_path (not overwritten; compare with config/ugro.example.toml)"
else
    run install -m 0644 config/ugro.example.toml "$d_config_path"
fi

cat <<NEXT

Next steps${DESTDIR:+ (on the target system)}, as root:
  systemd-sysusers                   # create the ugro user and group
  \$EDITOR $config_path        # set your [[nodes]] and [[roots]]
  $bin_dir/ugro-monitor --config $config_path --check-config
  systemctl daemon-reload
  systemctl enable --now ugro-monitor
  ugroctl status
NEXT
