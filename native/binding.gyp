{
  "targets": [
    {
      "target_name": "hotpatch_native",
      "sources": [
        "src/addon.cc",
        "src/elf_file.cc",
        "src/proc_maps.cc",
        "src/engine/batch.cc",
        "src/engine/descriptor.cc",
        "src/engine/dlopen_api.cc",
        "src/engine/patch_ops.cc",
        "src/engine/redirect.cc",
        "src/engine/return_wait.cc",
        "src/engine/safety.cc",
        "src/engine/unwinder.cc",
        "src/loader/link_map.cc",
        "src/loader/load_plan.cc",
        "src/loader/object_cache.cc",
        "src/loader/target_image.cc",
        "src/object/object_file.cc",
        "src/object/read_object.cc",
        "src/ptrace/errno_codes.cc",
        "src/ptrace/proc_auxv.cc",
        "src/ptrace/seccomp_check.cc",
        "src/ptrace/stopped_process.cc",
        "src/ptrace/target_memory.cc",
        "src/workers/patch_workers.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lelf", "-ldw", "-ldl"]
    },
    {
      "target_name": "hotpatch_proc_events",
      "sources": ["src/proc_events.cc"],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
