"""Boot real kernels in QEMU for tests and the demo: kernel fetch, root image, runner, server."""
