import os
import shutil
import tempfile

import pytest

import gwtest


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    return gwtest.Keys(str(tmp_path_factory.mktemp("keys")))


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="gw-bb-")
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sim(workdir):
    s = gwtest.Sim(workdir, jobs={"j-bp1ready": "Ready", "j-bp1running": "Running", "j-ok1": "Ready",
                                  "j-bp2abcdef": "Ready"}, all_jobs=False)
    yield s
    s.stop()


@pytest.fixture
def make_gateway(workdir, keys):
    started = []

    def make(upstream_url, **kw):
        g = gwtest.Gateway(workdir, keys, upstream_url, **kw)
        started.append(g)
        return g

    yield make
    for g in started:
        rc = g.stop()
        # A clean shutdown is part of every test.
        assert rc in (0, None), "gateway exited %s; log:\n%s" % (rc, g.log())


@pytest.fixture
def gw(make_gateway, sim):
    return make_gateway(sim.url)
