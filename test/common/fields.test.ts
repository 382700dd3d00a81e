/** The field validator reports every bad field in one form, "expected …, got …", and reads on with defaults. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FieldReader } from "../../common/index.js";

describe("FieldReader", () => {
  it("collects every problem, each under its dotted path, in one message form", () => {
    const r = new FieldReader("/etc/hotpatch");
    const o = r.mapping({ port: 0, mode: "loud", colour: "blue", files: "x" }, "svc", ["port", "mode", "files"]);
    assert.equal(r.int(o?.port, "svc.port", 1, 65535), undefined);
    assert.equal(r.oneOf(o?.mode, "svc.mode", ["on", "off"] as const, "on"), "on");
    assert.equal(r.list(o?.files, "svc.files"), undefined);
    assert.deepEqual(r.issues, [
      { field: "svc.colour", message: "unknown field; expected one of port, mode, files" },
      { field: "svc.port", message: "expected an integer from 1 to 65535, got 0" },
      { field: "svc.mode", message: 'expected one of on, off, got "loud"' },
      { field: "svc.files", message: 'expected a list, got "x"' },
    ]);
  });

  it("gives the default for a missing field, and reports a missing field that has none", () => {
    const r = new FieldReader("/etc/hotpatch");
    assert.equal(r.int(undefined, "a", 1, 10, 5), 5);
    assert.equal(r.file("certs/ca.pem", "b"), "/etc/hotpatch/certs/ca.pem");
    assert.equal(r.string(undefined, "c"), undefined);
    assert.deepEqual(r.issues, [{ field: "c", message: "expected a non-empty string, got nothing" }]);
  });

  it("reads an endpoint's security: mTLS files, insecure, never both", () => {
    const r = new FieldReader("/etc/hotpatch");
    assert.deepEqual(r.tls({ tls: { ca: "ca.pem", cert: "c.pem", key: "c.key" } }, "grpc"), {
      ca: "/etc/hotpatch/ca.pem",
      cert: "/etc/hotpatch/c.pem",
      key: "/etc/hotpatch/c.key",
    });
    assert.equal(r.tls({ insecure: true }, "grpc"), "insecure");
    assert.equal(r.issues.length, 0);
    const bad = new FieldReader("/etc/hotpatch");
    bad.tls({ insecure: true, tls: {} }, "agents", "agents");
    bad.tls({}, "grpc");
    assert.deepEqual(
      bad.issues.map((i) => i.field),
      ["agents", "grpc.tls"],
    );
  });
});
