# Apache-2.0
"""airlift's layout on a host: the folders and unit names every module shares.

Defined once here for the modules (roles/airlift/defaults/main.yml holds the same root for
the roles, and a unit test keeps the two equal). Module options still let a role point
elsewhere; these are only the defaults.
"""

from __future__ import annotations

ROOT = "/var/lib/airlift"
STATE_DIR = ROOT + "/state"
IMAGES_STATE = STATE_DIR + "/images.json"
LICENSES_STATE = STATE_DIR + "/licenses.json"
LICENSE_DIR = ROOT + "/licenses"
STAGING_DIR = ROOT + "/staging"
OUTPUT_DIR = ROOT + "/output"
ARCHIVE_DIR = ROOT + "/usage-archives"
ROLLBACK_DIR = ROOT + "/rollback"
MOUNTS_DIR = ROOT + "/mounts"
CONTAINERS_DIR = "/var/lib/containers"
UNIT_DIR = "/etc/systemd/system"
UNIT_PREFIX = "airlift-"
UNIT_GLOB = UNIT_PREFIX + "*.service"
# A file being written under its final name plus this; never taken for complete.
PARTIAL_SUFFIX = ".partial"


def unit_name(service: str) -> str:
    """The systemd unit of one service (also the container's name, without .service)."""
    return f"{UNIT_PREFIX}{service}.service"


def container_name(service: str) -> str:
    """The container's name: the unit's name without its suffix."""
    return UNIT_PREFIX + service
