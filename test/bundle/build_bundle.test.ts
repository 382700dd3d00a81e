/**
 * `buildBundle` with the real compiler against real fixtures: what it writes, and every check that
 * refuses a patch before anything reaches a host. readelf is the independent witness.
 */
import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { BundleError, buildBundle, checkBundleTarget, generateKeyPair, openBundle } from "../../bundle/index.js";
import { compileFixture, fixtureSource, runTool } from "../helpers/fixtures.js";

function rejectsWith(code: string, match?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof BundleError, `expected a BundleError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (match) assert.match(err.message, match);
    return true;
  };
}

describe("buildBundle", () => {
  let target: string;
  let nonPie: string;
  let short: string;
  let tmp: string;
  let n = 0;
  const out = () => path.join(tmp, `out-${++n}`);

  before(async () => {
    target = await compileFixture("c/counter.c", ["-O1", "-fPIE", "-pie"]);
    nonPie = await compileFixture("c/counter.c", ["-O1", "-fno-pie", "-no-pie"]);
    short = await compileFixture("c/short_functions.c", ["-O2"]);
    tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-build-test-"));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it("builds a bundle whose patch uses the target's static function and static global", async () => {
    const dir = out();
    const result = await buildBundle({
      target,
      source: fixtureSource("bundle/fix_scale.c"),
      functions: ["counter.c:scale=scale_v2"],
      out: dir,
    });
    assert.equal(result.dir, dir);
    assert.deepEqual((await readdir(dir)).sort(), ["manifest.json", "patch.so"]);
    const manifest = JSON.parse(await readFile(path.join(dir, "manifest.json"), "utf8"));
    assert.deepEqual(manifest, result.manifest);
    assert.equal(manifest.schema, 1);
    assert.deepEqual(manifest.functions, [{ symbol: "counter.c:scale", replacement: "scale_v2" }]);
    assert.equal(manifest.loader, "mmap");
    assert.equal(manifest.target.kind, "executable");
    // The build-id is the target's, as readelf reads it.
    assert.ok((await runTool("readelf", ["-n", target])).includes(`Build ID: ${manifest.target.buildId}`));
    // The sha256 is patch.so's, as sha256sum computes it.
    assert.equal((await runTool("sha256sum", [path.join(dir, "patch.so")])).split(" ")[0], manifest.sha256);
    // patch.so really leaves `counter` undefined (the target's static resolves it) and exports scale_v2.
    const dynsym = await runTool("readelf", ["--dyn-syms", "-W", path.join(dir, "patch.so")]);
    assert.match(dynsym, /NOTYPE\s+GLOBAL\s+DEFAULT\s+UND counter\b/);
    assert.match(dynsym, /FUNC\s+GLOBAL\s+DEFAULT\s+\d+ scale_v2\b/);
    const bundle = await openBundle(dir);
    try {
      assert.deepEqual(bundle.manifest, manifest);
      await checkBundleTarget(bundle, target);
    } finally {
      await bundle.dispose();
    }
  });

  it("OLD without =NEW takes a replacement of the same name", async () => {
    const result = await buildBundle({
      target,
      source: fixtureSource("bundle/fix_compute.c"),
      functions: ["compute"],
      out: out(),
    });
    assert.deepEqual(result.manifest.functions, [{ symbol: "compute", replacement: "compute" }]);
  });

  it("writes the consistency level and the id it was given", async () => {
    const result = await buildBundle({
      target,
      source: fixtureSource("bundle/fix_compute.c"),
      functions: [{ symbol: "compute", consistency: "entry" }],
      id: "fix-compute.1",
      out: out(),
    });
    assert.equal(result.manifest.id, "fix-compute.1");
    assert.equal(result.manifest.functions[0]?.consistency, "entry");
  });

  it("warns when a function only has room for the 5-byte near jump", async () => {
    const result = await buildBundle({
      target: short,
      source: fixtureSource("bundle/seven.c"),
      functions: ["seven"],
      out: out(),
    });
    assert.ok(
      result.warnings.some((w) => w.includes("seven") && w.includes("near jump")),
      `warnings: ${result.warnings.join("; ")}`,
    );
  });

  it("auto picks the dlopen loader for C++ code with exception tables", async () => {
    const result = await buildBundle({
      target,
      source: fixtureSource("bundle/throws.cc"),
      functions: ["counter.c:scale=scale_v2"],
      out: out(),
    });
    assert.equal(result.manifest.loader, "dlopen");
    assert.match(await runTool("readelf", ["-SW", path.join(result.dir as string, "patch.so")]), /\.gcc_except_table/);
  });

  it("builds a bundle for a shared library, resolving libc through the library's DT_NEEDED", async () => {
    const lib = await compileFixture("c/libshape.c", ["-shared", "-fPIC", "-O2", "-Wl,-soname,libshape.so"]);
    const result = await buildBundle({
      target: lib,
      source: fixtureSource("bundle/fix_shape.c"),
      functions: ["shape_sides=shape_sides_v2"],
      out: out(),
    });
    assert.equal(result.manifest.target.kind, "library");
    assert.match(await runTool("readelf", ["-dW", lib]), /NEEDED.*libc\.so\.6/);
  });

  it("calls a PIE an executable and libc (which has an interpreter too) a library", async () => {
    const pie = await buildBundle({
      target,
      source: fixtureSource("bundle/fix_compute.c"),
      functions: ["compute"],
      out: out(),
    });
    assert.equal(pie.manifest.target.kind, "executable");
    const exe = await buildBundle({
      target: nonPie,
      source: fixtureSource("bundle/fix_compute.c"),
      functions: ["compute"],
      out: out(),
    });
    assert.equal(exe.manifest.target.kind, "executable");
  });

  it("refuses an ifunc resolver (libc's strlen) with ENOT_FUNCTION", async () => {
    const libc = (await runTool("gcc", ["-print-file-name=libc.so.6"])).trim();
    await assert.rejects(
      buildBundle({
        target: libc,
        source: fixtureSource("bundle/fix_compute.c"),
        functions: ["strlen=compute"],
        out: out(),
      }),
      rejectsWith("ENOT_FUNCTION", /ifunc/),
    );
  });

  it("refuses a name exported in several symbol versions (libc's memcpy) with EAMBIGUOUS_SYMBOL", async () => {
    const libc = (await runTool("gcc", ["-print-file-name=libc.so.6"])).trim();
    await assert.rejects(
      buildBundle({
        target: libc,
        source: fixtureSource("bundle/fix_compute.c"),
        functions: ["memcpy=compute"],
        out: out(),
      }),
      rejectsWith("EAMBIGUOUS_SYMBOL", /symbol versions/),
    );
  });

  it("an aborted build stops with ECANCELLED and leaves nothing at --out", async () => {
    const dir = out();
    const ac = new AbortController();
    const build = buildBundle({
      target,
      source: fixtureSource("bundle/fix_scale.c"),
      functions: ["counter.c:scale=scale_v2"],
      out: dir,
      signal: ac.signal,
    });
    ac.abort();
    await assert.rejects(build, rejectsWith("ECANCELLED"));
    await assert.rejects(readdir(dir), { code: "ENOENT" });
  });

  it("refuses an unknown target function with ENOSYMBOL and writes nothing", async () => {
    const dir = out();
    await assert.rejects(
      buildBundle({
        target,
        source: fixtureSource("bundle/fix_scale.c"),
        functions: ["no_such_function=scale_v2"],
        out: dir,
      }),
      rejectsWith("ENOSYMBOL", /no function no_such_function/),
    );
    await assert.rejects(readdir(dir), { code: "ENOENT" });
  });

  it("refuses a static qualified by the wrong source file with ENOSYMBOL", async () => {
    await assert.rejects(
      buildBundle({
        target,
        source: fixtureSource("bundle/fix_scale.c"),
        functions: ["other.c:scale=scale_v2"],
        out: out(),
      }),
      rejectsWith("ENOSYMBOL", /other\.c:scale/),
    );
  });

  it("refuses a function shorter than the jump with EFUNC_TOO_SHORT", async () => {
    const size = /\s(\d+)\s+FUNC\s+GLOBAL\s+DEFAULT\s+\d+ tiny$/m.exec(await runTool("readelf", ["-sW", short]));
    assert.ok(size && Number(size[1]) < 5, "the fixture's tiny() is shorter than 5 bytes");
    await assert.rejects(
      buildBundle({ target: short, source: fixtureSource("bundle/tiny.c"), functions: ["tiny"], out: out() }),
      rejectsWith("EFUNC_TOO_SHORT", new RegExp(`tiny .* is ${size[1]} bytes? long`)),
    );
  });

  it("an unqualified static defined in two files is EAMBIGUOUS_SYMBOL; file.c:name picks one", async () => {
    const two = await compileFixture("c/two_statics_a.c", ["-O2", fixtureSource("c/two_statics_b.c")]);
    const source = fixtureSource("bundle/fix_helper.c");
    await assert.rejects(
      buildBundle({ target: two, source, functions: ["helper=helper_v2"], out: out() }),
      rejectsWith("EAMBIGUOUS_SYMBOL", /two_statics_a\.c.*two_statics_b\.c.*FILE\.c:helper/),
    );
    const result = await buildBundle({
      target: two,
      source,
      functions: ["two_statics_b.c:helper=helper_v2"],
      out: out(),
    });
    assert.equal(result.manifest.functions[0]?.symbol, "two_statics_b.c:helper");
  });

  it("refuses a data symbol with ENOT_FUNCTION", async () => {
    await assert.rejects(
      buildBundle({ target, source: fixtureSource("bundle/fix_scale.c"), functions: ["counter=scale_v2"], out: out() }),
      rejectsWith("ENOT_FUNCTION", /counter .* object/),
    );
  });

  it("refuses a replacement the source does not define with ENOSYMBOL", async () => {
    await assert.rejects(
      buildBundle({
        target,
        source: fixtureSource("bundle/fix_scale.c"),
        functions: ["counter.c:scale=scale_v3"],
        out: out(),
      }),
      rejectsWith("ENOSYMBOL", /replacement scale_v3 .* not defined in fix_scale\.c/),
    );
  });

  it("refuses an undefined symbol that neither the target nor its libraries define", async () => {
    await assert.rejects(
      buildBundle({
        target,
        source: fixtureSource("bundle/uses_missing_symbol.c"),
        functions: ["counter.c:scale=scale_v2"],
        out: out(),
      }),
      rejectsWith("ENOSYMBOL", /definitely_not_in_the_target/),
    );
  });

  it("refuses a patch using a static of a target stripped of .symtab", async () => {
    // -rdynamic keeps compute in .dynsym after stripping; the static scale it calls is gone.
    const exported = await compileFixture("c/counter.c", ["-O1", "-fPIE", "-pie", "-rdynamic"]);
    const stripped = path.join(tmp, "counter-stripped");
    await copyFile(exported, stripped);
    await runTool("strip", ["--strip-all", stripped]);
    await assert.rejects(
      buildBundle({
        target: stripped,
        source: fixtureSource("bundle/fix_compute.c"),
        functions: ["compute"],
        out: out(),
      }),
      rejectsWith("ENOSYMBOL", /patch\.so uses scale/),
    );
  });

  it("reports a compile error with ECOMPILE and the compiler's own message", async () => {
    await assert.rejects(
      buildBundle({ target, source: fixtureSource("bundle/syntax_error.c"), functions: ["scale"], out: out() }),
      rejectsWith("ECOMPILE", /syntax_error\.c:2:\d+: error: expected expression/),
    );
  });

  it("reports bad build arguments with EBAD_ARGUMENT", async () => {
    const source = fixtureSource("bundle/fix_scale.c");
    const cases: [Parameters<typeof buildBundle>[0], RegExp][] = [
      [{ target, source, functions: [], out: out() }, /at least one function/],
      [{ target, source, functions: ["a b"], out: out() }, /expected NAME/],
      [{ target, source, functions: ["scale=not a name"], out: out() }, /replacement must be a symbol/],
      [{ target, source, functions: ["compute", "compute"], out: out() }, /given twice/],
      [{ target, source, functions: ["compute"], id: "../escape", out: out() }, /--id/],
      [{ target, source: "fix.txt", functions: ["compute"], out: out() }, /C \(\.c\) or C\+\+/],
    ];
    for (const [opts, match] of cases) await assert.rejects(buildBundle(opts), rejectsWith("EBAD_ARGUMENT", match));
  });

  it("refuses missing inputs and a key that cannot sign, each with its code", async () => {
    const source = fixtureSource("bundle/fix_compute.c");
    await assert.rejects(
      buildBundle({ target: path.join(tmp, "no-such-binary"), source, functions: ["compute"], out: out() }),
      rejectsWith("EBAD_TARGET", /no-such-binary/),
    );
    await assert.rejects(
      buildBundle({ target, source: path.join(tmp, "no-such-fix.c"), functions: ["compute"], out: out() }),
      rejectsWith("EIO", /no-such-fix\.c/),
    );
    const keys = await generateKeyPair();
    await assert.rejects(
      buildBundle({ target, source, functions: ["compute"], signKey: keys.publicKey, out: out() }),
      rejectsWith("EBAD_KEY", /not a PEM private key/),
    );
  });

  it("warns that the dlopen loader cannot reach a static of the target", async () => {
    const result = await buildBundle({
      target,
      source: fixtureSource("bundle/fix_scale.c"),
      functions: ["counter.c:scale=scale_v2"],
      loader: "dlopen",
      out: out(),
    });
    assert.equal(result.manifest.loader, "dlopen");
    assert.ok(
      result.warnings.some((w) => /counter is a static .* dlopen/.test(w)),
      result.warnings.join("; "),
    );
  });

  it("refuses a C++ fix forced onto the mmap loader in a C target: libstdc++ is not there (ENOSYMBOL)", async () => {
    await assert.rejects(
      buildBundle({
        target,
        source: fixtureSource("bundle/throws.cc"),
        functions: ["counter.c:scale=scale_v2"],
        loader: "mmap",
        out: out(),
      }),
      rejectsWith("ENOSYMBOL", /__cxa_\w+/),
    );
  });

  it("refuses a target without a build-id with EBAD_TARGET", async () => {
    const noId = path.join(tmp, "counter-no-build-id");
    await runTool("objcopy", ["--remove-section", ".note.gnu.build-id", target, noId]);
    await assert.rejects(
      buildBundle({ target: noId, source: fixtureSource("bundle/fix_compute.c"), functions: ["compute"], out: out() }),
      rejectsWith("EBAD_TARGET", /no build-id/),
    );
  });

  it("refuses to overwrite an existing output with EOUT_EXISTS", async () => {
    const dir = out();
    await mkdir(dir);
    await writeFile(path.join(dir, "keep"), "mine");
    await assert.rejects(
      buildBundle({ target, source: fixtureSource("bundle/fix_compute.c"), functions: ["compute"], out: dir }),
      rejectsWith("EOUT_EXISTS"),
    );
    assert.deepEqual(await readdir(dir), ["keep"]);
  });

  it("a bundle built for one binary fails checkBundleTarget against another with EBUILDID", async () => {
    const result = await buildBundle({
      target,
      source: fixtureSource("bundle/fix_compute.c"),
      functions: ["compute"],
      out: out(),
    });
    const bundle = await openBundle(result.dir as string);
    try {
      await assert.rejects(checkBundleTarget(bundle, nonPie), (err: unknown) => {
        assert.ok(err instanceof BundleError && err.code === "EBUILDID");
        assert.equal(err.context.expected, result.manifest.target.buildId);
        assert.notEqual(err.context.actual, err.context.expected);
        return true;
      });
    } finally {
      await bundle.dispose();
    }
  });

  it("a .tar bundle round-trips through openBundle with the same bytes", async () => {
    const tarPath = path.join(tmp, "fix.tar");
    const result = await buildBundle({
      target,
      source: fixtureSource("bundle/fix_scale.c"),
      functions: ["counter.c:scale=scale_v2"],
      out: tarPath,
      tar: true,
    });
    assert.equal(result.tar, tarPath);
    assert.deepEqual((await runTool("tar", ["-tf", tarPath])).trim().split("\n").sort(), ["manifest.json", "patch.so"]);
    const bundle = await openBundle(tarPath);
    try {
      assert.deepEqual(bundle.manifest, result.manifest);
      assert.notEqual(bundle.dir, tarPath);
      const extracted = path.join(tmp, "extracted");
      await mkdir(extracted);
      await runTool("tar", ["-xf", tarPath, "-C", extracted]);
      assert.deepEqual(await readFile(bundle.soPath), await readFile(path.join(extracted, "patch.so")));
    } finally {
      await bundle.dispose();
    }
    await assert.rejects(readdir(bundle.dir), { code: "ENOENT" }, "dispose removes the private copy");
  });
});
