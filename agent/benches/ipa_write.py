#!/usr/bin/env python3
# Run by write.sh inside ironic-python-agent's venv: python ipa_write.py URL DEVICE SHA256 FORMAT VIRTUAL_BYTES
"""ironic-python-agent 13's own image writer, driven without the agent.

raw:   StandbyExtension._stream_raw_image_onto_device (what prepare_image does
       with stream_raw_images, Ironic's default), straight onto DEVICE, then
       an fsync of DEVICE (timed, as ipa-agent's own flush is).
qcow2: standby._download_image (the whole image into tempfile.gettempdir(),
       which is tmpfs, i.e. RAM, in a ramdisk) and then the qemu-img convert
       that _write_whole_disk_image runs (disk_utils.populate_image).

Prints one JSON line: seconds, MB/s of image bytes, the peak RSS of Python
and of its children (qemu-img), and the size of the temporary copy.
"""

import json
import os
import resource
import sys
import tempfile
import time

from oslo_config import cfg

from ironic_python_agent import config  # noqa: F401  (registers the options)
from ironic_python_agent import disk_utils
from ironic_python_agent.extensions import standby

url, device, sha, fmt = sys.argv[1:5]
cfg.CONF([], project="ironic-python-agent")
cfg.CONF.set_override("image_download_connection_retries", 0)
info = {"id": "bench-image", "urls": [url], "os_hash_algo": "sha256",
        "os_hash_value": sha, "disk_format": fmt, "stream_raw_images": True}
started = time.monotonic()
tmp_bytes = 0
if fmt == "raw":
    ext = standby.StandbyExtension()
    ext.partition_uuids = {}
    ext._stream_raw_image_onto_device(info, device)
    # IPA leaves the page cache to a later standby.sync; ipa-agent's time
    # includes its fsync, so flush here too for the same measure.
    fd = os.open(device, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
else:
    standby._download_image(info)
    location = os.path.join(tempfile.gettempdir(), info["id"])
    tmp_bytes = os.path.getsize(location)
    disk_utils.populate_image(location, device, source_format="qcow2", is_raw=False,
                              out_format="host_device", cache="directsync", out_of_order=True)
    os.unlink(location)
secs = time.monotonic() - started
image_bytes = int(sys.argv[5])
self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": round(secs, 2), "mb_per_s": round(image_bytes / 1e6 / secs, 1),
                  "peak_rss_kib": self_kib,
                  "children_peak_rss_kib": child_kib, "tmp_copy_bytes": tmp_bytes}))
