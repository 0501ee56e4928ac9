"""The delta units run the agent /init keeps in /run/ovl/agent first, an installed one else.

(test_delta_units.py's systemd-analyze run shows systemd knows ExecSearchPath=; systemd 252's
verify checks ExecStart= against the default path only, so the lookup itself is a VM matter.)"""

from __future__ import annotations

from pathlib import Path

UNITS = Path(__file__).resolve().parents[2] / "initramfs/systemd"
SERVICES = ("ovl-delta.service", "ovl-delta-shutdown.service")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_services_search_the_kept_agent_then_the_installed_one_then_the_system_path() -> None:
    for name in SERVICES:
        lines = (UNITS / name).read_text().splitlines()
        search = [line for line in lines if line.startswith("ExecSearchPath=")]
        path = "/run/ovl/agent:/usr/lib/ovl/agent:" + SYSTEM_PATH
        assert search == [f"ExecSearchPath={path}"]
