/**
 * The strict Prometheus text-format parser behind service metrics: it reads what a real exporter
 * (prom-client) writes, flattens labels deterministically, and names the line of every kind of
 * malformed input; the scrape reduction keeps only listed names, drops NaN/Inf, caps the count.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AgentError, flatName, parseExposition } from "../../agent/index.js";
import { AgentMetrics } from "../../agent/metrics/metrics.js";
import { valuesOf } from "../../agent/service_metrics/scrape.js";

function refusal(text: string): AgentError {
  try {
    parseExposition(text);
  } catch (err) {
    assert.ok(err instanceof AgentError, String(err));
    assert.equal(err.code, "EBAD_METRICS");
    return err;
  }
  assert.fail(`accepted: ${JSON.stringify(text)}`);
}

describe("Prometheus text format parser", () => {
  it("reads a real exporter's page (prom-client): counters, gauges, histogram buckets, every sample", async () => {
    const m = new AgentMetrics();
    m.patchOps.inc({ op: "apply", outcome: "done" }, 3);
    m.pauseUs.observe({ op: "apply" }, 300);
    m.heartbeatLagMs.set(1.5);
    const text = await m.registry.metrics();
    const samples = parseExposition(text);
    const byName = new Map(samples.map((s) => [flatName(s), s.value]));
    const sampleLines = text.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
    assert.equal(samples.length, sampleLines.length);
    assert.equal(byName.get('hotpatch_patch_operations_total{op="apply",outcome="done"}'), 3);
    assert.equal(byName.get("hotpatch_heartbeat_lag_milliseconds"), 1.5);
    assert.equal(byName.get('hotpatch_pause_microseconds_bucket{le="200",op="apply"}'), 0);
    assert.equal(byName.get('hotpatch_pause_microseconds_bucket{le="500",op="apply"}'), 1);
    assert.equal(byName.get('hotpatch_pause_microseconds_bucket{le="+Inf",op="apply"}'), 1);
    assert.equal(byName.get('hotpatch_pause_microseconds_sum{op="apply"}'), 300);
  });

  it("reads every form the format allows: blanks, escapes, special values, timestamps, comments", () => {
    const samples = parseExposition(
      [
        "# A free comment, then HELP with escapes",
        "# HELP rpc_total RPCs served \\\\ with a backslash",
        "# TYPE rpc_total counter",
        'rpc_total{path="C:\\\\dir\\\\x",msg="say \\"hi\\"\\n"} 12 1700000000000',
        '\trpc_total{ code = "500" , } \t 3',
        "temperature -1.5e3",
        "ratio .25",
        "weird +Inf",
        "weirder -inf",
        "nothing NaN",
        "  ",
        "# EOF",
        "",
      ].join("\n"),
    );
    assert.deepEqual(
      samples.map((s) => [flatName(s), s.value, s.timestampMs]),
      [
        ['rpc_total{msg="say \\"hi\\"\\n",path="C:\\\\dir\\\\x"}', 12, 1700000000000],
        ['rpc_total{code="500"}', 3, null],
        ["temperature", -1500, null],
        ["ratio", 0.25, null],
        ["weird", Number.POSITIVE_INFINITY, null],
        ["weirder", Number.NEGATIVE_INFINITY, null],
        ["nothing", Number.NaN, null],
      ],
    );
    assert.deepEqual(samples[0]?.labels, [
      ["msg", 'say "hi"\n'],
      ["path", "C:\\dir\\x"],
    ]);
  });

  it("flattens labels in name order, and a label with an empty value is no label", () => {
    const [a, b, c] = parseExposition('x{b="2",a="1"} 1\ny{a="1",b=""} 2\nz{} 3\n');
    assert.equal(flatName(a as never), 'x{a="1",b="2"}');
    assert.equal(flatName(b as never), 'y{a="1"}');
    assert.equal(flatName(c as never), "z");
  });

  const bad: [string, string, number, RegExp][] = [
    ["a name starting with a digit", "ok 1\n9lives 1", 2, /expected a metric name/],
    ["no value", "up", 1, /expected a blank before the value/],
    ["a value that is not a number", "up yes", 1, /"yes" is not a number/],
    ["a bad timestamp", "up 1 soon", 1, /"soon" is not a timestamp/],
    ["text after the timestamp", "up 1 2 3", 1, /unexpected text after the sample/],
    ["an unterminated label value", 'up{a="x} 1', 1, /unterminated label value/],
    ["an unknown escape", 'up{a="\\t"} 1', 1, /unknown escape '\\t'/],
    ["a label without quotes", "up{a=x} 1", 1, /expected '"'/],
    ["a bad label name", 'up{a-b="x"} 1', 1, /expected '='/],
    ["a label given twice", 'up{a="1",a="2"} 1', 1, /label a given twice/],
    ["a missing comma between labels", 'up{a="1" b="2"} 1', 1, /expected ',' or '}'/],
    [
      "a repeated series (labels in another order)",
      'a{x="1",y="2"} 1\na{y="2",x="1"} 2',
      2,
      /repeats the series of line 1/,
    ],
    ["an unknown type", "# TYPE up counterish", 1, /unknown type "counterish"/],
    ["a second TYPE line", "# TYPE up gauge\n# TYPE up gauge", 2, /second # TYPE for up \(the first is on line 1\)/],
    ["a TYPE after the samples", "up 1\n# TYPE up gauge", 2, /# TYPE for up after its samples/],
    ["a second HELP line", "# HELP up a\n# HELP up b", 2, /second # HELP for up/],
    ["a TYPE without a name", "# TYPE ", 1, /expected a metric name/],
    ["CRLF line ends", "up 1\r\n", 1, /carriage return/],
  ];
  for (const [what, text, line, re] of bad) {
    it(`refuses ${what}, naming line ${line}`, () => {
      const err = refusal(text);
      assert.equal(err.context.line, line);
      assert.match(err.message, new RegExp(`^line ${line}: `));
      assert.match(err.message, re);
    });
  }
});

describe("scraped values", () => {
  const page = "a 1\nb 2\nb_total 3\nc NaN\nd +Inf\n";

  it("keeps only the listed metric names, and never NaN or ±Inf (a gate on them fails as not reported)", () => {
    assert.deepEqual(Object.fromEntries(valuesOf(page, { names: ["a", "c", "d"], maxSamples: 10 })), { a: 1 });
    assert.deepEqual(Object.fromEntries(valuesOf(page, { names: null, maxSamples: 10 })), { a: 1, b: 2, b_total: 3 });
  });

  it("refuses a page with more samples than maxSamples, saying how to fix it", () => {
    assert.throws(
      () => valuesOf(page, { names: null, maxSamples: 4 }),
      (e: AgentError) =>
        e.code === "EBAD_METRICS" && /5 samples, more than maxSamples \(4\); list the metrics/.test(e.message),
    );
    assert.equal(valuesOf(page, { names: ["a"], maxSamples: 1 }).size, 1, "the cap counts what names keeps");
  });

  it("refuses a page that would hide the agent's own metrics_up", () => {
    assert.throws(
      () => valuesOf("metrics_up 1\n", { names: null, maxSamples: 10 }),
      (e: AgentError) => e.code === "EBAD_METRICS" && /reports itself; leave it out with names/.test(e.message),
    );
  });
});
