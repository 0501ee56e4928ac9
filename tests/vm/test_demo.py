"""`./dev demo`: its bundle gives the demo VM exactly its layers, and the whole demo boots."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovl.core.facts import Facts
from ovl.format.favors import match_layers
from tests.vmkit import demo
from tests.vmkit.kernel import Kernel


def test_demo_fleet_gives_the_demo_vm_its_layers_and_not_the_other_machines() -> None:
    kernel = Kernel("6.1.0-56-cloud-amd64", Path("/vmlinuz"), Path("/modules"))
    dirnames = {
        path.split("/")[1] for path in demo.sample_fleet(kernel) if path.startswith("layers/")
    }
    facts = Facts(
        macs=(demo.DEMO_MAC,),
        product_uuid=demo.DEMO_UUID,
        kernel_release=kernel.version,
        arch="x86_64",
    )
    assert [layer.dirname for layer in match_layers(facts, sorted(dirnames))] == [
        f"10-{demo.DEMO_MAC}",
        f"20-{kernel.version}",
        f"30-{demo.DEMO_UUID}-x86_64",
    ]


@pytest.mark.vm
def test_demo_boots_the_vm_into_its_layers_and_exits_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert demo.main([]) == 0
    out = capsys.readouterr().out
    assert "OVL-TEST file /etc/hostname=demo-vm" in out
    assert "ovl: apply: demo-fleet serial 1: 4 layers" in out
