/** Parsers for command-line values shared by several commands. */
import { InvalidArgumentError } from "commander";

export function parsePid(value: string): number {
  const pid = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(pid) || pid < 1) {
    throw new InvalidArgumentError("expected a process id (a positive integer)");
  }
  return pid;
}

export function parseMilliseconds(value: string): number {
  const ms = Number(value);
  if (!/^\d+$/.test(value) || ms > 3_600_000) throw new InvalidArgumentError("expected milliseconds, 0 to 3600000");
  return ms;
}
