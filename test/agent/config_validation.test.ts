/** The agent's YAML configuration: a good file loads with defaults; every kind of bad field is named with what is expected. */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ConfigError, loadConfig, parseConfig } from "../../agent/index.js";
import { must, tempDir } from "../helpers/agent_harness.js";

const good = () => ({
  node: "node-a",
  pair: "p1",
  cluster: "lab",
  grpc: { listen: "127.0.0.1:7443", tls: { ca: "certs/ca.crt", cert: "certs/node-a.crt", key: "certs/node-a.key" } },
  nats: { servers: ["nats://127.0.0.1:4222"] },
  role: { source: "static", role: "active" },
  services: [
    {
      name: "web",
      process: { exePath: "/usr/sbin/nginx" },
      probes: [
        { name: "port", tcp: { port: 80 } },
        { name: "health", http: { url: "http://127.0.0.1/health" }, timeoutMs: 300 },
        { name: "script", exec: "/usr/local/bin/check --fast" },
      ],
    },
  ],
  allow: ["/usr/sbin/nginx", "/usr/lib/x86_64-linux-gnu/"],
  bundleDir: "/var/lib/hotpatch/bundles",
  auditLog: "/var/log/hotpatch/audit.jsonl",
  metrics: { listen: "127.0.0.1:9464" },
});

/** Parses `doc` and returns the issues as field -> message. */
function issues(doc: unknown): Map<string, string> {
  try {
    parseConfig(doc, "test.yaml", "/etc/hotpatch");
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    assert.equal(err.code, "ECONFIG");
    return new Map(err.issues.map((i) => [i.field, i.message]));
  }
  assert.fail("the configuration was accepted");
}

function mutate(change: (d: ReturnType<typeof good> & Record<string, unknown>) => void) {
  const d = good() as ReturnType<typeof good> & Record<string, unknown>;
  change(d);
  return d;
}

type Doc = ReturnType<typeof good> & Record<string, unknown>;

/** Bad `services[0].metrics` sections: what is set, the field named, what the message says. */
function metricsCases(): [string, (d: Doc) => void, string, RegExp][] {
  const f = "services[0].metrics";
  const set = (m: unknown) => (d: Doc) => {
    (d.services[0] as Record<string, unknown>).metrics = m;
  };
  const http = (h: Record<string, unknown>) => set({ http: { url: "http://127.0.0.1:9100/metrics", ...h } });
  return [
    ["metrics that are not a mapping", set(5), f, /expected a mapping/],
    ["a misspelt metrics key", set({ intervall: 500 }), `${f}.intervall`, /unknown field/],
    ["a metrics interval below 50 ms", set({ intervalMs: 10 }), `${f}.intervalMs`, /integer from 50/],
    ["process metrics set to a string", set({ process: "yes" }), `${f}.process`, /true or false/],
    [
      "maxAgeMs below interval + timeout",
      set({ intervalMs: 1000, maxAgeMs: 1100, http: { url: "http://x/metrics", timeoutMs: 500 } }),
      `${f}.maxAgeMs`,
      /at least intervalMs \+ the longest timeoutMs \(1500\)/,
    ],
    ["an http scrape that is not a mapping", set({ http: "http://x/metrics" }), `${f}.http`, /expected a mapping/],
    ["an http scrape without a url", set({ http: { timeoutMs: 100 } }), `${f}.http.url`, /non-empty string/],
    ["an http scrape with a non-http url", http({ url: "file:///tmp/m" }), `${f}.http.url`, /http:\/\/ or https:\/\//],
    ["an http scrape with a misspelt key", http({ timeout: 100 }), `${f}.http.timeout`, /unknown field/],
    ["a scrape timeout of 0", http({ timeoutMs: 0 }), `${f}.http.timeoutMs`, /integer from 1 to 60000/],
    ["a maxSamples of 0", http({ maxSamples: 0 }), `${f}.http.maxSamples`, /integer from 1 to 10000/],
    ["names that are not a list", http({ names: "queue_depth" }), `${f}.http.names`, /expected a list/],
    ["an empty names list", http({ names: [] }), `${f}.http.names`, /at least one metric name/],
    [
      "a name with labels",
      http({ names: ['rpc_total{code="500"}'] }),
      `${f}.http.names[0]`,
      /Prometheus metric name .*labels are not part of it/,
    ],
    ["a name listed twice", http({ names: ["a", "a"] }), `${f}.http.names[1]`, /listed twice/],
    ["an exec scrape without run", set({ exec: { timeoutMs: 100 } }), `${f}.exec.run`, /expected the command to run/],
    ["an exec scrape with an empty command", set({ exec: { run: [] } }), `${f}.exec.run`, /expected a command/],
    [
      "an exec scrape whose run is a mapping",
      set({ exec: { run: { run: "x" } } }),
      `${f}.exec.run`,
      /the command to run/,
    ],
    ["an exec scrape with argv instead of run", set({ exec: { argv: ["x"] } }), `${f}.exec.argv`, /unknown field/],
    [
      "an exec scrape with a bad name",
      set({ exec: { run: "x", names: ["9lives"] } }),
      `${f}.exec.names[0]`,
      /metric name/,
    ],
  ];
}

describe("agent configuration", () => {
  it("a good file loads, with defaults filled in and relative paths resolved against the file's folder", () => {
    const c = parseConfig(good(), "test.yaml", "/etc/hotpatch");
    assert.equal(c.heartbeat.intervalMs, 250);
    assert.deepEqual(c.grpc.security, {
      kind: "mtls",
      files: {
        ca: "/etc/hotpatch/certs/ca.crt",
        cert: "/etc/hotpatch/certs/node-a.crt",
        key: "/etc/hotpatch/certs/node-a.key",
      },
    });
    assert.deepEqual(c.role, { source: "static", role: "active", hooks: {} });
    assert.deepEqual(
      c.services[0]?.probes.map((p) => p.kind),
      ["tcp", "http", "exec"],
    );
    assert.deepEqual(c.services[0]?.probes[2], {
      name: "script",
      kind: "exec",
      argv: ["/usr/local/bin/check", "--fast"],
      timeoutMs: 1000,
    });
    assert.equal(c.metricsListen, "127.0.0.1:9464");
  });

  it("service metrics: /proc metrics on by default; http and exec scrapes with their defaults", () => {
    const plain = parseConfig(good(), "t", "/");
    assert.deepEqual(plain.services[0]?.metrics, { intervalMs: 1000, maxAgeMs: 2000, process: true, scrapes: [] });
    const c = parseConfig(
      mutate(
        (d) =>
          ((d.services[0] as Record<string, unknown>).metrics = {
            intervalMs: 500,
            process: false,
            http: { url: "http://127.0.0.1:9100/metrics", timeoutMs: 200, names: ["queue_depth", "rpc:errors"] },
            exec: { run: "/usr/local/bin/stats --prom", maxSamples: 20 },
          }),
      ),
      "t",
      "/",
    );
    assert.deepEqual(c.services[0]?.metrics, {
      intervalMs: 500,
      maxAgeMs: 2000,
      process: false,
      scrapes: [
        {
          kind: "http",
          url: "http://127.0.0.1:9100/metrics",
          timeoutMs: 200,
          maxSamples: 100,
          names: ["queue_depth", "rpc:errors"],
        },
        { kind: "exec", argv: ["/usr/local/bin/stats", "--prom"], timeoutMs: 1000, maxSamples: 20, names: null },
      ],
    });
  });

  it("uploads and the audit log get their limits and fsync policy by default", () => {
    const c = parseConfig(good(), "t", "/");
    assert.deepEqual(c.uploads, { quotaBytes: 2 ** 30, maxConcurrent: 2 });
    assert.deepEqual(c.audit, { fsync: "always", fsyncIntervalMs: 1000 });
  });

  it("managed roles get a demote deadline below the lease ttl by default", () => {
    const c = parseConfig(
      mutate((d) => (d.role = { source: "managed", leaseTtlMs: 2000 } as never)),
      "t",
      "/",
    );
    assert.equal(c.role.source, "managed");
    if (c.role.source === "managed") {
      assert.ok(c.role.demoteAfterMs < c.role.leaseTtlMs);
      assert.ok(c.role.renewMs * 2 <= c.role.demoteAfterMs);
    }
  });

  const cases: [string, (d: ReturnType<typeof good> & Record<string, unknown>) => void, string, RegExp][] = [
    ["missing node", (d) => delete (d as Record<string, unknown>).node, "node", /expected a name/],
    ["node with a dot (breaks NATS subjects)", (d) => (d.node = "a.b"), "node", /NATS subject/],
    ["listen without a port", (d) => (d.grpc.listen = "localhost"), "grpc.listen", /host:port/],
    ["neither tls nor insecure", (d) => delete (d.grpc as Record<string, unknown>).tls, "grpc.tls", /insecure: true/],
    ["both tls and insecure", (d) => ((d.grpc as Record<string, unknown>).insecure = true), "grpc.tls", /pick one/],
    ["tls without key", (d) => delete (d.grpc.tls as Record<string, unknown>).key, "grpc.tls.key", /non-empty string/],
    ["a NATS server that is not a URL", (d) => (d.nats.servers = ["127.0.0.1"]), "nats.servers[0]", /nats:\/\//],
    ["no NATS servers", (d) => (d.nats.servers = []), "nats.servers", /at least one/],
    ["heartbeat interval of 0", (d) => (d.heartbeat = { intervalMs: 0 }), "heartbeat.intervalMs", /integer from 10/],
    ["unknown role source", (d) => (d.role = { source: "vrrp" } as never), "role.source", /static, external, managed/],
    ["static role without a role", (d) => (d.role = { source: "static" } as never), "role.role", /active, standby/],
    [
      "external role with neither command nor file",
      (d) => (d.role = { source: "external" } as never),
      "role",
      /command, file/,
    ],
    [
      "external role with both",
      (d) => (d.role = { source: "external", command: "x", file: "y" } as never),
      "role",
      /got both/,
    ],
    [
      "managed demote deadline not below the ttl",
      (d) => (d.role = { source: "managed", leaseTtlMs: 1000, demoteAfterMs: 1000 } as never),
      "role.demoteAfterMs",
      /less than role.leaseTtlMs/,
    ],
    [
      "a hook that is not a command",
      (d) => (d.role = { source: "static", role: "active", hooks: { promote: 5 } } as never),
      "role.hooks.promote",
      /expected a command/,
    ],
    [
      "a probe with two kinds",
      (d) => (must(d.services[0], "service").probes[0] = { name: "x", tcp: { port: 1 }, exec: "true" } as never),
      "services[0].probes[0]",
      /exactly one of tcp, http, exec/,
    ],
    [
      "a tcp probe without a port",
      (d) => (must(d.services[0], "service").probes[0] = { name: "x", tcp: {} } as never),
      "services[0].probes[0].tcp.port",
      /integer from 1 to 65535/,
    ],
    [
      "an http probe with a bad URL",
      (d) => (must(d.services[0], "service").probes[1] = { name: "h", http: { url: "ftp://x" } } as never),
      "services[0].probes[1].http.url",
      /http:\/\//,
    ],
    [
      "a service with an empty selector",
      (d) => (must(d.services[0], "service").process = {} as never),
      "services[0].process",
      /at least one of/,
    ],
    ...metricsCases(),
    ["a relative allow-list path", (d) => (d.allow = ["bin/app"]), "allow[0]", /absolute path/],
    ["no bundle dir", (d) => delete (d as Record<string, unknown>).bundleDir, "bundleDir", /non-empty string/],
    ["a misspelt key", (d) => ((d as Record<string, unknown>).auditlog = "x"), "auditlog", /unknown field/],
    [
      "an upload quota below the largest bundle",
      (d) => ((d as Record<string, unknown>).uploads = { quotaBytes: 4096 }),
      "uploads.quotaBytes",
      /at least grpc.maxBundleBytes/,
    ],
    [
      "no uploads at once",
      (d) => ((d as Record<string, unknown>).uploads = { maxConcurrent: 0 }),
      "uploads.maxConcurrent",
      /integer from 1 to 64/,
    ],
    [
      "an unknown audit fsync policy",
      (d) => ((d as Record<string, unknown>).audit = { fsync: "sometimes" }),
      "audit.fsync",
      /one of always, interval, never/,
    ],
    ["a bad log level", (d) => ((d as Record<string, unknown>).logLevel = "loud"), "logLevel", /one of fatal/],
    [
      "duplicate service names",
      (d) => d.services.push({ ...must(d.services[0], "service") }),
      "services[1].name",
      /unique/,
    ],
  ];
  for (const [what, change, field, re] of cases) {
    it(`refuses ${what}, naming ${field}`, () => {
      const found = issues(mutate(change));
      assert.ok(found.has(field), `no issue for ${field}; got ${[...found.keys()].join(", ")}`);
      assert.match(found.get(field) ?? "", re);
    });
  }

  it("reports every bad field at once, not just the first", () => {
    const found = issues(
      mutate((d) => {
        d.node = "";
        d.grpc.listen = "x";
        d.allow = ["rel"];
      }),
    );
    assert.deepEqual([...found.keys()].sort(), ["allow[0]", "grpc.listen", "node"]);
  });

  describe("files", () => {
    let tmp: Awaited<ReturnType<typeof tempDir>>;
    before(async () => {
      tmp = await tempDir("hotpatch-config-");
    });
    after(() => tmp.cleanup());

    it("a missing file is an ECONFIG error naming the file", async () => {
      const file = path.join(tmp.dir, "none.yaml");
      await assert.rejects(
        loadConfig(file),
        (e: ConfigError) => e.code === "ECONFIG" && e.message.includes(file) && e.issues[0]?.field === "(file)",
      );
    });

    it("broken YAML is an ECONFIG error that says so", async () => {
      const file = path.join(tmp.dir, "bad.yaml");
      await writeFile(file, "node: [unclosed\n");
      await assert.rejects(
        loadConfig(file),
        (e: ConfigError) => e.issues[0]?.field === "(yaml)" && /not valid YAML/.test(e.message),
      );
    });
  });
});
