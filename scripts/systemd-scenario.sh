# The steps of the real-systemd test (sourced by scripts/systemd-test.sh,
# which boots the guest and defines g, u, check and say). Each step is what
# docs/operations.md tells an operator or a submitter to do.

# A job's field from `batchctl show --json`, read in the guest.
field() {  # user job python-expression-on-j
  u "$1" "batchctl show $2 --json" | python3 -c "import json,sys; j=json.load(sys.stdin); print($3)"
}
# after PATTERN SECONDS COMMAND: runs COMMAND in the guest once it follows
# batchd's journal, and waits (at most SECONDS) for a new line with PATTERN.
after() { g "timeout $2 python3 /opt/batchd-test/after.py '$1' $(printf '%q' "$3")"; }
fails() { ! "$@"; }
# submit_running USER FILE N: submits FILE as USER, waits until the daemon
# has accepted it (its journal) and N of its tasks run (batchctl watch);
# sets $submitted to the name submit gave it.
submit_running() {
  submitted=$(after "job accepted" 30 "su - $1 -c 'batchctl submit $2 --json'" | python3 -c "import json,sys; print(json.load(sys.stdin)['job'])")
  check "$3 tasks of $submitted run" u "$1" "timeout 60 python3 /opt/batchd-test/running.py $submitted $3"
}

# --- the operator: install, users, enable ---------------------------------------
say "operator: sysusers, catalog, tmpfiles, submitters, enable --now"
g 'systemd-sysusers && journalctl --update-catalog && systemd-tmpfiles --create batchd.conf' \
  || check "systemd-sysusers, journalctl --update-catalog, systemd-tmpfiles --create" false
for who in alice bob; do g "useradd -m -s /bin/bash $who && usermod -aG batchd $who"; done
check "/srv/batchd is made for outputs (tmpfiles.d), sticky, the batchd group's" \
  test "$(g 'stat -c "%a %U %G" /srv/batchd')" = "1770 root batchd"
g 'systemctl daemon-reload'
g 'systemctl enable --now batchd' >"$work/enable.log" 2>&1
check "systemctl enable --now batchd, with the shipped config, starts it (it once failed on slurm.sharedDirectory: \"\")" \
  g 'systemctl is-active -q batchd'
[ "$(g 'systemctl is-active batchd')" = active ] || g 'journalctl -u batchd -n 30 --no-pager'
fragment=$(g 'systemctl show -p FragmentPath --value batchd')
check "systemd loads the unit from where make install put it ($fragment), and its comment says so" \
  sh -c "test '$fragment' = /usr/local/lib/systemd/system/batchd.service && grep -q 'in PREFIX/lib/systemd/system' '$root$fragment'"
status=$(g 'systemctl show -p StatusText --value batchd')
say "status line: $status"
check "Type=notify: the status line says it is idle with its slots" grep -q "^Idle · [0-9]* slots" <<<"$status"
check "the inbox is sticky and the group's (1770), not set-group-id" \
  test "$(g 'stat -c "%a %G" /var/lib/batchd/inbox')" = "1770 batchd"
watchdog_first=$(g 'systemctl show -p WatchdogTimestampMonotonic --value batchd')
check "systemd expects watchdog pings every 30 s" test "$(g 'systemctl show -p WatchdogUSec --value batchd')" = 30s

# --- the submitters: the README example, from home and from /tmp -------------------
for who in alice bob; do
  cp -r examples/wordcount "$root/home/$who/wordcount"
  g "chown -R $who:$who /home/$who/wordcount"
  before=$(g 'ls -A /var/lib/batchd/inbox | grep -vc "^rejected$"')
  out=$(u "$who" 'cd ~/wordcount && batchctl submit job.yaml --wait 2>&1'); rc=$?
  say "$who from home: rc=$rc: $(head -c 600 <<<"$out")"
  check "$who's README example from home is refused by batchctl submit (exit 2), not accepted and failed" test "$rc" -eq 2
  check "… saying the service sees it read-only, with the fixes (a ReadWritePaths= drop-in, or /srv/batchd)" \
    grep -q "read-only for the service.*ReadWritePaths=.*srv/batchd\|srv/batchd.*ReadWritePaths=" <<<"$(tr '\n' ' ' <<<"$out")"
  check "… and nothing reached the inbox" test "$(g 'ls -A /var/lib/batchd/inbox | grep -vc "^rejected$"')" = "$before"

  g "rm -rf /tmp/wc-$who && cp -r /home/$who/wordcount /tmp/wc-$who && chown -R $who:$who /tmp/wc-$who"
  out=$(u "$who" "cd /tmp/wc-$who && batchctl submit job.yaml --wait 2>&1"); rc=$?
  say "$who from /tmp: rc=$rc: $(head -c 400 <<<"$out")"
  check "$who's example from /tmp is refused by batchctl submit: the service's /tmp is private (PrivateTmp=yes)" \
    grep -q "PrivateTmp=yes" <<<"$out"
  check "… exit 2, and nothing reached the inbox" test "$rc" -eq 2 -a "$(g 'ls -A /var/lib/batchd/inbox | grep -vc "^rejected$"')" = "$before"

  # The fix batchctl named: a directory of their own under /srv/batchd,
  # private: batchd writes their outputs as them, so it needs no way in.
  u "$who" "mkdir -m 700 /srv/batchd/$who"
  u "$who" "sed -i 's|^  destination: output|  destination: /srv/batchd/$who/wordcount|' ~/wordcount/job.yaml"
  out=$(u "$who" 'cd ~/wordcount && batchctl submit job.yaml --wait --json 2>&1'); rc=$?
  check "$who's example with a destination under /srv/batchd succeeds" test "$rc" -eq 0
  [ "$rc" -eq 0 ] || echo "$out" | tail -20
  n=$(u "$who" "ls /srv/batchd/$who/wordcount | grep -c _OUTPUT.txt")
  check "… its 3 outputs exist" test "$n" = 3
  check "… they are $who's own files" test "$(g "stat -c %U /srv/batchd/$who/wordcount/taskdata2_OUTPUT.txt")" = "$who"
  check "… $who can read, move and delete them" u "$who" \
    "cat /srv/batchd/$who/wordcount/taskdata0_OUTPUT.txt >/dev/null && mv /srv/batchd/$who/wordcount/taskdata0_OUTPUT.txt ~/moved.txt && rm /srv/batchd/$who/wordcount/taskdata1_OUTPUT.txt && rm ~/moved.txt"
done
check "bob cannot read alice's outputs" fails u bob 'cat /srv/batchd/alice/wordcount/taskdata2_OUTPUT.txt 2>/dev/null'

# --- tasks run as their submitter ------------------------------------------------------
cat > "$root/home/alice/whoami.yaml" <<'EOF'
version: 1
name: whoami
tasks: [{}]
secrets: {TOKEN: token}
command: id -un; id -Gn; grep -E '^Cap(Prm|Eff|Amb)' /proc/self/status; printf %s "$TOKEN" | sha256sum | cut -c1-64
EOF
secret="tok-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$secret" > "$root/home/alice/token"
g 'chown alice:alice /home/alice/whoami.yaml /home/alice/token && chmod 600 /home/alice/token'
name=$(after "job accepted" 30 "su - alice -c 'batchctl submit ~/whoami.yaml --json'" | python3 -c "import json,sys; print(json.load(sys.stdin)['job'])")
u alice "batchctl wait $name --timeout 60" >/dev/null
out=$(u alice "batchctl logs $name 0"); say "alice's task says: $(tr '\n' ' ' <<<"$out")"
check "alice's task runs as alice (id -un)" grep -qx alice <<<"$out"
check "… in her groups (alice and batchd)" grep -qE '^(alice batchd|batchd alice)$' <<<"$out"
check "… with no capability (permitted, effective, ambient all 0)" test "$(grep -c ':[[:space:]]*0000000000000000$' <<<"$out")" = 3
check "… and her secrets: value in its environment" grep -qx "$(printf %s "$secret" | sha256sum | cut -c1-64)" <<<"$out"
check "… which is nowhere in the state directory (the database and its WAL included)" fails g "grep -rqa '$secret' /var/lib/batchd"
check "… nor in the journal" fails g "journalctl -o cat | grep -q '$secret'"

# The other fix batchctl named: the operator lets the service write in
# alice's project directory with a drop-in (what `systemctl edit batchd`
# writes). The README example then runs from her home, unchanged, and the
# project stays hers alone (mode 700): batchd reads and writes it as her.
cp -r examples/wordcount "$root/home/alice/project"
g 'chown -R alice:alice /home/alice/project'
g 'mkdir -p /etc/systemd/system/batchd.service.d && printf "[Service]\nReadWritePaths=/home/alice/project\n" > /etc/systemd/system/batchd.service.d/override.conf'
g 'systemctl daemon-reload && systemctl restart batchd'
u alice 'chmod 700 ~/project'
out=$(u alice 'cd ~/project && batchctl submit job.yaml --wait 2>&1'); rc=$?
check "with the ReadWritePaths= drop-in, alice's README example runs from her home unchanged" test "$rc" -eq 0
[ "$rc" -eq 0 ] || echo "$out" | tail -20
check "… and its outputs are in ~/project/output, hers to read" u alice 'cat ~/project/output/taskdata2_OUTPUT.txt >/dev/null'
check "… and hers: owned by alice" test "$(g 'stat -c %U /home/alice/project/output/taskdata2_OUTPUT.txt')" = alice

job=$(u alice 'batchctl list --json' | python3 -c "import json,sys; print([j['id'] for j in json.load(sys.stdin) if j['state']=='succeeded'][0])")
story=$(g "journalctl -o cat BATCHD_JOB=$job")
check "journalctl BATCHD_JOB=<id> tells the job's story (accepted … succeeded)" \
  grep -q "job accepted" <<<"$story"
check "… to its end" grep -q "job succeeded" <<<"$story"
check "journalctl -x explains batchd's entries from its catalog" \
  grep -q "was valid; job $job was recorded" <<<"$(g "journalctl -x BATCHD_JOB=$job MESSAGE_ID=3b907d90ac394d0c9d55b81b4d86b14a")"

# --- the inbox keeps submitters apart -------------------------------------------------
printf 'version: 1\nname: broken\ncomand: true\n' > "$root/home/alice/broken.yaml"
g 'chown alice:alice /home/alice/broken.yaml'
after "manifest rejected" 30 "su - alice -c 'cp ~/broken.yaml /var/lib/batchd/inbox/broken.yaml'"
check "alice's rejected manifest and its .error are in rejected/" g 'test -e /var/lib/batchd/inbox/rejected/broken.yaml.error'
check "bob cannot move alice's rejected manifest (sticky inbox)" \
  fails u bob 'mv /var/lib/batchd/inbox/rejected/broken.yaml /var/lib/batchd/inbox/rejected/mine.yaml 2>/dev/null'
check "bob cannot delete alice's .error" fails u bob 'rm /var/lib/batchd/inbox/rejected/broken.yaml.error 2>/dev/null' 
check "the daemon's own warnings reach the journal at warning priority" \
  grep -q "manifest rejected" <<<"$(g 'journalctl -u batchd -p warning -o cat')"

# A manifest dropped by hand skips batchctl's checks: the daemon refuses it
# at intake with the same fix (never accepted, then failed).
cp -r examples/wordcount "$root/home/alice/wc-hand"
echo 'baseDirectory: /home/alice/wc-hand' >> "$root/home/alice/wc-hand/job.yaml"
g 'chown -R alice:alice /home/alice/wc-hand'
after "manifest rejected" 30 "su - alice -c 'cp ~/wc-hand/job.yaml /var/lib/batchd/inbox/by-hand.yaml'"
reason=$(u alice 'cat /var/lib/batchd/inbox/rejected/by-hand.yaml.error' | tr '\n' ' ')
check "a manifest dropped by hand with a home destination is rejected at intake, saying read-only for the service" \
  grep -q "outputs.destination: /home/alice/wc-hand is read-only for the service" <<<"$reason"
check "… with the fix (ReadWritePaths= or /srv/batchd)" grep -q "ReadWritePaths=/home/alice/wc-hand.*docs/operations.md" <<<"$reason"

# An inbox the service cannot make sticky stops it at start, with the reason
# (exit 78, not restarted), until the operator fixes it.
g 'systemctl stop batchd && chown root:root /var/lib/batchd/inbox && chmod 0770 /var/lib/batchd/inbox'
check "an inbox it cannot make sticky stops the start, with the reason in the journal" \
  after "is not sticky and cannot be made so" 30 "systemctl start batchd 2>/dev/null; true"
check "… and it is not running" fails g 'systemctl is-active -q batchd'
check "… exit 78, which the unit does not restart" test "$(g 'systemctl show -p ExecMainStatus --value batchd')" = 78
g 'chown batchd:batchd /var/lib/batchd/inbox && systemctl reset-failed batchd && systemctl start batchd'
check "… and it starts once the inbox is the service's again, sticky" \
  test "$(g 'systemctl is-active batchd'; g 'stat -c %a /var/lib/batchd/inbox')" = "$(printf 'active\n1770')"

# --- cancel: the story names who ended the job -------------------------------------------
cat > "$root/home/alice/sleepy.yaml" <<'EOF'
version: 1
name: sleepy
tasks:
  forEachInteger: {from: 1, to: 1}
command: sleep 300
EOF
g 'chown alice:alice /home/alice/sleepy.yaml'
submit_running alice '~/sleepy.yaml' 1; sleepy=$submitted   # one slot of two left for bob's task
id=$(field alice "$sleepy" "j['id']")
out=$(u bob "batchctl cancel $id 2>&1"); rc=$?; say "bob cancels alice's job: rc=$rc: $out"
check "bob may not cancel alice's job (batchctl fails)" test "$rc" -ne 0
check "… and is told who may" grep -q "only its submitter or an operator (root" <<<"$out"
check "… and her job still runs" test "$(field alice "$sleepy" "j['state']")" = running
out=$(u bob "batchctl cancel $sleepy 2>&1"); say "bob cancels alice's job by her submission's name: $out"
check "… and by her names he finds nothing of hers" grep -q "no job '$sleepy'" <<<"$out"
# Private by default: bob sees none of it, by batchctl or by the files.
check "bob's batchctl list shows none of alice's jobs" fails grep -q "$id" <<<"$(u bob 'batchctl list 2>&1')"
out=$(u bob "batchctl show $id 2>&1"); rc=$?; say "bob shows alice's job: rc=$rc: $out"
check "bob may not see alice's job (batchctl show), and is told who may" grep -q "only its submitter or an operator (root.*may see it" <<<"$out"
check "bob cannot read the database" fails u bob 'cat /var/lib/batchd/batchd.db >/dev/null 2>&1'
check "bob cannot list the jobs' directories" fails u bob 'ls /var/lib/batchd/jobs >/dev/null 2>&1'
check "alice sees her own job through the daemon" test "$(field alice "$id" "j['id']")" = "$id"
# A task of bob's acts as bob: it may not cancel alice's job either.
printf 'version: 1\nname: meddle\ntasks: [{}]\ncommand: batchctl cancel %s\n' "$id" > "$root/home/bob/meddle.yaml"
g 'chown bob:bob /home/bob/meddle.yaml'
u bob 'batchctl submit ~/meddle.yaml --wait --timeout 60' >/dev/null
out=$(u bob 'batchctl logs meddle 0 2>&1'); say "bob's task cancels alice's job: $(tr '\n' ' ' <<<"$out" | head -c 300)"
check "a task of bob's may not cancel alice's job" grep -q "permission denied: job $id is alice" <<<"$out"
check "… and her job still runs" test "$(field alice "$sleepy" "j['state']")" = running
out=$(g "batchctl cancel $id 2>&1"); say "root (an operator) cancels alice's job: $out"
u alice "batchctl wait $sleepy --timeout 60" >/dev/null
check "the job's story says who cancelled it (uid and user name, with BATCHD_JOB)" \
  g "journalctl BATCHD_JOB=$id BATCHD_REQUESTER_USER=root BATCHD_REQUESTER_UID=0 -o cat | grep -q 'cancel requested'"

# --- reload ------------------------------------------------------------------------------
g "sed -i 's/^  slots: 0/  slots: 3/; s/^shutdownGrace: 30s/shutdownGrace: 4s/; s/^  killGrace: 10s/  killGrace: 3s/' /etc/batchd/batchd.yaml"
after "configuration reloaded" 30 "systemctl reload batchd"
check "systemctl reload applies a change (3 slots)" grep -q "· 3 slots" <<<"$(g 'systemctl show -p StatusText --value batchd')"
g 'systemctl restart batchd'   # killGrace takes effect at a restart

# --- kill -9 of the daemon while tasks run: adopted, none run again, none lost -------------
cat > "$root/home/alice/marks.yaml" <<'EOF'
version: 1
name: marks
tasks:
  forEachInteger: {from: 1, to: 3}
command: echo ran >> /srv/batchd/alice/marks/{i} && sleep 6
EOF
g 'chown alice:alice /home/alice/marks.yaml'
u alice 'mkdir /srv/batchd/alice/marks'
submit_running alice '~/marks.yaml' 3; marks=$submitted
old=$(g 'systemctl show -p MainPID --value batchd')
after "daemon ready" 60 "kill -9 $old"
new=$(g 'systemctl show -p MainPID --value batchd')
check "after kill -9 systemd restarted batchd (pid $old -> $new)" test "$new" != "$old" -a "$new" != 0
u alice "batchctl wait $marks --timeout 120" >/dev/null; rc=$?
check "the job whose tasks ran through the crash succeeds" test "$rc" -eq 0
check "each of its 3 tasks ran once: adopted, not run again" \
  test "$(g 'cat /srv/batchd/alice/marks/1 /srv/batchd/alice/marks/2 /srv/batchd/alice/marks/3 | wc -l')" = 3
check "no task was recorded lost" fails grep -q lost <<<"$(g "journalctl -u batchd -o cat BATCHD_JOB=$(field alice "$marks" "j['id']")")"

# --- stop while tasks run: nothing left after shutdownGrace + killGrace -------------------
cat > "$root/home/alice/stubborn.yaml" <<'EOF'
version: 1
name: stubborn
tasks:
  forEachInteger: {from: 1, to: 2}
command: trap '' TERM; sleep 300
EOF
g 'chown alice:alice /home/alice/stubborn.yaml'
submit_running alice '~/stubborn.yaml' 2; stub=$submitted
t0=$(date +%s.%N)
g 'systemctl stop batchd'
t1=$(date +%s.%N)
took=$(python3 -c "print(round($t1 - $t0, 1))")
say "systemctl stop took ${took}s (shutdownGrace 4s + killGrace 3s)"
check "systemctl stop returns within shutdownGrace + killGrace (+5 s)" python3 -c "import sys; sys.exit(0 if $took <= 12 else 1)"
left=$(g 'pgrep -a -x batchd-exec; pgrep -a -x sleep')
check "nothing of the tasks is left running after stop" test -z "$left"
[ -z "$left" ] || echo "$left"
g 'systemctl start batchd'

# --- the watchdog ---------------------------------------------------------------------------
watchdog_last=$(g 'systemctl show -p WatchdogTimestampMonotonic --value batchd')
check "the watchdog is pinged (its timestamp moved)" test "$watchdog_last" != "$watchdog_first"
check "the watchdog never fired" fails grep -qi "watchdog timeout" <<<"$(g 'journalctl -u batchd -o cat')"
check "no libdispatch priority noise in the journal (from batchd or any submitter's batchctl)" fails grep -q "Failed to set thread priority" <<<"$(g 'journalctl -o cat')"

# --- hardening ------------------------------------------------------------------------------
overall=$(g 'systemd-analyze security batchd --no-pager' | grep 'Overall exposure level')
score=$(sed -n 's/.*Overall exposure level for batchd.service: \([0-9.]*\).*/\1/p' <<<"$overall")
say "systemd-analyze security batchd: $overall"
check "systemd-analyze security on the installed unit: exposure ${score:-unknown} <= 2.0" \
  python3 -c "import sys; sys.exit(0 if float('${score:-99}') <= 2.0 else 1)"

# --- the user unit with lingering -------------------------------------------------------------
say "the user unit for carol (make install-user, lingering)"
g 'useradd -m -s /bin/bash carol'
make --no-print-directory install-user DESTDIR="$root" HOME=/home/carol BUILD=debug >"$work/install-user.log" 2>&1 \
  || { tail -20 "$work/install-user.log"; check "make install-user into the guest" false; }
cp -r examples/wordcount "$root/home/carol/wordcount"
g 'chown -R carol:carol /home/carol'
carol=$(g 'id -u carol')
# Lingering starts her user manager; starting it again returns once it is
# ready (Type=notify), with its bus socket listening.
g "loginctl enable-linger carol && timeout 60 systemctl start user@$carol.service"
userctl="XDG_RUNTIME_DIR=/run/user/$carol DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$carol/bus systemctl --user"
u carol "$userctl daemon-reload && $userctl enable --now batchd" >"$work/user-enable.log" 2>&1
check "systemctl --user enable --now batchd, with lingering" u carol "$userctl is-active -q batchd"
out=$(u carol 'export BATCHD_CONFIG=~/.config/batchd/batchd.yaml; cd ~/wordcount && batchctl submit job.yaml --wait 2>&1'); rc=$?
check "carol's README example from her home succeeds under the user unit" test "$rc" -eq 0
[ "$rc" -eq 0 ] || echo "$out" | tail -20
check "… with its 3 outputs in ~/wordcount/output" test "$(u carol 'ls ~/wordcount/output | grep -c _OUTPUT.txt')" = 3
