/** `codeOf` reads one stable code from anything thrown: a part's error, a deadline, an abort, or a bug. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CodedError, codeOf, deadlineSignal } from "../../common/index.js";

describe("codeOf", () => {
  it("gives a coded error's own code, and the class keeps code, context and cause", () => {
    const cause = new Error("underneath");
    const err = new CodedError("EBAD_ARGUMENT", "no such option", { option: "--x" }, { cause });
    assert.equal(codeOf(err), "EBAD_ARGUMENT");
    assert.deepEqual(err.context, { option: "--x" });
    assert.equal(err.cause, cause);
    assert.deepEqual(new CodedError("EIO", "x").context, {});
  });

  it("gives EDEADLINE for a deadline's reason and ECANCELLED for an abort", async () => {
    const d = deadlineSignal(0);
    await new Promise<void>((resolve) => d.signal.addEventListener("abort", () => resolve()));
    assert.equal(codeOf(d.signal.reason), "EDEADLINE");
    const ac = new AbortController();
    ac.abort();
    assert.equal(codeOf(ac.signal.reason), "ECANCELLED");
  });

  it("gives EINTERNAL for anything without a stable code", () => {
    for (const v of [new Error("plain"), null, undefined, "text", { code: 14 }, { code: "lower" }])
      assert.equal(codeOf(v), "EINTERNAL");
  });
});
