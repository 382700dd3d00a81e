/** Parses and checks endpoints: the demo tools only ever talk to loopback. */
import { isIPv4, isIPv6 } from "node:net";
import { DemoOptionError } from "./errors.js";
import type { Endpoint } from "./types.js";

/** Whether an address is a loopback IP literal (127.0.0.0/8 or ::1). */
export function isLoopback(host: string): boolean {
  if (isIPv4(host)) return host.split(".")[0] === "127";
  return isIPv6(host) && (host === "::1" || host === "0:0:0:0:0:0:0:1");
}

/** Parses `host:port` (`localhost` means 127.0.0.1, IPv6 as `[::1]:port`); refuses other hosts. */
export function parseEndpoint(value: string | Endpoint): Endpoint {
  const given = typeof value === "string" ? value : `${value.host}:${value.port}`;
  let host: string;
  let portText: string;
  if (typeof value === "string") {
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(value);
    if (!m) {
      throw new DemoOptionError("EBAD_ARGUMENT", `endpoint '${value}' is not host:port (e.g. 127.0.0.1:7001)`, {
        option: "endpoint",
        value,
      });
    }
    host = m[1] ?? m[2] ?? "";
    portText = m[3] ?? "";
  } else {
    host = value.host;
    portText = String(value.port);
  }
  if (host === "localhost") host = "127.0.0.1";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new DemoOptionError("EBAD_ARGUMENT", `endpoint '${given}' has no valid port (1..65535)`, {
      option: "endpoint",
      value: given,
    });
  }
  if (!isLoopback(host)) {
    throw new DemoOptionError(
      "ENOT_LOOPBACK",
      `endpoint '${given}' is not a loopback address; the demo tools only target 127.0.0.0/8 and ::1`,
      { option: "endpoint", value: given },
    );
  }
  return { host, port };
}

/** The endpoint as `host:port` (`[::1]:port` for IPv6). */
export function formatEndpoint(e: Endpoint): string {
  return isIPv6(e.host) ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}
