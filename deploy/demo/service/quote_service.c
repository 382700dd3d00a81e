/*
 * quote_service: the demo target of hotpatch. A small multi-threaded TCP service on loopback with
 * an active/standby role and a bug every customer sees.
 *
 * Protocol (one request per line, answers end with '\n'):
 *   QUOTE <n>   active:  "<version> <price>"  price of n units in cents, VAT included
 *               standby: "STANDBY"
 *   HEALTH      "OK <role> <version>"
 *   anything else: "ERR <reason>"
 *
 * The bug: compute_price() charges one unit too many. deploy/demo/fix/fix_price.c holds the fixed
 * compute_price() and a service_version() that says "v2"; hotpatch swaps both in while it serves.
 *
 * Role: --role active|standby, or --role-file FILE holding "active" or "standby" (re-read as soon as
 * its folder changes, watched with inotify; also every 100 ms, and at once on SIGHUP). SIGUSR1 promotes, SIGUSR2 demotes
 * (the hooks an agent runs); SIGTERM/SIGINT stop it. Prints "ready <pid> port <port> ..." when up.
 *
 * Build: gcc -g -O2 -fPIE -pie -fcf-protection -pthread -o quote_service quote_service.c
 * (symbols kept: the engine finds compute_price in .symtab).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define UNIT_CENTS 199
#define VAT_PERCENT 7
#define MAX_QUANTITY 1000000L
#define MAX_LINE 128
#define QUEUE_SLOTS 1024
#define IDLE_TIMEOUT_S 5

enum role { ROLE_STANDBY = 0, ROLE_ACTIVE = 1 };

/* Price in cents of `quantity` units at UNIT_CENTS each, VAT included, rounded to the nearest cent. */
__attribute__((noinline, noipa)) long compute_price(long quantity) {
  long net = 0;
  for (long i = 0; i <= quantity; i++) /* BUG: `<=` charges one unit too many */
    net += UNIT_CENTS;
  return (net * (100 + VAT_PERCENT) + 50) / 100;
}

/* Version tag put in front of every answer; the live patch makes it "v2". */
__attribute__((noinline, noipa)) const char *service_version(void) { return "v1"; }

static _Atomic int current_role = ROLE_ACTIVE;

static const char *role_name(int role) { return role == ROLE_ACTIVE ? "active" : "standby"; }

static void set_role(int role, const char *cause) {
  int old = atomic_exchange(&current_role, role);
  if (old != role) printf("role %s -> %s (%s)\n", role_name(old), role_name(role), cause);
}

/* Bounded queue of accepted connections, served by the worker pool. */
static struct {
  pthread_mutex_t lock;
  pthread_cond_t nonempty;
  pthread_cond_t nonfull;
  int fds[QUEUE_SLOTS];
  unsigned head, count;
} queue = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0};

static void queue_push(int fd) {
  pthread_mutex_lock(&queue.lock);
  while (queue.count == QUEUE_SLOTS) pthread_cond_wait(&queue.nonfull, &queue.lock);
  queue.fds[(queue.head + queue.count) % QUEUE_SLOTS] = fd;
  queue.count++;
  pthread_cond_signal(&queue.nonempty);
  pthread_mutex_unlock(&queue.lock);
}

static int queue_pop(void) {
  pthread_mutex_lock(&queue.lock);
  while (queue.count == 0) pthread_cond_wait(&queue.nonempty, &queue.lock);
  int fd = queue.fds[queue.head];
  queue.head = (queue.head + 1) % QUEUE_SLOTS;
  queue.count--;
  pthread_cond_signal(&queue.nonfull);
  pthread_mutex_unlock(&queue.lock);
  return fd;
}

/* Writes the answer to one request line into out (NUL-terminated). */
static void answer(const char *line, char *out, size_t outlen) {
  if (strncmp(line, "QUOTE ", 6) == 0) {
    char *end;
    errno = 0;
    long n = strtol(line + 6, &end, 10);
    if (errno != 0 || end == line + 6 || *end != '\0' || n < 0 || n > MAX_QUANTITY) {
      snprintf(out, outlen, "ERR quantity must be an integer from 0 to %ld\n", MAX_QUANTITY);
    } else if (atomic_load(&current_role) != ROLE_ACTIVE) {
      snprintf(out, outlen, "STANDBY\n");
    } else {
      snprintf(out, outlen, "%s %ld\n", service_version(), compute_price(n));
    }
  } else if (strcmp(line, "HEALTH") == 0) {
    snprintf(out, outlen, "OK %s %s\n", role_name(atomic_load(&current_role)), service_version());
  } else {
    snprintf(out, outlen, "ERR unknown request (expected QUOTE <n> or HEALTH)\n");
  }
}

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    buf += w;
    len -= (size_t)w;
  }
  return 0;
}

/* Serves one connection until the client closes it, goes idle, or sends a line that is too long. */
static void serve(int fd) {
  char buf[MAX_LINE + 1];
  size_t used = 0;
  for (;;) {
    ssize_t r = recv(fd, buf + used, MAX_LINE - used, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return;
    used += (size_t)r;
    char *start = buf;
    char *nl;
    while ((nl = memchr(start, '\n', used - (size_t)(start - buf))) != NULL) {
      *nl = '\0';
      if (nl > start && nl[-1] == '\r') nl[-1] = '\0';
      char out[160];
      answer(start, out, sizeof out);
      if (write_all(fd, out, strlen(out)) < 0) return;
      start = nl + 1;
    }
    used -= (size_t)(start - buf);
    memmove(buf, start, used);
    if (used == MAX_LINE) {
      const char *msg = "ERR line too long\n";
      write_all(fd, msg, strlen(msg));
      return;
    }
  }
}

static void *worker_main(void *arg) {
  (void)arg;
  for (;;) {
    int fd = queue_pop();
    serve(fd);
    close(fd);
  }
  return NULL;
}

/* Reads the role file; returns the role, or -1 when it is missing or holds something else. */
static int read_role_file(const char *path, char *content, size_t len) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(content, 1, len - 1, f);
  fclose(f);
  content[n] = '\0';
  while (n > 0 && (content[n - 1] == '\n' || content[n - 1] == ' ' || content[n - 1] == '\r')) content[--n] = '\0';
  if (strcmp(content, "active") == 0) return ROLE_ACTIVE;
  if (strcmp(content, "standby") == 0) return ROLE_STANDBY;
  return -1;
}

static const char *role_file;
static const char *pid_file;
static char last_role_content[64];

/* Applies the role file when its content changed since it was last applied (or when forced). */
static void check_role_file(int force) {
  if (!role_file) return;
  char content[64];
  int role = read_role_file(role_file, content, sizeof content);
  if (!force && strcmp(content, last_role_content) == 0) return;
  snprintf(last_role_content, sizeof last_role_content, "%s", content);
  if (role < 0) {
    printf("role file %s does not hold 'active' or 'standby'; role stays %s\n", role_file,
           role_name(atomic_load(&current_role)));
    return;
  }
  set_role(role, "role file");
}

/* An inotify fd on the role file's folder (the file is replaced by rename, so the folder is what
 * changes), or -1 without a role file or inotify; the 100 ms check then still applies. */
static int watch_role_folder(void) {
  if (!role_file) return -1;
  char copy[PATH_MAX];
  snprintf(copy, sizeof copy, "%s", role_file);
  int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) return -1;
  if (inotify_add_watch(fd, dirname(copy), IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Handles the signals of the whole process on one thread (a signalfd), so no handler runs async;
 * the same thread follows the role file. */
static void *signal_main(void *arg) {
  sigset_t *set = arg;
  int sfd = signalfd(-1, set, SFD_CLOEXEC);
  if (sfd < 0) {
    perror("quote_service: signalfd");
    _exit(1);
  }
  int ifd = watch_role_folder();
  struct pollfd fds[2] = {{.fd = sfd, .events = POLLIN}, {.fd = ifd, .events = POLLIN}};
  for (;;) {
    int n = poll(fds, ifd >= 0 ? 2 : 1, 100);
    if (n < 0 && errno != EINTR) {
      perror("quote_service: poll");
      _exit(1);
    }
    if (n > 0 && ifd >= 0 && (fds[1].revents & POLLIN)) {
      char events[4096];
      while (read(ifd, events, sizeof events) > 0) {
      }
    }
    struct signalfd_siginfo si;
    if (n > 0 && (fds[0].revents & POLLIN) && read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
      switch (si.ssi_signo) {
        case SIGUSR1: set_role(ROLE_ACTIVE, "SIGUSR1"); continue;
        case SIGUSR2: set_role(ROLE_STANDBY, "SIGUSR2"); continue;
        case SIGHUP: check_role_file(1); continue;
        case SIGTERM:
        case SIGINT:
          if (pid_file) unlink(pid_file);
          printf("stopping on signal %d\n", (int)si.ssi_signo);
          fflush(stdout);
          _exit(0);
        default: break;
      }
    }
    check_role_file(0);
  }
  return NULL;
}

static void usage_exit(const char *msg) {
  fprintf(stderr,
          "quote_service: %s\n"
          "usage: quote_service --port N [--bind 127.0.0.1] [--threads 4..64]\n"
          "                     [--role active|standby | --role-file FILE] [--pid-file FILE]\n",
          msg);
  exit(2);
}

static long parse_long(const char *s, long min, long max, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be an integer from %ld to %ld, got '%s'", what, min, max, s);
    usage_exit(msg);
  }
  return v;
}

int main(int argc, char **argv) {
  long port = -1, threads = 4;
  const char *bind_addr = "127.0.0.1";
  const char *role_arg = NULL;
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    if (i + 1 >= argc) usage_exit("every option takes a value");
    const char *val = argv[++i];
    if (strcmp(opt, "--port") == 0) port = parse_long(val, 0, 65535, "--port");
    else if (strcmp(opt, "--threads") == 0) threads = parse_long(val, 4, 64, "--threads");
    else if (strcmp(opt, "--bind") == 0) bind_addr = val;
    else if (strcmp(opt, "--role") == 0) role_arg = val;
    else if (strcmp(opt, "--role-file") == 0) role_file = val;
    else if (strcmp(opt, "--pid-file") == 0) pid_file = val;
    else usage_exit("unknown option");
  }
  if (port < 0) usage_exit("--port is required (0 picks a free port)");
  if (role_arg && role_file) usage_exit("give --role or --role-file, not both");
  struct in_addr addr;
  if (inet_pton(AF_INET, bind_addr, &addr) != 1 || (ntohl(addr.s_addr) >> 24) != 127)
    usage_exit("--bind must be a loopback IPv4 address (127.x.x.x)");
  if (role_arg) {
    if (strcmp(role_arg, "active") == 0) atomic_store(&current_role, ROLE_ACTIVE);
    else if (strcmp(role_arg, "standby") == 0) atomic_store(&current_role, ROLE_STANDBY);
    else usage_exit("--role must be 'active' or 'standby'");
  }
  if (role_file) {
    char content[64];
    int role = read_role_file(role_file, content, sizeof content);
    if (role < 0) usage_exit("the role file must exist and hold 'active' or 'standby'");
    snprintf(last_role_content, sizeof last_role_content, "%s", content);
    atomic_store(&current_role, role);
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  /* Every thread inherits this mask; only the signal thread takes these signals. */
  static sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = addr};
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 512) < 0) {
    fprintf(stderr, "quote_service: cannot listen on %s:%ld: %s\n", bind_addr, port, strerror(errno));
    return 1;
  }
  socklen_t salen = sizeof sa;
  getsockname(lfd, (struct sockaddr *)&sa, &salen);

  pthread_t tid;
  for (long i = 0; i < threads; i++) pthread_create(&tid, NULL, worker_main, NULL);
  pthread_create(&tid, NULL, signal_main, &set);

  if (pid_file) {
    FILE *f = fopen(pid_file, "w");
    if (!f) {
      fprintf(stderr, "quote_service: cannot write pid file %s: %s\n", pid_file, strerror(errno));
      return 1;
    }
    fprintf(f, "%d\n", getpid());
    fclose(f);
  }
  printf("ready %d port %d role %s version %s threads %ld\n", getpid(), ntohs(sa.sin_port),
         role_name(atomic_load(&current_role)), service_version(), threads);

  struct timeval idle = {IDLE_TIMEOUT_S, 0};
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
      fprintf(stderr, "quote_service: accept: %s\n", strerror(errno));
      return 1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle);
    queue_push(fd);
  }
}
