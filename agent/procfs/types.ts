/** What the agent reads about a process from /proc. */
export interface ProcessFacts {
  /** Process id in the agent's PID namespace. */
  pid: number;
  /** Executable as /proc/PID/exe resolves it (a " (deleted)" suffix removed). */
  exePath: string;
  /** Start time, clock ticks since boot (field 22 of /proc/PID/stat); with pid it names one process. */
  startTime: number;
  /** The process's cgroup path (cgroup v2 line, or the first v1 line's path). */
  cgroup: string;
}

/** A process selector: every field given must match; at least one must be given. */
export interface Selector {
  /** Executable path, resolved (symlinks followed). */
  exePath?: string;
  /** GNU build-id of the executable, lowercase hex. */
  buildId?: string;
  /** One process id. */
  pid?: number;
  /** cgroup path; processes in it or below it match. */
  cgroup?: string;
  /** Path of a shared library the process maps. */
  libraryPath?: string;
}
