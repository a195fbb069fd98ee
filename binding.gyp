{
  "targets": [
    {
      "target_name": "stopd_native",
      "sources": ["native/stopd_native.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
    }
  ]
}
