"""make run's promise: the printed curl line deletes a demo job (200)."""
import json
import os
import re
import signal
import subprocess
import time

import gwtest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


import pytest


@pytest.mark.parametrize("jwks", ["", "1"])
def test_run_demo_prints_a_working_curl_line(workdir, jwks):
    certs = os.path.join(workdir, "certs")
    subprocess.run(["sh", os.path.join(TOP, "certs", "make-dev-certs.sh"), certs,
                    os.path.join(gwtest.BUILD, "smc-token")], check=True)
    assert json.load(open(os.path.join(certs, "jwks.json")))["keys"][0]["kid"] == "demo-rs256"
    env = dict(os.environ, CERTS=certs, JWKS=jwks, DEMO_DIR=os.path.join(workdir, "demo"),
               GW_PORT=str(gwtest.free_port()), SIM_PORT=str(gwtest.free_port()),
               ADMIN_PORT=str(gwtest.free_port()))
    log = open(os.path.join(workdir, "demo.log"), "w")
    p = subprocess.Popen(["sh", os.path.join(TOP, "tests", "run-demo.sh"), os.path.abspath(gwtest.BUILD)],
                         cwd=TOP, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                         start_new_session=True)
    try:
        line = None
        end = time.time() + 20
        while time.time() < end and line is None:
            out = p.stdout.readline()
            if out.startswith("curl "):
                line = out.strip()
        assert line, "no curl line printed"
        assert re.match(r"curl .*--cacert \S+ -X DELETE .*https://localhost:\d+/jobs/j-demo1$", line)
        r = subprocess.run(line + " -w '\\n%{http_code}'", shell=True, capture_output=True, text=True, timeout=20)
        body, code = r.stdout.rsplit("\n", 1)
        assert code == "200", r.stdout + r.stderr
        assert '"job_id":"j-demo1"' in body
        if jwks:
            assert "usable keys from http://127.0.0.1" in open(os.path.join(workdir, "demo.log")).read()
    finally:
        os.killpg(p.pid, signal.SIGINT)
        p.wait(10)
    assert p.returncode == 0
