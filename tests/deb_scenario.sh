#!/bin/sh
# The Debian package on a throwaway copy of this system (tests/test_deb.py).
#
#   deb_scenario.sh outer DEB BASE RESULTS TAG   (inside `unshare --mount --pid --fork`)
#
# outer: a tmpfs at BASE holds the upper layer of an overlay whose lower layer
# is /, mounted at BASE/root; the script runs itself there under chroot as
# `inner`.  Nothing reaches the real system: the overlay and every mount die
# with the mount namespace, and the private PID namespace keeps the root's
# programs from signalling anything outside.  RESULTS is bind-mounted at
# /results; what the steps saw is written there, one file per fact, for the
# test to assert on.  Every wait is bounded.
set -eu

wait_for() {  # wait_for SECONDS COMMAND...: poll until COMMAND succeeds
    limit=$(($1 * 5))
    shift
    while ! "$@"; do
        limit=$((limit - 1))
        [ "$limit" -gt 0 ] || return 1
        sleep 0.2
    done
}

outer() {
    deb=$1 base=$2 results=$3 tag=$4
    mount -t tmpfs -o size=4g,mode=0755 gaemail-deb-test "$base"
    mkdir "$base/upper" "$base/work" "$base/root"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
    root=$base/root
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs tmpfs "$root/run"
    mkdir -p "$root/results"
    mount --bind "$results" "$root/results"
    cp "$deb" "$root/tmp/package.deb"
    cp "$0" "$root/tmp/scenario.sh"
    status=0
    chroot "$root" /bin/sh /tmp/scenario.sh inner "$tag" || status=$?
    # What the purge left: every name in the upper layer that mentions gaemail
    # (the system's own files are in the lower layer and never listed here).
    # Not man-db's cache of formatted pages, which reading gaemail(8) fills
    # and man-db's own daily job empties.
    (cd "$base/upper" && find . -name '*gaemail*' ! -path './results/*' \
        ! -path './var/cache/man/*') > "$results/leftovers"
    exit "$status"
}

as_nobody() {  # as cron runs it: another user, a bare environment
    setpriv --reuid=nobody --regid=nogroup --clear-groups \
        env -i PATH=/usr/bin:/bin HOME=/nonexistent LANG=C.UTF-8 "$@"
}

as_www_data() {  # as Apache or php-fpm runs PHP: www-data, whose home it may not write
    setpriv --reuid=www-data --regid=www-data --clear-groups \
        env -i PATH=/usr/bin:/bin HOME=/var/www LANG=C.UTF-8 "$@"
}

queued() { ls /var/spool/gaemail/new | grep -c . || true; }

install_package() {
    out=/results
    export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
    # No service of this root may start or stop (Exim's removal would try).
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    apt-get -o DPkg::Lock::Timeout=60 install -y --no-install-recommends /tmp/package.deb \
        > "$out/install.log" 2>&1
    for p in exim4-daemon-light bsd-mailx gaemail; do
        echo "$p $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || echo absent)"
    done > "$out/packages"
    dpkg -L gaemail > "$out/files"
    for path in /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq /usr/bin/newaliases \
        /usr/bin/gmail /usr/bin/gaemail; do
        echo "$path $(readlink -f "$path")"
    done > "$out/links"
    ls /etc/systemd/system/multi-user.target.wants/ > "$out/wants"
    getent passwd gaemail > "$out/account"
    man -w gmail gaemail sendmail newaliases > "$out/man" 2>&1 || true
    # systemd's own check of the unit: its keys, its command, its man page.
    timeout 60 systemd-analyze verify /lib/systemd/system/gaemail-deliver.service \
        > "$out/unit-verify.log" 2>&1 && echo 0 > "$out/unit-verify.rc" \
        || echo $? > "$out/unit-verify.rc"
}

check_aliases() {  # newaliases on Debian's own /etc/aliases, once gmail reads it
    echo example.net > /etc/envdir/GMAIL_DEFAULT_DOMAIN
    echo /etc/aliases > /etc/envdir/GMAIL_ALIASES
    newaliases > /results/newaliases.log 2>&1 && echo 0 > /results/newaliases.rc \
        || echo $? > /results/newaliases.rc
}

start_proxy() {  # the package's own `gaemail serve`, its outbox in /results
    gaemail serve --host 127.0.0.1 --port 0 --state-dir /tmp/proxy-state \
        --outbox /results/outbox --default-sender proxy@example.com \
        > /tmp/serve.out 2> /results/serve.log &
    serve_pid=$!
    wait_for 90 grep -q '^export GMAIL_ENVDIR=' /tmp/serve.out
    key_dir=$(sed -n 's/^export GMAIL_ENVDIR=//p' /tmp/serve.out)
    # Into the files the postinst made, so their modes stay as it set them.
    grep -o 'http://127\.0\.0\.1:[0-9]*/' /tmp/serve.out | head -n1 > /etc/envdir/GMAIL_PROXY_URL
    head -n1 "$key_dir/GMAIL_SECRET_KEY" > /etc/envdir/GMAIL_SECRET_KEY
    stat -c '%n %a %U %G' /etc/envdir /etc/envdir/* /var/spool/gaemail /var/spool/gaemail/* \
        > /results/modes
}

send_as_callers() {  # cron and mail(1) as nobody, PHP as www-data: they queue in the drop box
    tag=$1
    : > /etc/crontab
    rm -f /var/spool/cron/crontabs/*
    printf 'MAILTO=cron@example.com\n* * * * * nobody echo %s cron output\n' "$tag" \
        > /etc/cron.d/deb-test
    cron -f > /results/cron.log 2>&1 &
    cron_pid=$!
    start_proxy
    echo "$tag mailx body" | as_nobody mail -s "$tag mailx" mailx@example.com \
        > /results/mailx.log 2>&1 && echo 0 > /results/mailx.rc || echo $? > /results/mailx.rc
    as_www_data php -r "exit(mail('php@example.com', '$tag php', 'php body') ? 0 : 1);" \
        > /results/php.log 2>&1 && echo 0 > /results/php.rc || echo $? > /results/php.rc
    # cron runs the job at the next minute.
    wait_for 75 sh -c '[ "$(ls /var/spool/gaemail/new | grep -c .)" -ge 3 ]' || true
    queued > /results/queued
    kill "$cron_pid"
    rm /etc/cron.d/deb-test
}

reinstall() {  # as an upgrade does: the settings and the queued mail must stay
    md5sum /etc/envdir/* > /results/settings-before
    dpkg -i /tmp/package.deb > /results/reinstall.log 2>&1
    rm /tmp/package.deb
    md5sum /etc/envdir/* > /results/settings-after
    stat -c '%n %a %U %G' /etc/envdir /etc/envdir/* /var/spool/gaemail /var/spool/gaemail/* \
        > /results/modes-after-reinstall
    queued > /results/queued-after-reinstall
}

deliver() {  # the deliverer service's own command, user and environment
    unit=/lib/systemd/system/gaemail-deliver.service
    command=$(sed -n 's/^ExecStart=//p' "$unit")
    user=$(sed -n 's/^User=//p' "$unit")
    environment=$(sed -n 's/^Environment=//p' "$unit")
    echo "$command" > /results/deliverer
    # shellcheck disable=SC2086 # the unit's command line, split as systemd does
    setpriv --reuid="$user" --regid="$user" --init-groups \
        env -i PATH=/usr/bin:/bin $environment $command > /results/deliver.log 2>&1 &
    deliverer=$!
    wait_for 60 sh -c '[ "$(ls /var/spool/gaemail/new | grep -c .)" -eq 0 ]' || true
    wait_for 30 sh -c "[ \"\$(ls /results/outbox/new | grep -c .)\" -ge \"$(cat /results/queued)\" ]" \
        || true
    kill "$deliverer" 2>/dev/null || true
    wait "$deliverer" || true
    queued > /results/after-delivery
    kill "$serve_pid"
    wait "$serve_pid" || true
}

purge_package() {
    apt-get -o DPkg::Lock::Timeout=60 purge -y gaemail > /results/purge.log 2>&1
    for path in /usr/lib/gaemail /var/spool/gaemail /etc/envdir /usr/sbin/sendmail \
        /usr/bin/gmail /lib/systemd/system/gaemail-deliver.service \
        /etc/systemd/system/multi-user.target.wants/gaemail-deliver.service; do
        [ -e "$path" ] || [ -L "$path" ] && echo "$path"
    done > /results/present-after-purge || true
    while read -r path; do
        [ -d "$path" ] && continue  # shared directories such as /usr/bin stay
        [ -e "$path" ] || [ -L "$path" ] && echo "$path"
    done < /results/files >> /results/present-after-purge || true
    (getent passwd gaemail || echo none) > /results/account-after-purge
    rm -rf /tmp/proxy-state /tmp/serve.out /usr/sbin/policy-rc.d
}

inner() {
    install_package
    check_aliases
    send_as_callers "$1"
    reinstall
    deliver
    purge_package
}

case "$1" in
    outer) shift; outer "$@" ;;
    inner) shift; inner "$@" ;;
    *) echo "usage: $0 outer DEB BASE RESULTS TAG" >&2; exit 64 ;;
esac
