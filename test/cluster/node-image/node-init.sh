# The init of a node container (sh builtins only: the image has no other tools). It starts the
# quote service in role $ROLE and a TCP forwarder that makes it reachable from the container's
# network (the service listens on loopback only), then becomes the agent: pid 1 from then on, and
# like a bare init it never reaps, so a crashed service stays a zombie.
/opt/node/quote_service --port 7100 --role "${ROLE:-standby}" &
echo $! >/tmp/service.pid
/usr/local/bin/node /opt/node/forward.mjs 7101 7100 &
exec /usr/local/bin/node /opt/hotpatch/bin/hotpatch.js agent --config /etc/hotpatch/agent.yaml --json
