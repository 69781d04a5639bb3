"""A booted guest: the VM, its shell, the pool that boots VMs, the boot timeline, what a host can boot."""
