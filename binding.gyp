{
  "targets": [
    {
      "target_name": "stopd_native",
      "sources": ["native/stopd_native.c", "native/socket_fd.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
    }
  ]
}
