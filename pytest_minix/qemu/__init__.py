"""The QEMU process: binary discovery, accelerator choice, launch and shutdown, QMP, the console reader."""
