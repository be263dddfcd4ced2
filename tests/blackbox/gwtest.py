"""Black-box harness: start the built gateway and the SMC simulator on free
ports with configs written by the test, talk to them over real sockets, and
read what the upstream received and what the audit file holds.

Run with Debian's python3 (/usr/bin/python3): it needs python3-jwt and
python3-cryptography.
"""
import base64
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

BUILD = os.environ.get("GW_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
GATEWAY = os.path.join(BUILD, "smc-gateway")
SIM = os.path.join(BUILD, "smc-sim")
ISSUER = "https://idp.example.com"
AUDIENCE = "smc-gateway"
ACCESS_KEY_ID = "LTAI5tTestKey0000001"
ACCESS_KEY_SECRET = "s3cr3t-Test-AccessKey-Secret-0001"
HS_SECRET = "hs256-test-secret-0123456789-abcdefghij"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("port %d did not open" % port)


class Keys:
    """Signing keys of a pretend identity provider."""

    def __init__(self, folder):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa_pub_pem = self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.ec_pub_pem = self.ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.rsa_pub = os.path.join(folder, "jwt-rs256.pub.pem")
        self.ec_pub = os.path.join(folder, "jwt-es256.pub.pem")
        self.hs = os.path.join(folder, "jwt-hs256.secret")
        with open(self.rsa_pub, "wb") as f:
            f.write(self.rsa_pub_pem)
        with open(self.ec_pub, "wb") as f:
            f.write(self.ec_pub_pem)
        with open(self.hs, "w") as f:
            f.write(HS_SECRET + "\n")
        os.chmod(self.hs, 0o600)

    def claims(self, **over):
        now = int(time.time())
        c = {"sub": "alice@example.com", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "iat": now,
             "team": "migration", "jti": "tok-%d" % time.monotonic_ns()}
        for k, v in over.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def token(self, alg="RS256", headers=None, key=None, **claims):
        if key is None:
            key = {"RS256": self.rsa, "RS384": self.rsa, "ES256": self.ec, "HS256": HS_SECRET}[alg]
        return pyjwt.encode(self.claims(**claims), key, algorithm=alg, headers=headers)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header, payload, sign):
    """A token from raw header/payload bytes and a signing function of the input bytes."""
    signing_input = b64url(header) + "." + b64url(payload)
    return signing_input + "." + b64url(sign(signing_input.encode()))


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


def request(port, method, path, headers=None, body=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        c.close()


def read_until_closed(s, limit=None, errors=(socket.timeout,)):
    """Everything s receives until the peer closes, one of errors is raised
    (by default: the socket's timeout, the server went quiet) or limit
    seconds have passed."""
    out, end = b"", None if limit is None else time.time() + limit
    while end is None or time.time() < end:
        try:
            chunk = s.recv(65536)
        except errors:
            break
        if not chunk:
            break
        out += chunk
    return out


def raw_request(port, data, timeout=5):
    """Send raw bytes; return everything the server sent until it closed or went quiet."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        return read_until_closed(s)
    finally:
        s.close()


def cpu_seconds(pid):
    """User plus system CPU time process pid has used."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sim:
    """The SMC simulator (build/smc-sim) on a free port."""

    def __init__(self, folder, jobs=None, all_jobs=False, extra_args=(), credentials=None):
        self.folder = folder
        self.port = free_port()
        self.creds_file = credentials or os.path.join(folder, "sim-credentials.json")
        if credentials is None:
            with open(self.creds_file, "w") as f:
                json.dump({"prod": {"access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET}}, f)
            os.chmod(self.creds_file, 0o600)
        args = [SIM, "--listen", "127.0.0.1:%d" % self.port, "--credentials", self.creds_file, "--quiet"]
        if jobs is not None:
            jf = os.path.join(folder, "sim-jobs.json")
            with open(jf, "w") as f:
                json.dump(jobs, f)
            args += ["--jobs", jf]
        if all_jobs:
            args.append("--all-jobs-exist")
        args += list(extra_args)
        self.log = open(os.path.join(folder, "sim.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, self.proc)
        except RuntimeError as e:
            raise RuntimeError("%s; simulator log:\n%s" % (e, open(self.log.name).read()))
        self.url = "http://127.0.0.1:%d/" % self.port

    def ctl(self, method, path, body=None):
        r = request(self.port, method, "/_sim/" + path,
                    headers={"Content-Type": "application/json"},
                    body=json.dumps(body) if body is not None else None)
        assert r.status < 300, r
        return r.json() if r.body else None

    def requests(self):
        return self.ctl("GET", "requests")["requests"]

    def clear(self):
        self.ctl("DELETE", "requests")

    def fault(self, **kw):
        self.ctl("POST", "fault", kw)

    def add_jobs(self, jobs):
        self.ctl("POST", "jobs", jobs)

    def jobs(self):
        return self.ctl("GET", "jobs")["jobs"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


DEFAULT_POLICY = {
    "teams": {
        "migration": {
            "credential": "prod",
            "allow": ["DeleteReplicationJob"],
            "jobs": ["j-bp1*", "j-bp2abcdef", "j-ok*", "j-slow*"],
            "subjects": ["alice@example.com", "svc-*"],
        },
        "ops": {"credential": "prod", "allow": ["DeleteReplicationJob"], "require_ticket": True},
        "readonly": {"credential": "prod", "allow": []},
    }
}


class Gateway:
    """build/smc-gateway with a config written into folder."""

    def __init__(self, folder, keys, upstream_url, policy=None, config=None, credentials=None,
                 algorithms=("RS256",), key_file=None, start=True, env=None):
        self.folder = folder
        self.port = free_port()
        self.audit_file = os.path.join(folder, "audit.jsonl")
        self.policy_file = os.path.join(folder, "policy.json")
        self.creds_file = os.path.join(folder, "credentials.json")
        self.config_file = os.path.join(folder, "gateway.json")
        self.log_file = os.path.join(folder, "gateway.log")
        with open(self.policy_file, "w") as f:
            json.dump(policy if policy is not None else DEFAULT_POLICY, f)
        with open(self.creds_file, "w") as f:
            json.dump(credentials if credentials is not None else
                      {"prod": {"access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET}}, f)
        os.chmod(self.creds_file, 0o600)
        if key_file is None:
            key_file = keys.hs if algorithms[0].startswith("HS") else (
                keys.ec_pub if algorithms[0].startswith("ES") else keys.rsa_pub)
        cfg = {
            "listen": "127.0.0.1:%d" % self.port,
            "instance": "gw-test",
            # The tests run as root (CI); the daemon refuses root unless told.
            "allow_root": True,
            "auth": {"algorithms": list(algorithms), "key_file": key_file, "issuer": ISSUER,
                     "audience": AUDIENCE, "team_claim": "team", "leeway_seconds": 5},
            "policy_file": "policy.json",
            "credentials_file": "credentials.json",
            "upstream": {"endpoint": upstream_url, "connect_timeout_ms": 1000, "timeout_ms": 3000,
                         "deadline_ms": 8000, "max_retries": 2},
            "audit": {"file": "audit.jsonl"},
        }
        for k, v in (config or {}).items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                # A None value removes the key from the section.
                cfg[k] = {kk: vv for kk, vv in dict(cfg[k], **v).items() if vv is not None}
            elif v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        self.config = cfg
        self.env = env
        self.write_config()
        self.proc = None
        if start:
            self.start()

    def write_config(self):
        with open(self.config_file, "w") as f:
            json.dump(self.config, f)

    def start(self):
        self.logf = open(self.log_file, "ab")
        env = dict(os.environ)
        env.pop("http_proxy", None)
        env.update(self.env or {})
        self.proc = subprocess.Popen([GATEWAY, "-c", self.config_file], stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=env)
        try:
            wait_port(self.port, self.proc)
        except RuntimeError as e:
            raise RuntimeError("%s; gateway log:\n%s" % (e, self.log()))

    def check_config(self):
        p = subprocess.run([GATEWAY, "--check-config", "-c", self.config_file], capture_output=True, text=True)
        return p.returncode, p.stdout + p.stderr

    def run_expect_exit(self, timeout=10):
        """Start and expect the daemon to refuse: returns (exit code, log text)."""
        p = subprocess.run([GATEWAY, "-c", self.config_file], capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr

    def delete(self, job, token=None, headers=None, **kw):
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        return request(self.port, "DELETE", "/jobs/" + job, headers=h, **kw)

    def audit(self):
        if not os.path.exists(self.audit_file):
            return []
        with open(self.audit_file, "rb") as f:
            return [json.loads(line) for line in f.read().splitlines()]

    def audit_for(self, request_id, wait=2.0):
        """The entries of one request, waiting briefly for the outcome entry."""
        end = time.time() + wait
        while True:
            got = [e for e in self.audit() if e.get("request_id") == request_id]
            if time.time() > end or (got and any(e["event"] == "outcome" or e.get("decision") == "deny" for e in got)):
                return got
            time.sleep(0.02)

    def log(self):
        with open(self.log_file, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        rc = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        elif self.proc is not None:
            rc = self.proc.returncode
        if self.proc is not None:
            self.logf.close()
        return rc


def verify_chain(entries_bytes):
    """Check seq/prev over raw audit lines (bytes with newlines)."""
    prev = "0" * 64
    seq = 0
    for line in entries_bytes.splitlines(keepends=True):
        e = json.loads(line)
        assert e["seq"] == seq + 1, (e["seq"], seq)
        assert e["prev"] == prev
        prev = hashlib.sha256(line).hexdigest()
        seq = e["seq"]
    return seq
