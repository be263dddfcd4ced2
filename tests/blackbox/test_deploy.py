"""Deployment files in deploy/: the systemd unit passes systemd-analyze, the
Kubernetes manifests and the OpenAPI description have the shape they promise,
the example configurations pass --check-config, and `make install` installs
what it should where it should.

No network. Uses Debian's python3-yaml when present (the YAML checks are
skipped otherwise) and systemd's tools when present (skipped otherwise).
"""
import json
import os
import re
import shutil
import subprocess

import pytest

import gwtest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
UNIT = os.path.join(DEPLOY, "systemd", "smc-gateway.service")
K8S = os.path.join(DEPLOY, "kubernetes")

try:
    import yaml
except ImportError:  # python3-yaml not installed
    yaml = None

needs_yaml = pytest.mark.skipif(yaml is None, reason="python3-yaml is not installed")

# Configuration keys announced together with these deployment files. While the
# gateway does not know one of them yet, --check-config of the examples is
# skipped rather than failed.
NEW_KEYS = {
    "admin_listen", "tls", "allow_root", "shutdown_timeout_ms", "cors", "trusted_proxies", "proxy_protocol",
    "upstream_rate_limit", "auth.jwks_url", "audit.signing_key_file", "audit.checkpoint_every",
    "audit.checkpoint_seconds", "audit.rotate_bytes", "limits.max_connections", "limits.header_timeout_ms",
    "limits.idle_timeout_ms", "limits.max_upstream_concurrency", "limits.max_upstream_queue",
}


def read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def unit_settings(text):
    """[Section] -> list of (key, value) of a unit file."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, [])
            continue
        k, _, v = line.partition("=")
        out[section].append((k.strip(), v.strip()))
    return out


def unit_get(settings, section, key):
    return [v for k, v in settings.get(section, []) if k == key]


def example_config():
    with open(os.path.join(DEPLOY, "examples", "gateway.json")) as f:
        return json.load(f)


def k8s_docs(name):
    with open(os.path.join(K8S, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def k8s_config():
    (cm,) = k8s_docs("configmap.yaml")
    return json.loads(cm["data"]["gateway.json"]), json.loads(cm["data"]["policy.json"])


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip("%s is not installed" % name)
    return path


def clean_env():
    """The environment without the variables of a make that runs this suite."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    return env


# ----------------------------------------------------------------- systemd


def analyze_verify(unit_path):
    r = subprocess.run([tool("systemd-analyze"), "verify", "--man=no", unit_path], capture_output=True, text=True,
                       cwd=os.path.dirname(unit_path))
    # verify exits 0 on unknown keys and unparsable values, only printing them.
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and out == "", out
    return out


def test_unit_passes_systemd_analyze_verify(tmp_path):
    text = read("deploy", "systemd", "smc-gateway.service")
    binary = gwtest.GATEWAY if os.access(gwtest.GATEWAY, os.X_OK) else "/bin/true"
    assert "/usr/local/bin/smc-gateway " in text
    unit = tmp_path / "smc-gateway.service"
    unit.write_text(text.replace("/usr/local/bin/smc-gateway", os.path.abspath(binary)))
    analyze_verify(str(unit))


def test_unit_verify_catches_mistakes(tmp_path):
    """The verify check above is meaningful: a typo in the unit is reported."""
    text = read("deploy", "systemd", "smc-gateway.service").replace("/usr/local/bin/smc-gateway", "/bin/true")
    unit = tmp_path / "smc-gateway.service"
    unit.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=strikt"))
    with pytest.raises(AssertionError):
        analyze_verify(str(unit))


def test_unit_security_exposure_is_low(tmp_path):
    sa = tool("systemd-analyze")
    text = read("deploy", "systemd", "smc-gateway.service").replace("/usr/local/bin/smc-gateway", "/bin/true")
    unit = tmp_path / "smc-gateway.service"
    unit.write_text(text)
    r = subprocess.run([sa, "security", "--offline=yes", "--threshold=20", str(unit)], capture_output=True,
                       text=True, cwd=str(tmp_path))
    if "--offline" in r.stderr and ("unrecognized" in r.stderr or "Unknown" in r.stderr):
        pytest.skip("systemd-analyze security --offline is not supported here")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr


def test_unit_settings():
    s = unit_settings(read("deploy", "systemd", "smc-gateway.service"))
    svc = dict(s["Service"])
    assert svc["User"] == "smc-gateway" and svc["Group"] == "smc-gateway"
    assert "DynamicUser" not in svc
    assert unit_get(s, "Service", "ExecStartPre") == [
        "/usr/local/bin/smc-gateway --check-config -c /etc/smc-gateway/gateway.json"]
    assert unit_get(s, "Service", "ExecStart") == ["/usr/local/bin/smc-gateway -c /etc/smc-gateway/gateway.json"]
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert svc["KillSignal"] == "SIGTERM"
    assert svc["Restart"] == "on-failure"
    cfg = example_config()
    assert int(svc["TimeoutStopSec"]) * 1000 > cfg["shutdown_timeout_ms"]
    assert svc["StateDirectory"] == "smc-gateway" and svc["StateDirectoryMode"] == "0750"
    assert svc["ConfigurationDirectory"] == "smc-gateway"
    assert unit_get(s, "Service", "ReadWritePaths") == ["/var/lib/smc-gateway"]
    for key, want in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                      ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("ProtectKernelTunables", "yes"),
                      ("ProtectKernelModules", "yes"), ("ProtectControlGroups", "yes"),
                      ("RestrictNamespaces", "yes"), ("LockPersonality", "yes"), ("MemoryDenyWriteExecute", "yes"),
                      ("RestrictRealtime", "yes"), ("RestrictSUIDSGID", "yes"), ("UMask", "0027"),
                      ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
                      ("SystemCallFilter", "@system-service"), ("SystemCallArchitectures", "native"),
                      ("LimitCORE", "0"), ("LimitNOFILE", "65536"), ("CapabilityBoundingSet", ""),
                      ("AmbientCapabilities", "")]:
        assert svc.get(key) == want, key


def test_sysusers_and_tmpfiles_apply_to_a_root(tmp_path):
    sysusers, tmpfiles = tool("systemd-sysusers"), tool("systemd-tmpfiles")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    r = subprocess.run([sysusers, "--root=%s" % root, os.path.join(DEPLOY, "systemd", "smc-gateway.sysusers")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines()}
    assert "smc-gateway" in users and users["smc-gateway"][6] == "/usr/sbin/nologin"
    uid, gid = int(users["smc-gateway"][2]), int(users["smc-gateway"][3])
    r = subprocess.run([tmpfiles, "--root=%s" % root, "--create", os.path.join(DEPLOY, "systemd", "smc-gateway.tmpfiles")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    st = os.stat(root / "var" / "lib" / "smc-gateway")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, 0o750)
    st = os.stat(root / "etc" / "smc-gateway")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, gid, 0o750)


# --------------------------------------------------------------- logrotate


def test_logrotate_file():
    text = read("deploy", "logrotate", "smc-gateway")
    body = "\n".join(line.split("#", 1)[0].rstrip() for line in text.splitlines())
    assert "/var/lib/smc-gateway/audit.jsonl {" in body
    words = [line.split() for line in body.splitlines() if line.strip()]
    directives = {w[0]: w[1:] for w in words}
    assert directives["create"] == ["0640", "smc-gateway", "smc-gateway"]
    assert directives["su"] == ["smc-gateway", "smc-gateway"]
    for d in ("missingok", "notifempty", "sharedscripts", "dateext", "nocompress"):
        assert d in directives, d
    assert "copytruncate" not in directives
    assert int(directives["rotate"][0]) >= 520
    post = re.search(r"^\s*postrotate\n(.*?)^\s*endscript", body, re.S | re.M)
    assert post, "no postrotate script"
    assert "USR1" in post.group(1) and "HUP" not in post.group(1)
    sh = tool("sh")
    r = subprocess.run([sh, "-n", "-c", post.group(1)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------ docker


def dockerfile_stages(text):
    lines, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    args = {}
    stages = []
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip()
        elif instr == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), rest.split()[0])
            stages.append({"from": image, "as": rest.split()[2] if " AS " in rest.upper() else None, "lines": []})
        else:
            stages[-1]["lines"].append((instr, rest.strip()))
    return stages


def test_dockerfile_is_multistage_debian_and_not_root():
    stages = dockerfile_stages(read("deploy", "docker", "Dockerfile"))
    assert len(stages) >= 2
    for st in stages:
        assert st["from"].startswith("debian:12-slim"), st["from"]
    build, final = stages[0], stages[-1]
    assert any(i == "RUN" and "make build/smc-gateway build/smc-gateway-audit" in r for i, r in build["lines"])
    assert any(i == "COPY" and "--from=" + build["as"] in r and "/usr/local/bin/" in r for i, r in final["lines"])
    final_runs = " ".join(r for i, r in final["lines"] if i == "RUN")
    for pkg in ("build-essential", "-dev "):
        assert pkg not in final_runs, "build dependency %r in the runtime stage" % pkg
    users = [r for i, r in final["lines"] if i == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root") and user == "10001"
    instrs = dict(final["lines"])
    assert json.loads(instrs["ENTRYPOINT"]) == ["/usr/local/bin/smc-gateway"]
    assert json.loads(instrs["CMD"]) == ["-c", "/etc/smc-gateway/gateway.json"]
    assert set(instrs["EXPOSE"].split()) == {"8443", "9090"}
    assert "/var/lib/smc-gateway" in instrs["VOLUME"]
    ignore = read("deploy", "docker", "Dockerfile.dockerignore").split()
    assert "*" in ignore and "!gateway/" in ignore and "!build/" not in ignore


# -------------------------------------------------------------- kubernetes


@needs_yaml
def test_kustomization_lists_every_manifest_but_the_secret_template():
    (k,) = k8s_docs("kustomization.yaml")
    res = k["resources"]
    for name in ("configmap.yaml", "statefulset.yaml", "service.yaml", "pdb.yaml"):
        assert name in res
        assert os.path.exists(os.path.join(K8S, name))
    assert "secret.yaml" not in res
    for name in res:
        for doc in k8s_docs(name):
            assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]


@needs_yaml
def test_kustomize_renders_into_the_namespace():
    """Only where kubectl happens to be installed (it is not a project dependency)."""
    r = subprocess.run([tool("kubectl"), "kustomize", K8S], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["Namespace", "ConfigMap", "StatefulSet", "Service", "Service", "PodDisruptionBudget",
                            "NetworkPolicy"]), kinds
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "smc-gateway", d["metadata"]
    (ss,) = [d for d in docs if d["kind"] == "StatefulSet"]
    for v in ss["spec"]["template"]["spec"]["volumes"]:
        if "secret" in v:
            assert v["secret"]["defaultMode"] == 288


@needs_yaml
def test_statefulset():
    (ss,) = k8s_docs("statefulset.yaml")
    assert ss["kind"] == "StatefulSet"
    spec = ss["spec"]
    assert spec["replicas"] == 2 and spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == "smc-gateway-headless"
    (vct,) = spec["volumeClaimTemplates"]
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > example_config()["shutdown_timeout_ms"] / 1000
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001
    assert psc["fsGroup"] == 10001 and psc["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = pod["containers"]
    csc = c["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"https": 8443, "admin": 9090}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path and ports.get(get["port"], get["port"]) == 9090
    assert c["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    assert c["resources"]["limits"]["memory"] == "128Mi"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[vct["metadata"]["name"]] == "/var/lib/smc-gateway"
    secrets = [v for v in pod["volumes"] if "secret" in v]
    assert {v["secret"]["secretName"] for v in secrets} == {"smc-gateway-credentials", "smc-gateway-tls"}
    for v in secrets:
        assert v["secret"]["defaultMode"] == 0o440 == 288, v
        assert v["name"] in mounts
    cfg, _ = k8s_config()
    assert c["args"] == ["-c", mounts["config"] + "/gateway.json"]
    assert cfg["credentials_file"].startswith(mounts["secret"] + "/")
    assert cfg["audit"]["signing_key_file"].startswith(mounts["secret"] + "/")
    for k in ("cert_file", "key_file", "client_ca_file"):
        assert cfg["tls"][k].startswith(mounts["tls"] + "/")
    assert cfg["audit"]["file"].startswith("/var/lib/smc-gateway/")
    assert "instance" not in cfg, "instance must default to the pod name"
    assert cfg["admin_listen"].endswith(":9090") and cfg["listen"].endswith(":8443")


@needs_yaml
def test_services_and_pdb():
    svc, headless = k8s_docs("service.yaml")
    assert svc["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(443, "https")]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["metadata"]["name"] == k8s_docs("statefulset.yaml")[0]["spec"]["serviceName"]
    (pdb,) = k8s_docs("pdb.yaml")
    assert pdb["kind"] == "PodDisruptionBudget" and pdb["spec"]["minAvailable"] == 1


@needs_yaml
def test_secret_template_holds_only_placeholders():
    docs = k8s_docs("secret.yaml")
    assert {d["metadata"]["name"] for d in docs} == {"smc-gateway-credentials", "smc-gateway-tls"}
    for d in docs:
        assert "data" not in d
        for key, value in d["stringData"].items():
            assert "REPLACE-ME" in value, key
            assert "BEGIN" not in value and "LTAI" not in value, key
    creds = json.loads(docs[0]["stringData"]["credentials.json"])
    _, policy = k8s_config()
    for team in policy["teams"].values():
        assert team["credential"] in creds


@needs_yaml
def test_k8s_and_host_configs_differ_only_where_documented():
    kcfg, kpolicy = k8s_config()
    hcfg = example_config()
    assert set(kcfg) == set(hcfg)
    for k in hcfg:
        if isinstance(hcfg[k], dict):
            assert set(kcfg[k]) == set(hcfg[k]), k
    assert hcfg["admin_listen"].startswith("127.0.0.1:") and kcfg["admin_listen"].startswith("0.0.0.0:")
    assert hcfg["audit"]["rotate_bytes"] == 0 and kcfg["audit"]["rotate_bytes"] > 0
    assert kcfg["trusted_proxies"] == []
    with open(os.path.join(DEPLOY, "examples", "policy.json")) as f:
        hpolicy = json.load(f)
    for policy in (hpolicy, kpolicy):
        for team in policy["teams"].values():
            assert team["credential"] == "prod" and team["allow"] == ["DeleteReplicationJob"]


# ----------------------------------------------------------------- openapi


@needs_yaml
def test_openapi_description():
    with open(os.path.join(DEPLOY, "openapi.yaml")) as f:
        api = yaml.safe_load(f)
    assert api["openapi"] == "3.0.3"
    comps = api["components"]
    assert comps["securitySchemes"]["bearerAuth"] == {**comps["securitySchemes"]["bearerAuth"], "type": "http",
                                                      "scheme": "bearer", "bearerFormat": "JWT"}
    assert api["security"] == [{"bearerAuth": []}]
    for schema in ("Problem", "DeleteResult", "AuditEntry"):
        assert schema in comps["schemas"]
    assert set(comps["schemas"]["Problem"]["properties"]) >= {
        "type", "title", "status", "detail", "request_id", "upstream_code", "upstream_request_id", "gateway_error"}
    assert set(comps["schemas"]["DeleteResult"]["required"]) == {"job_id", "request_id", "upstream_request_id"}
    readme = read("README.md")
    start = readme.index("### What is recorded")
    audit_table = readme[start:readme.index("### The format", start)]
    for field in re.findall(r"`([a-z_]+)`(?=[^|]*\|[^|]*\|[^|]*\|\s*$)", audit_table, re.M):
        assert field in comps["schemas"]["AuditEntry"]["properties"], field

    def deref(obj):
        while isinstance(obj, dict) and "$ref" in obj:
            node = api
            for part in obj["$ref"].lstrip("#/").split("/"):
                node = node[part]
            obj = node
        return obj

    paths = api["paths"]
    ops = {(p, m) for p, item in paths.items() for m in item if m in ("get", "delete", "options", "post", "put")}
    assert ops == {("/jobs/{jobId}", "delete"), ("/jobs/{jobId}", "options"), ("/audit", "get"),
                   ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get")}

    job_param = deref(paths["/jobs/{jobId}"]["parameters"][0])
    assert job_param["in"] == "path" and job_param["schema"]["pattern"] == "^j-[A-Za-z0-9]{1,64}$"
    re.compile(job_param["schema"]["pattern"])

    delete = paths["/jobs/{jobId}"]["delete"]
    hdrs = {deref(p)["name"]: deref(p) for p in delete["parameters"]}
    assert hdrs["X-Request-Id"]["schema"]["pattern"] == "^[A-Za-z0-9._-]{1,128}$"
    assert hdrs["X-Change-Ticket"]["schema"]["pattern"] == "^[A-Za-z0-9._:/-]{1,64}$"
    codes = {"200", "400", "401", "403", "404", "405", "409", "413", "429", "431", "502", "503", "504", "505"}
    assert set(delete["responses"]) == codes
    for code, resp in delete["responses"].items():
        resp = deref(resp)
        assert "X-Request-Id" in resp["headers"], code
        (media, body), = resp["content"].items()
        want = "DeleteResult" if code == "200" else "Problem"
        assert body["schema"] == {"$ref": "#/components/schemas/" + want}, code
        assert media == ("application/json" if code == "200" else "application/problem+json"), code
    assert "WWW-Authenticate" in deref(delete["responses"]["401"])["headers"]
    assert "Allow" in deref(delete["responses"]["405"])["headers"]
    for code in ("429", "503"):
        assert "Retry-After" in deref(delete["responses"][code])["headers"], code

    options = paths["/jobs/{jobId}"]["options"]
    assert options["security"] == [] and "204" in options["responses"]

    audit = paths["/audit"]["get"]
    params = {deref(p)["name"]: deref(p) for p in audit["parameters"]}
    assert set(params) >= {"team", "sub", "job", "decision", "result", "since", "until", "limit", "cursor"}
    assert params["decision"]["schema"]["enum"] == ["allow", "deny"]
    assert params["since"]["schema"]["format"] == params["until"]["schema"]["format"] == "date-time"
    assert (params["limit"]["schema"]["minimum"], params["limit"]["schema"]["maximum"]) == (1, 1000)
    page = deref(deref(audit["responses"]["200"])["content"]["application/json"]["schema"])
    assert page["properties"]["entries"]["items"] == {"$ref": "#/components/schemas/AuditEntry"}
    assert page["properties"]["next_cursor"]["nullable"] is True
    assert "403" in audit["responses"]
    for code, resp in audit["responses"].items():
        if code != "200":
            (body,) = deref(resp)["content"].values()
            assert body["schema"] == {"$ref": "#/components/schemas/Problem"}, code

    for p in ("/healthz", "/readyz", "/metrics"):
        assert paths[p]["get"]["security"] == []
        assert paths[p]["servers"][0]["url"].endswith(":9090")
    assert "503" in paths["/readyz"]["get"]["responses"]
    assert "text/plain; version=0.0.4" in paths["/metrics"]["get"]["responses"]["200"]["content"]

    # Every $ref resolves.
    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                deref(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(api)


# ------------------------------------------------------------ --check-config


def self_signed(folder):
    """A server certificate, its key and a client CA, as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    out = {}
    for name in ("server", "client-ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smc-gateway-test-" + name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=name != "server", path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                .sign(key, hashes.SHA256()))
        crt = os.path.join(folder, name + ".crt")
        with open(crt, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        out[name + ".crt"] = crt
        if name == "server":
            kf = os.path.join(folder, "server.key")
            with open(kf, "wb") as f:
                f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
            os.chmod(kf, 0o600)
            out["server.key"] = kf
    return out


def ed25519_key(path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    with open(path, "wb") as f:
        f.write(ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(path, 0o600)


def check_config_of(cfg, policy, folder, keys):
    """Run --check-config on cfg with every file it names replaced by a local one."""
    if not os.access(gwtest.GATEWAY, os.X_OK):
        pytest.skip("gateway not built")
    os.chmod(folder, 0o700)
    state = os.path.join(folder, "state")
    os.mkdir(state, 0o750)
    tls = self_signed(folder)
    ed25519_key(os.path.join(folder, "audit-ed25519.key"))
    creds = os.path.join(folder, "credentials.json")
    with open(creds, "w") as f:
        json.dump({"prod": {"access_key_id": gwtest.ACCESS_KEY_ID, "access_key_secret": gwtest.ACCESS_KEY_SECRET}}, f)
    os.chmod(creds, 0o600)
    with open(os.path.join(folder, "policy.json"), "w") as f:
        json.dump(policy, f)

    cfg = json.loads(json.dumps(cfg))
    cfg["tls"].update(cert_file=tls["server.crt"], key_file=tls["server.key"], client_ca_file=tls["client-ca.crt"])
    # No network in tests: the identity provider's key from a file instead of its JWKS URL.
    assert cfg["auth"].pop("jwks_url").startswith("https://")
    cfg["auth"]["key_file"] = keys.rsa_pub
    cfg["policy_file"] = "policy.json"
    cfg["credentials_file"] = creds
    cfg["audit"]["signing_key_file"] = os.path.join(folder, "audit-ed25519.key")
    cfg["audit"]["file"] = os.path.join(state, "audit.jsonl")
    if os.geteuid() == 0:
        cfg["allow_root"] = True  # CI runs the suite as root
    path = os.path.join(folder, "gateway.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    r = subprocess.run([gwtest.GATEWAY, "--check-config", "-c", path], capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        unknown = set(re.findall(r"([A-Za-z0-9_.]+): unknown key", out))
        if unknown and unknown <= NEW_KEYS:
            pytest.skip("the gateway does not know these keys yet: %s" % ", ".join(sorted(unknown)))
    assert r.returncode == 0, out


def test_host_example_passes_check_config(tmp_path, keys):
    with open(os.path.join(DEPLOY, "examples", "policy.json")) as f:
        policy = json.load(f)
    cfg = example_config()
    assert cfg["shutdown_timeout_ms"] >= cfg["upstream"]["deadline_ms"]
    assert "instance" not in cfg
    check_config_of(cfg, policy, str(tmp_path), keys)


@needs_yaml
def test_kubernetes_config_passes_check_config(tmp_path, keys):
    cfg, policy = k8s_config()
    assert cfg["shutdown_timeout_ms"] >= cfg["upstream"]["deadline_ms"]
    check_config_of(cfg, policy, str(tmp_path), keys)


# ------------------------------------------------------------ make install


def test_make_install(tmp_path):
    build = os.path.abspath(gwtest.BUILD)
    dest = tmp_path / "dest"
    real_cfg = dest / "etc" / "smc-gateway" / "gateway.json"
    real_cfg.parent.mkdir(parents=True)
    real_cfg.write_text('{"mine": true}\n')
    makefile = read("Makefile")
    if re.search(r"^\s*-?include\s+deploy/install\.mk\s*$", makefile, re.M):
        cmd = ["make", "install"]
    else:
        cmd = ["make", "-f", "Makefile", "-f", "deploy/install.mk", "install"]
    cmd += ["DESTDIR=%s" % dest, "PREFIX=/opt/smc", "BUILD=%s" % build]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=clean_env(), timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]

    def mode(*p):
        return os.stat(os.path.join(dest, *p)).st_mode & 0o7777

    for prog in ("smc-gateway", "smc-gateway-audit"):
        assert mode("opt/smc/bin", prog) == 0o755
    assert real_cfg.read_text() == '{"mine": true}\n', "make install overwrote a real configuration"
    assert json.loads((dest / "etc/smc-gateway/gateway.json.example").read_text()) == example_config()
    assert (dest / "etc/smc-gateway/policy.json.example").exists()
    assert mode("etc/smc-gateway") == 0o750
    assert mode("etc/logrotate.d/smc-gateway") == 0o644
    assert mode("usr/lib/sysusers.d/smc-gateway.conf") == 0o644
    assert mode("usr/lib/tmpfiles.d/smc-gateway.conf") == 0o644
    for doc in ("README.md", "policy.md", "openapi.yaml"):
        assert (dest / "opt/smc/share/doc/smc-gateway" / doc).exists(), doc

    unit = (dest / "lib/systemd/system/smc-gateway.service").read_text()
    assert mode("lib/systemd/system/smc-gateway.service") == 0o644
    assert "/usr/local/" not in unit
    s = unit_settings(unit)
    assert unit_get(s, "Service", "ExecStart") == ["/opt/smc/bin/smc-gateway -c /etc/smc-gateway/gateway.json"]
    assert unit_get(s, "Service", "ExecStartPre") == [
        "/opt/smc/bin/smc-gateway --check-config -c /etc/smc-gateway/gateway.json"]
    # The installed unit points at the installed binary: verify it where it landed.
    if shutil.which("systemd-analyze"):
        staged = tmp_path / "smc-gateway.service"
        staged.write_text(unit.replace("/opt/smc/bin/", "%s/opt/smc/bin/" % dest))
        analyze_verify(str(staged))
