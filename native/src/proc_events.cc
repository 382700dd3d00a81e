// Exec events from the kernel's process-event connector (NETLINK_CONNECTOR, PROC_EVENT_EXEC),
// read on one thread of our own and delivered to JavaScript through a ThreadSafeFunction. Built as
// its own small addon (hotpatch_proc_events) so it shares nothing with the engine.
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <napi.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "fd.h"

namespace hotpatch {
namespace {

struct ExecEvent {
  int pid;
  double exec_mono_ms;  // kernel timestamp of the exec, CLOCK_MONOTONIC milliseconds
};

double MonotonicMsNow() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

class ExecWatcher : public Napi::ObjectWrap<ExecWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ExecWatcher", {InstanceMethod("stop", &ExecWatcher::StopJs)});
  }

  explicit ExecWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ExecWatcher>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsFunction()) {
      CodedError(env, "EBAD_ARGUMENT", "watchExecs needs a callback").ThrowAsJavaScriptException();
      return;
    }
    sock_ = UniqueFd(socket(PF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR));
    if (!sock_.valid()) {
      Fail(env, "socket(NETLINK_CONNECTOR)");
      return;
    }
    sockaddr_nl addr{};
    addr.nl_family = AF_NETLINK;
    addr.nl_groups = CN_IDX_PROC;
    if (bind(sock_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      Fail(env, "bind(CN_IDX_PROC)");
      return;
    }
    if (!Subscribe(PROC_CN_MCAST_LISTEN)) {
      Fail(env, "PROC_CN_MCAST_LISTEN");
      return;
    }
    wake_ = UniqueFd(eventfd(0, EFD_CLOEXEC));
    if (!wake_.valid()) {
      Fail(env, "eventfd");
      return;
    }
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "hotpatch exec events", 0, 1);
    tsfn_.Unref(env);  // the watcher alone must not keep the process alive
    running_ = true;
    thread_ = std::thread([this] { Loop(); });
  }

  ~ExecWatcher() override { Stop(); }

 private:
  void Fail(Napi::Env env, const char* what) {
    const int e = errno;
    const char* code = (e == EPERM || e == EACCES) ? "EPERM_PROC_EVENTS" : "EINTERNAL";
    std::string hint = (e == EPERM || e == EACCES) ? " (needs root or CAP_NET_ADMIN)" : "";
    CodedError(env, code, std::string(what) + " failed: " + std::strerror(e) + hint).ThrowAsJavaScriptException();
  }

  bool Subscribe(proc_cn_mcast_op op) {
    constexpr size_t kPayload = sizeof(cn_msg) + sizeof(proc_cn_mcast_op);
    alignas(nlmsghdr) char req[NLMSG_SPACE(kPayload)] = {};
    auto* hdr = reinterpret_cast<nlmsghdr*>(req);
    hdr->nlmsg_len = NLMSG_LENGTH(kPayload);
    hdr->nlmsg_type = NLMSG_DONE;
    auto* msg = static_cast<cn_msg*>(NLMSG_DATA(hdr));
    msg->id.idx = CN_IDX_PROC;
    msg->id.val = CN_VAL_PROC;
    msg->len = sizeof(proc_cn_mcast_op);
    std::memcpy(msg->data, &op, sizeof op);
    return send(sock_.get(), req, hdr->nlmsg_len, 0) == static_cast<ssize_t>(hdr->nlmsg_len);
  }

  void Loop() {
    alignas(nlmsghdr) char buf[16384];
    pollfd fds[2] = {{sock_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    for (;;) {
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0) return;
      const ssize_t n = recv(sock_.get(), buf, sizeof buf, 0);
      if (n <= 0) continue;  // ENOBUFS: the kernel dropped events under load; keep reading
      int left = static_cast<int>(n);
      for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
        auto* cn = static_cast<cn_msg*>(NLMSG_DATA(h));
        if (cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC) continue;
        auto* ev = reinterpret_cast<proc_event*>(cn->data);
        if (ev->what != proc_event::PROC_EVENT_EXEC) continue;
        if (ev->event_data.exec.process_pid != ev->event_data.exec.process_tgid) continue;
        auto* out = new ExecEvent{ev->event_data.exec.process_tgid, static_cast<double>(ev->timestamp_ns) / 1e6};
        const napi_status st = tsfn_.NonBlockingCall(out, [](Napi::Env env, Napi::Function cb, ExecEvent* e) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("pid", e->pid);
          o.Set("execMonoMs", e->exec_mono_ms);
          delete e;
          cb.Call({o});
        });
        if (st != napi_ok) delete out;
      }
    }
  }

  void Stop() {
    if (!running_) return;
    running_ = false;
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t w = write(wake_.get(), &one, sizeof one);
    thread_.join();
    Subscribe(PROC_CN_MCAST_IGNORE);
    tsfn_.Release();
    sock_.reset();
    wake_.reset();
  }

  Napi::Value StopJs(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }

  UniqueFd sock_;
  UniqueFd wake_;
  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  bool running_ = false;
};

Napi::Value MonotonicMs(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), MonotonicMsNow()); }

}  // namespace
}  // namespace hotpatch

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("ExecWatcher", hotpatch::ExecWatcher::Define(env));
  exports.Set("monotonicMs", Napi::Function::New(env, hotpatch::MonotonicMs, "monotonicMs"));
  return exports;
}

NODE_API_MODULE(hotpatch_proc_events, InitModule)
