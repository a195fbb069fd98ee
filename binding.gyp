{
  "targets": [
    {
      "target_name": "stopd_native",
      "sources": [
        "native/addon.c",
        "native/napi_common.c",
        "native/sock_diag.c",
        "native/sock_diag_napi.c",
        "native/fd_scan.c",
        "native/fd_scan_napi.c",
        "native/fd_index.c",
        "native/fd_index_map.c",
        "native/fd_index_proc.c",
        "native/fd_index_keeper.c",
        "native/fd_index_napi.c",
        "native/socket_fd.c",
        "native/socket_fd_napi.c",
        "native/libbpf_dl.c",
        "native/run_tracker.c",
        "native/bpf_recorder.c",
        "native/bpf_recorder_napi.c",
        "native/recorder_merge.c",
        "native/conntrack.c",
        "native/conntrack_napi.c"
      ],
      "libraries": ["-ldl", "-lpthread"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
    }
  ]
}
