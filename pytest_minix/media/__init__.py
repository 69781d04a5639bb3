"""Boot media: release manifest, downloads, the image cache, ISO reading, the MINIX and reference-guest builders."""
