unshare -rn sleep 4 & P=$!
sleep 0.3
t0=$(date +%s%N)
pasta --config-net --quiet -t 18080:80 -u none -T none -U none -P /tmp/pu/pasta.pid $P >/dev/null 2>/tmp/pu/pasta.err; echo "pasta rc=$? setup $(( ($(date +%s%N)-t0)/1000000 )) ms"
nsenter -U --preserve-credentials -n -t $P ip -br addr 2>&1 | grep -v '^lo'
grep -v syslog /tmp/pu/pasta.err | head -3
PP=$(cat /tmp/pu/pasta.pid); echo "pasta alive: $(kill -0 $PP && echo yes)"
wait $P; sleep 1.5
echo "after target exit, pasta alive: $(kill -0 $PP 2>/dev/null && echo yes || echo no)"
kill $PP 2>/dev/null
