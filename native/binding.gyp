{
  "targets": [
    {
      "target_name": "hotpatch_native",
      "sources": [
        "src/addon.cc",
        "src/elf_file.cc",
        "src/proc_maps.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lelf"]
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
