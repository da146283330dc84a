"""systemd/hlptd.service passes `systemd-analyze verify` (skipped where systemd-analyze is missing),
and hlptd speaks the sd_notify protocol: READY=1 after start-up, STOPPING=1 on SIGTERM."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hlptd import ROOT, Daemon  # noqa: E402

UNIT = os.path.join(ROOT, "systemd", "hlptd.service")


class SystemdTest(unittest.TestCase):
    def test_unit_has_the_hardening(self):
        with open(UNIT) as f:
            text = f.read()
        for line in ["Type=notify", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                     "PrivateTmp=yes", "PrivateDevices=yes", "StateDirectory=hlpt", "UMask=0077",
                     "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"]:
            self.assertIn("\n" + line + "\n", text)
        # PCRE2's JIT needs W+X memory.
        self.assertNotIn("\nMemoryDenyWriteExecute=", text)

    def test_verify(self):
        tool = shutil.which("systemd-analyze")
        if not tool:
            print("test_verify: skipped, systemd-analyze not found", file=sys.stderr)
            self.skipTest("systemd-analyze not found")
        # verify checks that ExecStart's binary exists: point it at the built one in a copy.
        with tempfile.TemporaryDirectory() as tmp:
            with open(UNIT) as f:
                text = f.read().replace("/usr/local/bin/hlptd", os.path.join(ROOT, os.environ.get("HLPT_BUILD", "build"), "hlptd"))
            unit = os.path.join(tmp, "hlptd.service")
            with open(unit, "w") as f:
                f.write(text)
            r = subprocess.run([tool, "verify", "--man=no", unit], capture_output=True, text=True, timeout=60)
            # Complaints about the host (no running systemd, missing users) are not the unit's fault;
            # anything naming our unit file is.
            ours = [l for l in (r.stdout + r.stderr).splitlines() if "hlptd.service" in l]
            self.assertEqual(ours, [], r.stdout + r.stderr)

    def test_sd_notify(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "notify")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            sock.settimeout(10)
            self.addCleanup(sock.close)
            d = Daemon(env={"NOTIFY_SOCKET": path})
            self.addCleanup(d.cleanup)
            # Daemon.start drops an inherited NOTIFY_SOCKET; env given here wins.
            d.start()
            self.assertEqual(sock.recv(256), b"READY=1")
            self.assertEqual(d.stop(), 0)
            self.assertEqual(sock.recv(256), b"STOPPING=1")


if __name__ == "__main__":
    unittest.main()
